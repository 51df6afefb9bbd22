#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace capkv::llm::eval {

// Progress on stderr: the stage, done/total, time since the start of the run, time in the stage and
// the stage's ETA (from its own pace so far). On a terminal it is one line rewritten with \r; when
// stderr is a pipe or a file it prints plain lines instead (the stage start, every tenth of it and
// its end) so logs stay readable. Thread-safe: workers report their own completions.
class ProgressBar {
 public:
  explicit ProgressBar(std::FILE* out = stderr);
  ProgressBar(std::FILE* out, bool interactive);

  // Starts a stage of `total` units (finishing the previous one).
  void stage(const std::string& name, std::int64_t total);
  void advance(std::int64_t units = 1);
  // Ends the current line; a message, if any, follows on its own line.
  void finish_stage();
  void note(const std::string& message);

  double elapsed_seconds() const;

 private:
  using Clock = std::chrono::steady_clock;
  void draw_locked(bool force);
  void end_line_locked();

  std::FILE* out_;
  bool interactive_;
  std::mutex mutex_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point stage_start_ = start_;
  Clock::time_point last_draw_{};
  std::string stage_;
  std::int64_t total_ = 0;
  std::int64_t done_ = 0;
  std::int64_t last_logged_tenth_ = -1;
  bool line_open_ = false;
};

// "m:ss" or "h:mm:ss".
std::string format_duration(double seconds);

}  // namespace capkv::llm::eval
