// Times the CUDA kernels and the whole CapKV selection on a GPU against two references measured in
// the same run: the composed cuBLAS/cuSOLVER path and the floor, max(bytes(K, V) / copy bandwidth,
// 2 n d^2 flops per query head / bf16 GEMM rate). Run by bench/cuda/device_check.sh.
//
// Method: CUDA events around each call, 3 warm-up calls, the median of many; the inputs rotate over
// enough copies that they span at least 4x the L2 cache, so every call reads K and V from DRAM.
// Shapes: d = 128, 32 query heads over 8 KV heads (g = 4), bf16, keep 25%, the default CapKV
// (observation window of 32 queries, 4 sinks), n in {4K, 32K, 128K}.
//
//   capkv_cuda_bench [--results PATH] [--tokens 4096,32768,131072] [--iterations N]

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "capkv/cuda.cuh"

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "capkv_cuda_bench: %s\n", what.c_str());
  std::exit(1);
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) die(std::string(what) + ": " + cudaGetErrorString(e));
}

void check(const capkv::cuda::Status& s, const char* what) {
  if (!s.ok()) die(std::string(what) + ": " + s.to_string());
}

template <class T>
T* device_alloc(std::size_t count) {
  void* p = nullptr;
  check(cudaMalloc(&p, std::max<std::size_t>(count, 1) * sizeof(T)), "cudaMalloc");
  return static_cast<T*>(p);
}

// Median milliseconds of `iterations` calls of fn(i) after 3 warm-up calls, each call between its
// own pair of events so launch gaps between calls are not counted.
double time_ms(int iterations, const std::function<void(int)>& fn) {
  for (int i = 0; i < 3; ++i) fn(i);
  check(cudaDeviceSynchronize(), "warm-up");
  std::vector<cudaEvent_t> events(2 * static_cast<std::size_t>(iterations));
  for (auto& e : events) check(cudaEventCreate(&e), "cudaEventCreate");
  for (int i = 0; i < iterations; ++i) {
    check(cudaEventRecord(events[2 * i]), "cudaEventRecord");
    fn(i + 3);
    check(cudaEventRecord(events[2 * i + 1]), "cudaEventRecord");
  }
  check(cudaDeviceSynchronize(), "timed calls");
  std::vector<double> ms(static_cast<std::size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    float t = 0.0f;
    check(cudaEventElapsedTime(&t, events[2 * i], events[2 * i + 1]), "cudaEventElapsedTime");
    ms[i] = t;
  }
  for (auto& e : events) cudaEventDestroy(e);
  std::nth_element(ms.begin(), ms.begin() + iterations / 2, ms.end());
  return ms[iterations / 2];
}

__global__ void fill_bf16(__nv_bfloat16* x, std::size_t count, std::uint64_t seed, float scale) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    // A cheap hash to a uniform in [-1, 1); the values only have to be finite and varied.
    std::uint64_t z = (seed + i) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
    z ^= z >> 29;
    const float u = static_cast<float>(z >> 40) * 0x1.0p-24f * 2.0f - 1.0f;
    x[i] = __float2bfloat16(scale * u);
  }
}

void fill(__nv_bfloat16* x, std::size_t count, std::uint64_t seed, float scale) {
  fill_bf16<<<1024, 256>>>(x, count, seed, scale);
  check(cudaGetLastError(), "fill_bf16");
}

struct Machine {
  double copy_gbps = 0;    // bytes read + written per second by cudaMemcpy D2D, in GB/s
  double gemm_tflops = 0;  // bf16 GEMM, fp32 accumulate, 8192^3
  double copy_ms = 0;
  double gemm_ms = 0;
};

Machine measure_machine(cublasHandle_t cublas, int iterations) {
  Machine m;
  const std::size_t bytes = std::size_t{1} << 31;  // 2 GiB each way: far beyond any L2
  auto* a = device_alloc<unsigned char>(bytes);
  auto* b = device_alloc<unsigned char>(bytes);
  check(cudaMemset(a, 1, bytes), "cudaMemset");
  m.copy_ms = time_ms(iterations, [&](int) {
    check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice), "copy");
  });
  m.copy_gbps = 2.0 * static_cast<double>(bytes) / (m.copy_ms * 1e-3) / 1e9;
  cudaFree(a);
  cudaFree(b);

  const int s = 8192;
  auto* x = device_alloc<__nv_bfloat16>(static_cast<std::size_t>(s) * s);
  auto* y = device_alloc<__nv_bfloat16>(static_cast<std::size_t>(s) * s);
  auto* z = device_alloc<float>(static_cast<std::size_t>(s) * s);
  fill(x, static_cast<std::size_t>(s) * s, 1, 1.0f);
  fill(y, static_cast<std::size_t>(s) * s, 2, 1.0f);
  const float one = 1.0f;
  const float zero = 0.0f;
  m.gemm_ms = time_ms(iterations, [&](int) {
    if (cublasGemmEx(cublas, CUBLAS_OP_N, CUBLAS_OP_N, s, s, s, &one, x, CUDA_R_16BF, s, y,
                     CUDA_R_16BF, s, &zero, z, CUDA_R_32F, s, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
      die("cublasGemmEx failed");
    }
  });
  m.gemm_tflops = 2.0 * s * static_cast<double>(s) * s / (m.gemm_ms * 1e-3) / 1e12;
  cudaFree(x);
  cudaFree(y);
  cudaFree(z);
  return m;
}

struct Row {
  std::int64_t n = 0;
  int copies = 1;
  double relevance = 0, gram = 0, cholesky = 0, leverage = 0, top_b = 0, full = 0;  // tensor cores
  double gram_cuda_cores = 0, leverage_cuda_cores = 0, full_cuda_cores = 0;
  double composed = 0, snapkv = 0, l2norm = 0, compact = 0, compact_in_place = 0, h2o_step = 0;
  double floor_bytes = 0, floor_flops = 0;
  double floor() const { return std::max(floor_bytes, floor_flops); }
};

constexpr std::int64_t kHeadDim = 128;
constexpr std::int64_t kQueryHeads = 32;
constexpr std::int64_t kKvHeads = 8;
constexpr std::int64_t kQueries = 64;

Row run_shape(std::int64_t n, const Machine& machine, std::size_t l2_bytes, int iterations,
              cublasHandle_t cublas, cusolverDnHandle_t cusolver) {
  Row row;
  row.n = n;
  const std::size_t cache_elems = static_cast<std::size_t>(n * kKvHeads * kHeadDim);
  const std::size_t kv_bytes = 2 * cache_elems * sizeof(__nv_bfloat16);
  row.copies =
      static_cast<int>(std::clamp<std::size_t>((4 * l2_bytes + kv_bytes - 1) / kv_bytes, 1, 16));
  std::vector<__nv_bfloat16*> keys(row.copies), values(row.copies);
  for (int c = 0; c < row.copies; ++c) {
    keys[c] = device_alloc<__nv_bfloat16>(cache_elems);
    values[c] = device_alloc<__nv_bfloat16>(cache_elems);
    fill(keys[c], cache_elems, 100 + c, 0.5f);
    fill(values[c], cache_elems, 200 + c, 1.0f);
  }
  const std::size_t query_elems = static_cast<std::size_t>(kQueries * kQueryHeads * kHeadDim);
  auto* queries = device_alloc<__nv_bfloat16>(query_elems);
  fill(queries, query_elems, 300, 0.5f);

  auto inputs = [&](int copy) {
    capkv::LayerInputs in;
    in.keys = capkv::TensorView(keys[copy], capkv::DType::kBF16, capkv::Layout::kTokensHeadsDim, n,
                                kKvHeads, kHeadDim);
    in.values = capkv::TensorView(values[copy], capkv::DType::kBF16, capkv::Layout::kTokensHeadsDim,
                                  n, kKvHeads, kHeadDim);
    in.queries = capkv::TensorView(queries, capkv::DType::kBF16, capkv::Layout::kTokensHeadsDim,
                                   kQueries, kQueryHeads, kHeadDim);
    return in;
  };

  capkv::cuda::CapKVSelect::Arguments args;
  args.inputs = inputs(0);
  args.budget = capkv::Budget::keep_fraction(0.25);
  const std::int64_t kept = capkv::cuda::CapKVSelect::kept(args);
  auto* indices = device_alloc<std::int32_t>(static_cast<std::size_t>(kKvHeads * kept));
  args.indices = indices;
  args.indices_ld = kept;
  check(capkv::cuda::CapKVSelect::can_implement(args), "CapKVSelect::can_implement");
  const std::size_t ws_bytes = capkv::cuda::CapKVSelect::workspace_size(args);
  auto* workspace = device_alloc<unsigned char>(ws_bytes);
  capkv::cuda::WorkspaceCarver carver(workspace);
  const auto layout = capkv::cuda::CapKVSelect::carve(carver, args);
  using capkv::cuda::CapKVSelect;
  auto with = [&](int i, capkv::cuda::MathPath math = capkv::cuda::MathPath::kTensorCores) {
    CapKVSelect::Arguments a = args;
    a.inputs = inputs(i % row.copies);
    a.math = math;
    return a;
  };

  // Fill the pipeline's intermediates once so every stage timed alone reads sensible data.
  check(CapKVSelect::run(with(0), workspace, ws_bytes, nullptr), "CapKVSelect::run");
  check(cudaDeviceSynchronize(), "first run");
  check(capkv::cuda::read_status(workspace, nullptr), "first run's device status");

  row.relevance = time_ms(iterations, [&](int i) {
    const auto a = with(i);
    check(
        capkv::cuda::RelevanceWeights::enqueue(CapKVSelect::relevance_arguments(a, layout.weights),
                                               layout.relevance, layout.flags, nullptr),
        "relevance");
  });
  // The two products on either unit; the pipeline's workspace holds the tensor-core buffers.
  const auto cuda_cores = capkv::cuda::MathPath::kCudaCores;
  auto time_gram = [&](capkv::cuda::MathPath math) {
    return time_ms(iterations, [&](int i) {
      check(capkv::cuda::WeightedGram::enqueue(CapKVSelect::gram_arguments(with(i, math), layout),
                                               layout.gram_partials, layout.flags, nullptr),
            "gram");
    });
  };
  auto time_leverage = [&](capkv::cuda::MathPath math) {
    return time_ms(iterations, [&](int i) {
      check(capkv::cuda::WeightedLeverage::enqueue(
                CapKVSelect::leverage_arguments(with(i, math), layout), layout.leverage,
                layout.flags, nullptr),
            "leverage");
    });
  };
  row.gram = time_gram(capkv::cuda::MathPath::kTensorCores);
  row.gram_cuda_cores = time_gram(cuda_cores);
  row.cholesky = time_ms(iterations, [&](int i) {
    check(capkv::cuda::InverseCholesky::enqueue(CapKVSelect::cholesky_arguments(with(i), layout),
                                                layout.cholesky_scratch, layout.flags, nullptr),
          "cholesky");
  });
  row.leverage = time_leverage(capkv::cuda::MathPath::kTensorCores);
  row.leverage_cuda_cores = time_leverage(cuda_cores);
  row.top_b = time_ms(iterations, [&](int i) {
    check(capkv::cuda::TopB::enqueue(CapKVSelect::top_b_arguments(with(i), layout),
                                     layout.thresholds, layout.flags, nullptr),
          "top-B");
  });
  row.full = time_ms(iterations, [&](int i) {
    check(CapKVSelect::run(with(i), workspace, ws_bytes, nullptr), "full");
  });
  row.full_cuda_cores = time_ms(iterations, [&](int i) {
    check(CapKVSelect::run(with(i, cuda_cores), workspace, ws_bytes, nullptr), "full");
  });
  check(capkv::cuda::read_status(workspace, nullptr), "device status after the timed runs");

  // Composed: library scores, then the same top-B kernel.
  {
    capkv::cuda::ComposedCapKVScores::Arguments c;
    c.inputs = inputs(0);
    c.scores = layout.scores;
    c.scores_ld = n;
    c.cublas = cublas;
    c.cusolver = cusolver;
    const std::size_t c_bytes = capkv::cuda::ComposedCapKVScores::workspace_size(c);
    auto* c_ws = device_alloc<unsigned char>(c_bytes);
    row.composed = time_ms(std::max(5, iterations / 2), [&](int i) {
      auto a = c;
      a.inputs = inputs(i % row.copies);
      check(capkv::cuda::ComposedCapKVScores::run(a, c_ws, c_bytes, nullptr), "composed");
      check(capkv::cuda::TopB::enqueue(CapKVSelect::top_b_arguments(with(i), layout),
                                       layout.thresholds, layout.flags, nullptr),
            "composed top-B");
    });
    cudaFree(c_ws);
  }

  // SnapKV's whole selection (paper preset: window 32, max-pool 7) for comparison.
  {
    capkv::cuda::SnapKVSelect::Arguments s;
    s.inputs = inputs(0);
    s.budget = args.budget;
    s.indices = indices;
    s.indices_ld = kept;
    const std::size_t s_bytes = capkv::cuda::SnapKVSelect::workspace_size(s);
    auto* s_ws = device_alloc<unsigned char>(s_bytes);
    row.snapkv = time_ms(iterations, [&](int i) {
      s.inputs = inputs(i % row.copies);
      check(capkv::cuda::SnapKVSelect::run(s, s_ws, s_bytes, nullptr), "snapkv");
    });
    check(capkv::cuda::read_status(s_ws, nullptr), "SnapKV device status");
    cudaFree(s_ws);
  }

  // The cheap policies' kernels for scale: L2-norm scores and the dense compaction of K.
  {
    capkv::cuda::KeyScores::Arguments k;
    k.scores = layout.scores;
    k.scores_ld = n;
    const std::size_t k_bytes = capkv::cuda::KeyScores::workspace_size(k);
    row.l2norm = time_ms(iterations, [&](int i) {
      k.keys = inputs(i % row.copies).keys;
      check(capkv::cuda::KeyScores::run(k, workspace, k_bytes, nullptr), "l2norm");
    });
    auto* out = device_alloc<__nv_bfloat16>(static_cast<std::size_t>(kept * kKvHeads * kHeadDim));
    capkv::cuda::Compact::Arguments c;
    c.out = capkv::MutableTensorView(out, capkv::DType::kBF16, capkv::Layout::kTokensHeadsDim, kept,
                                     kKvHeads, kHeadDim);
    c.indices = indices;
    c.indices_ld = kept;
    row.compact = time_ms(iterations, [&](int i) {
      c.source = inputs(i % row.copies).keys;
      check(
          capkv::cuda::Compact::run(c, workspace, capkv::cuda::Compact::workspace_size(c), nullptr),
          "compact");
    });
    cudaFree(out);

    // In place: the kept rows of a copy of K moved to its front (the same indices every call, so
    // each call is a valid compaction of whatever the buffer holds).
    auto* cache = device_alloc<__nv_bfloat16>(cache_elems);
    check(cudaMemcpy(cache, keys[0], cache_elems * sizeof(__nv_bfloat16), cudaMemcpyDeviceToDevice),
          "copy K");
    capkv::cuda::CompactInPlace::Arguments in_place;
    in_place.cache = capkv::MutableTensorView(cache, capkv::DType::kBF16,
                                              capkv::Layout::kTokensHeadsDim, n, kKvHeads, kHeadDim);
    in_place.indices = indices;
    in_place.indices_ld = kept;
    in_place.kept = kept;
    const std::size_t in_place_bytes = capkv::cuda::CompactInPlace::workspace_size(in_place);
    row.compact_in_place = time_ms(iterations, [&](int) {
      check(capkv::cuda::CompactInPlace::run(in_place, workspace, in_place_bytes, nullptr),
            "compact in place");
    });
    check(capkv::cuda::read_status(workspace, nullptr), "in-place compaction device status");
    cudaFree(cache);
  }

  // One H2O decoding step at a full cache of n slots: every call appends into slot n - 1 and evicts
  // one token, so the state returns to n - 1 tokens per head and the next call is the same work.
  {
    auto* accumulators = device_alloc<float>(static_cast<std::size_t>(kKvHeads * n));
    check(cudaMemset(accumulators, 0, sizeof(float) * kKvHeads * n), "cudaMemset");
    auto* sizes = device_alloc<std::int32_t>(kKvHeads);
    auto* evicted = device_alloc<std::int32_t>(kKvHeads);
    const std::vector<std::int32_t> start(kKvHeads, static_cast<std::int32_t>(n - 1));
    check(cudaMemcpy(sizes, start.data(), sizeof(std::int32_t) * kKvHeads, cudaMemcpyHostToDevice),
          "sizes");
    capkv::cuda::H2OStep::Arguments step;
    step.budget = n - 1;
    step.query = capkv::TensorView(queries, capkv::DType::kBF16, capkv::Layout::kTokensHeadsDim, 1,
                                   kQueryHeads, kHeadDim);
    step.accumulators = accumulators;
    step.accumulators_ld = n;
    step.sizes = sizes;
    step.evicted = evicted;
    const std::size_t step_bytes = capkv::cuda::H2OStep::workspace_size(step);
    auto* step_ws = device_alloc<unsigned char>(step_bytes);
    row.h2o_step = time_ms(iterations, [&](int i) {
      step.keys = inputs(i % row.copies).keys;
      check(capkv::cuda::H2OStep::run(step, step_ws, step_bytes, nullptr), "H2O step");
    });
    check(capkv::cuda::read_status(step_ws, nullptr), "H2O step device status");
    cudaFree(step_ws);
    cudaFree(evicted);
    cudaFree(sizes);
    cudaFree(accumulators);
  }

  // The floor: CapKV must read K and V once, and do 2 n d^2 flops per query head (the Gram; the
  // leverage product is as much again, so this floor is generous to the implementation).
  row.floor_bytes = static_cast<double>(kv_bytes) / (machine.copy_gbps / 2.0 * 1e9) * 1e3;
  row.floor_flops = 2.0 * static_cast<double>(n) * kHeadDim * kHeadDim * kQueryHeads /
                    (machine.gemm_tflops * 1e12) * 1e3;

  cudaFree(workspace);
  cudaFree(indices);
  cudaFree(queries);
  for (int c = 0; c < row.copies; ++c) {
    cudaFree(keys[c]);
    cudaFree(values[c]);
  }
  return row;
}

std::string table(const std::vector<Row>& rows) {
  std::ostringstream s;
  char line[640];
  s << "| n | relevance | gram TC (CC) | cholesky | leverage TC (CC) | top-B | **CapKV select** TC "
       "(CC) | composed (cuBLAS+cuSOLVER) | composed / select | floor | select / floor | SnapKV "
       "select | L2-norm | compact K | compact K in place | H2O decode step |\n";
  s << "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const Row& r : rows) {
    std::snprintf(line, sizeof line,
                  "| %lld | %.3f | %.3f (%.3f) | %.3f | %.3f (%.3f) | %.3f | **%.3f** (%.3f) | "
                  "%.3f | %.1fx | %.3f (%s) | %.1fx | %.3f | %.3f | %.3f | %.3f | %.3f |\n",
                  static_cast<long long>(r.n), r.relevance, r.gram, r.gram_cuda_cores, r.cholesky,
                  r.leverage, r.leverage_cuda_cores, r.top_b, r.full, r.full_cuda_cores, r.composed,
                  r.composed / r.full, r.floor(),
                  r.floor_flops >= r.floor_bytes ? "flops" : "bytes", r.full / r.floor(),
                  r.snapkv, r.l2norm, r.compact, r.compact_in_place, r.h2o_step);
    s << line;
  }
  return s.str();
}

}  // namespace

int main(int argc, char** argv) {
  std::string results;
  std::vector<std::int64_t> tokens{4096, 32768, 131072};
  int iterations = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--results" && i + 1 < argc) {
      results = argv[++i];
    } else if (a == "--tokens" && i + 1 < argc) {
      tokens.clear();
      std::stringstream list(argv[++i]);
      std::string item;
      while (std::getline(list, item, ',')) tokens.push_back(std::stoll(item));
    } else if (a == "--iterations" && i + 1 < argc) {
      iterations = std::max(3, std::atoi(argv[++i]));
    } else {
      die("usage: capkv_cuda_bench [--results PATH] [--tokens 4096,32768,131072] [--iterations N]");
    }
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) die("no CUDA device");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  int driver = 0;
  int runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::printf("device: %s (sm_%d%d, %d SMs, %.0f MB L2, %.1f GB)\n", prop.name, prop.major,
              prop.minor, prop.multiProcessorCount, prop.l2CacheSize / 1048576.0,
              prop.totalGlobalMem / 1073741824.0);

  cublasHandle_t cublas = nullptr;
  cusolverDnHandle_t cusolver = nullptr;
  if (cublasCreate(&cublas) != CUBLAS_STATUS_SUCCESS) die("cublasCreate failed");
  if (cusolverDnCreate(&cusolver) != CUSOLVER_STATUS_SUCCESS) die("cusolverDnCreate failed");

  const Machine machine = measure_machine(cublas, 10);
  std::printf(
      "copy bandwidth (read + write): %.0f GB/s; bf16 GEMM (fp32 accumulate, 8192^3): %.0f "
      "TFLOP/s\n",
      machine.copy_gbps, machine.gemm_tflops);

  std::vector<Row> rows;
  for (std::int64_t n : tokens) {
    std::printf("timing n = %lld ...\n", static_cast<long long>(n));
    std::fflush(stdout);
    rows.push_back(run_shape(n, machine, static_cast<std::size_t>(prop.l2CacheSize), iterations,
                             cublas, cusolver));
  }
  cusolverDnDestroy(cusolver);
  cublasDestroy(cublas);

  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::ostringstream md;
  md << "# CUDA backend: device check\n\n"
     << "Written by `bench/cuda/device_check.sh` on " << date << ".\n\n"
     << "- Device: " << prop.name << " (sm_" << prop.major << prop.minor << ", "
     << prop.multiProcessorCount << " SMs, " << prop.l2CacheSize / 1048576 << " MB L2), driver "
     << driver / 1000 << "." << (driver % 1000) / 10 << ", runtime " << runtime / 1000 << "."
     << (runtime % 1000) / 10 << "\n"
     << "- Shapes: d = " << kHeadDim << ", " << kQueryHeads << " query / " << kKvHeads
     << " KV heads, bf16 K and V as [n, heads, d], " << kQueries
     << " query rows (window 32), keep 25%, default CapKV (4 sinks)\n"
     << "- Method: CUDA events per call, 3 warm-up calls, median of " << iterations
     << " (composed path: half as many); inputs rotate over copies spanning >= 4x L2\n";
  char machine_line[256];
  std::snprintf(machine_line, sizeof machine_line,
                "- Measured here: copy bandwidth %.0f GB/s (read + write, cudaMemcpy D2D of 2 "
                "GiB), bf16 GEMM %.0f "
                "TFLOP/s (cublasGemmEx 8192^3, fp32 accumulate)\n",
                machine.copy_gbps, machine.gemm_tflops);
  md << machine_line
     << "- Floor = max(bytes(K, V) / read bandwidth, 2 n d^2 flops per query head / bf16 GEMM "
        "rate); the "
        "leverage product costs as much again, so the floor flatters the implementation\n\n"
     << "Milliseconds (median). TC: the tensor-core path (bf16 MMA with the two-term split, the "
        "default for bf16); CC: the fp32 CUDA-core path, timed on the same buffers.\n\n"
     << table(rows) << "\n"
     << "Stages are timed alone on the pipeline's own buffers; \"CapKV select\" is the whole "
        "`capkv::cuda::CapKVSelect::run`; \"SnapKV select\" is `SnapKVSelect::run` (paper "
        "preset) on the same cache. \"H2O decode step\" is one `H2OStep::run` over a full cache "
        "of n slots (the attention of 32 query heads, the update and one eviction per KV head). "
        "The composed path is `ComposedCapKVScores` (cuBLAS SGEMM, cusolverDnDpotrfBatched, "
        "cublasDtrsmBatched) followed by the same top-B kernel.\n";
  if (!results.empty()) {
    FILE* f = std::fopen(results.c_str(), "w");
    if (!f) die("cannot write " + results);
    std::fputs(md.str().c_str(), f);
    std::fclose(f);
    std::printf("wrote %s\n", results.c_str());
  }
  std::printf("\n%s", table(rows).c_str());
  return 0;
}
