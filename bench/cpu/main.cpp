// One executable so that the machine's rates and the library's are measured side by side, in one
// process, under the same load. Registration order is execution order: machine rates, kernels,
// policies, machine rates again.

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include "registry.hpp"

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("eigen_threads", std::to_string(Eigen::nbThreads()));
  benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
  capkv::bench::register_machine("pre");
  capkv::bench::register_kernels();
  capkv::bench::register_policies();
  capkv::bench::register_machine("post");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
