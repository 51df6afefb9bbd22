#!/usr/bin/env bash
# Builds the CPU microbenchmarks (Release, build-bench/), runs them once with 3 repetitions and
# writes bench/results/cpu.json and bench/RESULTS.md. About 9 minutes on a loaded 2-core VM.
#   bench/run_cpu.sh [extra Google Benchmark flags, e.g. --benchmark_filter=kernel/]
# OMP_NUM_THREADS (default: every core) sets the threads of both the library and the sgemm reference.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${CAPKV_BENCH_BUILD_DIR:-$root/build-bench}
json=${CAPKV_BENCH_JSON:-$root/bench/results/cpu.json}
markdown=${CAPKV_BENCH_MARKDOWN:-$root/bench/RESULTS.md}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCAPKV_BUILD_BENCH=ON \
  -DCAPKV_BUILD_TESTS=OFF -DCAPKV_BUILD_EXAMPLES=OFF -DCAPKV_CUDA=OFF >/dev/null
cmake --build "$build" --target capkv_cpu_bench -j2

mkdir -p "$(dirname "$json")"
cpu_model=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
# One --benchmark_context flag holds every key=value, comma separated, so values lose their commas
# (and the command line, full of '=', is added to the JSON by the summariser instead).
context=$(printf 'cpu_model=%s,cores=%s,omp_num_threads=%s,load_before=%s,git_commit=%s' \
  "${cpu_model//,/;}" "$(nproc)" "$OMP_NUM_THREADS" "$load_before" "$commit")
# Small min_time: the 64K-token CapKV calls take seconds, so one iteration per repetition is what
# they get anyway; the short kernels still run many. Medians of 3 repetitions are reported.
"$build/bench/capkv_cpu_bench" \
  --benchmark_repetitions=3 \
  --benchmark_min_time=0.05 \
  --benchmark_report_aggregates_only=true \
  --benchmark_out_format=json \
  --benchmark_out="$json" \
  --benchmark_context="$context" \
  "$@"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
python3 "$root/bench/summarize.py" "$json" -o "$markdown" --load-after "$load_after" \
  --command "OMP_NUM_THREADS=$OMP_NUM_THREADS bench/run_cpu.sh $*"
echo "wrote $json and $markdown (load before: $load_before, after: $load_after)"
