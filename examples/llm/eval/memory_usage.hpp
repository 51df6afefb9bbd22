#pragma once

#include <string>
#include <utility>
#include <vector>

namespace capkv::llm::eval {

// The process's memory as Linux reports it (/proc/self/status), in MiB: the resident size now and
// its high-water mark so far. Zero where /proc is unavailable.
struct MemoryUsage {
  double rss_mib = 0.0;
  double peak_rss_mib = 0.0;
};
MemoryUsage memory_usage();

// Returns the allocator's free pages to the system (glibc malloc_trim), so that what one stage
// freed (cache copies, captures, activations) does not stay resident under the next stage's peak.
void release_free_memory();

// The resident size and peak after each named stage of a run, for results.json.
using MemoryTrace = std::vector<std::pair<std::string, MemoryUsage>>;

}  // namespace capkv::llm::eval
