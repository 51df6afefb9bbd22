#include "eval/memory_usage.hpp"

#include <fstream>
#include <sstream>

#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace capkv::llm::eval {

MemoryUsage memory_usage() {
  MemoryUsage usage;
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    std::istringstream fields(line);
    std::string key;
    double kib = 0.0;
    fields >> key >> kib;
    if (key == "VmRSS:") usage.rss_mib = kib / 1024.0;
    if (key == "VmHWM:") usage.peak_rss_mib = kib / 1024.0;
  }
  return usage;
}

void release_free_memory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

}  // namespace capkv::llm::eval
