#include "eval/plots.hpp"

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <fstream>
#include <set>

#include "eval/external_command.hpp"

namespace capkv::llm::eval {
namespace {

struct Series {
  std::string title;
  bool dashed = false;
  int color = 1;  // a policy's decode-time line takes the colour of its one-shot line
  std::vector<std::pair<double, double>> points;  // (budget %, value)
};

// One gnuplot script per image, its data inline, so the folder holds everything to redraw it.
std::string script(const std::filesystem::path& image, const std::string& title,
                   const std::string& ylabel, bool log_y, const std::vector<Series>& series) {
  std::string s;
  s += "set terminal pngcairo size 960,600 noenhanced font ',11'\n";
  s += fmt::format("set output '{}'\n", image.filename().string());
  s += fmt::format("set title '{}'\n", title);
  s += "set xlabel 'cache kept (% of the prompt tokens, per layer and KV head)'\n";
  s += fmt::format("set ylabel '{}'\n", ylabel);
  s += "set grid\nset key outside right top\nset xrange [0:100]\n";
  if (log_y) s += "set logscale y\nset format y '%g'\n";
  for (std::size_t i = 0; i < series.size(); ++i) {
    s += fmt::format("$d{} << EOD\n", i);
    for (const auto& [x, y] : series[i].points) {
      if (std::isfinite(y) && (!log_y || y > 0)) s += fmt::format("{:g} {:.9g}\n", x, y);
    }
    s += "EOD\n";
  }
  s += "plot ";
  for (std::size_t i = 0; i < series.size(); ++i) {
    s += fmt::format("{}$d{} using 1:2 with linespoints lw 2 pt 7 dt {} lc {} title '{}'",
                     i == 0 ? "" : ", \\\n     ", i, series[i].dashed ? 2 : 1, series[i].color,
                     series[i].title);
  }
  s += "\n";
  return s;
}

}  // namespace

std::optional<std::string> gnuplot_version() {
  const auto [status, output] = run_command("gnuplot --version");
  if (status != 0 || output.rfind("gnuplot", 0) != 0) return std::nullopt;
  return output.substr(0, output.find('\n'));
}

PlotOutcome write_plots(const std::filesystem::path& folder, const std::vector<SummaryRow>& rows) {
  PlotOutcome outcome;
  if (!gnuplot_version()) {
    outcome.problem = "gnuplot not found (install gnuplot-nox); plots skipped";
    return outcome;
  }
  std::set<std::int64_t> contexts;
  for (const auto& r : rows) contexts.insert(r.context);
  for (std::int64_t context : contexts) {
    std::vector<Series> kl, top1;
    for (const char* mode : {"one-shot", "decode"}) {
      for (const auto& r : rows) {
        if (r.context != context || r.mode != mode) continue;
        const std::string title = r.mode == "decode" ? r.policy + " (decode-time)" : r.policy;
        if (kl.empty() || kl.back().title != title) {
          int color = static_cast<int>(kl.size()) + 1;
          for (const Series& s : kl) color = s.title == r.policy ? s.color : color;
          kl.push_back({title, r.mode == "decode", color, {}});
          top1.push_back({title, r.mode == "decode", color, {}});
        }
        kl.back().points.emplace_back(r.budget * 100.0, r.kl_mean.mean);
        top1.back().points.emplace_back(r.budget * 100.0, r.top1.mean * 100.0);
      }
    }
    std::int64_t docs = 0;
    for (const auto& r : rows) docs = r.context == context ? r.documents : docs;
    const std::string suffix = fmt::format("L{}", context);
    const std::string what = fmt::format("context {}, mean over {} window(s)", context, docs);
    const std::array<
        std::tuple<std::string, std::string, std::string, bool, const std::vector<Series>*>, 2>
        plots{{{"kl_vs_budget_" + suffix, "KL(full || compressed) per token, " + what,
                "mean KL (nats, log scale)", true, &kl},
               {"top1_vs_budget_" + suffix, "Top-1 agreement with the full cache, " + what,
                "top-1 agreement (%)", false, &top1}}};
    for (const auto& [name, title, ylabel, log_y, series] : plots) {
      const auto image = folder / (name + ".png");
      const auto gp = folder / (name + ".gp");
      {
        std::ofstream f(gp);
        f << script(image, title, ylabel, log_y, *series);
      }
      const auto [status, output] =
          run_command("cd " + shell_quoted(folder) + " && gnuplot " + shell_quoted(gp.filename()));
      if (status != 0) {
        outcome.problem += fmt::format("gnuplot failed on {}: {}\n", gp.string(), output);
        continue;
      }
      outcome.images.push_back(image);
    }
  }
  return outcome;
}

}  // namespace capkv::llm::eval
