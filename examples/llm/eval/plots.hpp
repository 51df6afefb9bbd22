#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "eval/report.hpp"

namespace capkv::llm::eval {

// PNG plots through gnuplot, run as a program (no library dependency): per context, KL mean vs
// budget on a log y axis and top-1 agreement vs budget, one line per policy (decode-time runs
// dashed). The gnuplot scripts stay in the output folder so a plot can be restyled by hand.

// gnuplot's version line, or nothing when it cannot be run.
std::optional<std::string> gnuplot_version();

struct PlotOutcome {
  std::vector<std::filesystem::path> images;
  std::string problem;  // empty when every plot was written
};

PlotOutcome write_plots(const std::filesystem::path& folder, const std::vector<SummaryRow>& rows);

}  // namespace capkv::llm::eval
