#include "eval/progress_bar.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace capkv::llm::eval {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<long long>(std::llround(seconds));
  char buf[32];
  if (total >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", total / 3600, total / 60 % 60, total % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", total / 60, total % 60);
  }
  return buf;
}

ProgressBar::ProgressBar(std::FILE* out) : ProgressBar(out, isatty(fileno(out)) != 0) {}

ProgressBar::ProgressBar(std::FILE* out, bool interactive) : out_(out), interactive_(interactive) {}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(Clock::now() - start_).count();
}

void ProgressBar::stage(const std::string& name, std::int64_t total) {
  std::lock_guard lock(mutex_);
  end_line_locked();
  stage_ = name;
  total_ = std::max<std::int64_t>(total, 1);
  done_ = 0;
  last_logged_tenth_ = -1;
  stage_start_ = Clock::now();
  draw_locked(true);
}

void ProgressBar::advance(std::int64_t units) {
  std::lock_guard lock(mutex_);
  done_ = std::min(total_, done_ + units);
  draw_locked(done_ == total_);
}

void ProgressBar::finish_stage() {
  std::lock_guard lock(mutex_);
  end_line_locked();
}

void ProgressBar::note(const std::string& message) {
  std::lock_guard lock(mutex_);
  end_line_locked();
  std::fprintf(out_, "%s\n", message.c_str());
  std::fflush(out_);
}

void ProgressBar::end_line_locked() {
  if (line_open_) std::fputc('\n', out_);
  line_open_ = false;
  std::fflush(out_);
}

void ProgressBar::draw_locked(bool force) {
  const auto now = Clock::now();
  const double in_stage = std::chrono::duration<double>(now - stage_start_).count();
  const double overall = std::chrono::duration<double>(now - start_).count();
  const double eta =
      done_ > 0 ? in_stage / static_cast<double>(done_) * static_cast<double>(total_ - done_) : NAN;
  const std::string eta_text = done_ == total_ ? "done" : "ETA " + format_duration(eta);
  char status[160];
  std::snprintf(status, sizeof status, "%lld/%lld  elapsed %s (stage %s)  %s",
                static_cast<long long>(done_), static_cast<long long>(total_),
                format_duration(overall).c_str(), format_duration(in_stage).c_str(),
                eta_text.c_str());
  if (interactive_) {
    // Redrawing more than ~10 times a second only costs the terminal.
    if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * done_ / total_);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.append(static_cast<std::size_t>(kWidth - filled), '-');
    std::fprintf(out_, "\r\033[2K%-34s [%s] %s", stage_.c_str(), bar.c_str(), status);
    line_open_ = true;
    std::fflush(out_);
    return;
  }
  const std::int64_t tenth = done_ * 10 / total_;
  if (!force && tenth == last_logged_tenth_) return;
  if (done_ == 0 && last_logged_tenth_ >= 0) return;
  last_logged_tenth_ = tenth;
  std::fprintf(out_, "%s: %s\n", stage_.c_str(), status);
  std::fflush(out_);
}

}  // namespace capkv::llm::eval
