#!/usr/bin/env bash
# The CUDA backend's device check, for a machine with an NVIDIA GPU (written for an H200, sm_90):
#   1. configures and builds Release for sm_90 in its own build folder (build-device-check/),
#   2. runs the GPU tests (ctest -R cuda): every kernel against the CPU path, then a few small
#      cases under compute-sanitizer memcheck (and racecheck with --racecheck) when installed,
#   3. times each kernel and the whole CapKV selection for n = 4K, 32K, 128K against the composed
#      cuBLAS/cuSOLVER path and the measured floor, prints the table last and writes
#      bench/cuda/RESULTS.md (date, device, numbers).
# About 5 minutes on an H200 host with 16 cores, most of it the build.
#   bench/cuda/device_check.sh                 everything
#   bench/cuda/device_check.sh --skip-tests    build and time only
#   bench/cuda/device_check.sh --tokens 4096   other token counts (comma separated)
#   bench/cuda/device_check.sh --racecheck     also compute-sanitizer racecheck (a few minutes more)
# Environment: CUDA_ARCH (default 90), CAPKV_DEVICE_CHECK_BUILD_DIR, CUDACXX or nvcc on PATH.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${CAPKV_DEVICE_CHECK_BUILD_DIR:-$root/build-device-check}
arch=${CUDA_ARCH:-90}
results=$root/bench/cuda/RESULTS.md
run_tests=1
sanitizer_tools=(memcheck)
bench_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --skip-tests) run_tests=0 ;;
    --racecheck) sanitizer_tools+=(racecheck) ;;
    --tokens) bench_args+=(--tokens "$2"); shift ;;
    --iterations) bench_args+=(--iterations "$2"); shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "device_check: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }
fail() { echo "device_check: $*" >&2; exit 1; }

step "checking the machine"
if [[ -z "${CUDACXX:-}" ]]; then
  if command -v nvcc >/dev/null 2>&1; then
    export CUDACXX=$(command -v nvcc)
  elif [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export CUDACXX=/usr/local/cuda/bin/nvcc
  else
    fail "no nvcc: put the CUDA toolkit's bin/ on PATH or set CUDACXX"
  fi
fi
"$CUDACXX" --version | tail -n 2
command -v nvidia-smi >/dev/null 2>&1 || fail "nvidia-smi not found: this script needs a machine with an NVIDIA GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  || fail "nvidia-smi cannot see a GPU"
jobs=$(nproc 2>/dev/null || echo 4)

step "configuring $build (Release, sm_$arch)"
# -gencode=arch=compute_90,code=sm_90 is what CMAKE_CUDA_ARCHITECTURES=90-real produces.
mkdir -p "$build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCAPKV_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${arch}-real" -DCMAKE_CUDA_COMPILER="$CUDACXX" \
  -DCAPKV_BUILD_TESTS=ON -DCAPKV_BUILD_BENCH=ON -DCAPKV_BUILD_EXAMPLES=OFF >"$build/configure.log" 2>&1 \
  || { tail -n 30 "$build/configure.log" >&2; fail "configure failed (full log: $build/configure.log)"; }

step "building the CUDA tests and the timing program ($jobs jobs)"
cmake --build "$build" -j"$jobs" --target capkv_cuda_tests capkv_cuda_state_tests \
  capkv_device_math_tests capkv_cuda_bench \
  || fail "build failed"

if [[ $run_tests -eq 1 ]]; then
  step "GPU tests"
  # Every device test must run, not skip: a skip here means the GPU was not usable.
  log=$build/cuda-tests.log
  if ! ctest --test-dir "$build" -R '^cuda\.' -j4 --output-on-failure --timeout 600 2>&1 | tee "$log" | tail -n 25; then
    fail "GPU tests failed (full log: $log)"
  fi
  grep -q "tests passed" "$log" || fail "ctest did not report a result (full log: $log)"
  if grep -q "(Skipped)" "$log"; then
    skipped=$(grep -c "(Skipped)" "$log")
    fail "$skipped GPU tests skipped: the tests found no usable device (full log: $log)"
  fi
fi

if [[ $run_tests -eq 1 ]] && command -v compute-sanitizer >/dev/null 2>&1; then
  # A few small cases under memcheck (out-of-bounds, misaligned) and racecheck (shared-memory
  # races, e.g. a missing __syncthreads); each kernel appears at least once in the filter.
  filter='*WeightedGramTest*n1000_d128_g4*:*WeightedGramTest*n33_*:*InverseCholeskyTest*d7:*InverseCholeskyTest*d129'
  filter+=':*LeverageTest*n129_d128_g4_f32_padded*:*TopBTest*n1000_h3_kind1*:*KeyScoresTest*n333*'
  filter+=':*CompactionTest*:*RelevanceTest*n300_d64*:*CapKVSelectTest.AgreesWithTheCpuSelection*n333_d64_g2_m33_f32_htd*'
  filter+=':*SnapKVSelectTest*paper_n129*:*H2OSelectTest*n129*:*ComposedLibraryPath*n333_d64_g2_m33_f32_htd*'
  filter+=':*WeightedGramTest*n70_d80_g2_f16*:*LeverageTest*n129_d80_g2_f16*'  # the tensor-core kernels
  state_filter='*H2OStepTest*n97_steps40_B17_d128_g4_f16*:*CompactInPlaceTest*bf16*:*CompactInPlaceErrors*'
  for tool in "${sanitizer_tools[@]}"; do
    step "compute-sanitizer --tool $tool (small cases)"
    for run in "capkv_cuda_tests|$filter" "capkv_cuda_state_tests|$state_filter"; do
      binary=${run%%|*}
      log=$build/sanitizer-$tool-$binary.log
      status=0
      limit=150
      [[ $tool == racecheck ]] && limit=300
      timeout "$limit" compute-sanitizer --tool "$tool" --error-exitcode 99 \
        "$build/tests/cuda/$binary" --gtest_filter="${run#*|}" --gtest_brief=1 >"$log" 2>&1 || status=$?
      if [[ $status -eq 124 ]]; then
        echo "warning: compute-sanitizer $tool ran out of its $limit s on $binary; see $log" >&2
      elif [[ $status -ne 0 ]]; then
        tail -n 40 "$log" >&2
        fail "compute-sanitizer $tool found errors in $binary (log: $log)"
      else
        tail -n 3 "$log"
      fi
    done
  done
fi

step "timing (n = 4K, 32K, 128K; d = 128; 32 query / 8 KV heads; bf16)"
"$build/bench/cuda/capkv_cuda_bench" --results "$results" "${bench_args[@]}" \
  || fail "the timing program failed"

step "done"
echo "results: $results"
