#!/usr/bin/env bash
# Builds the GGUF fuzzer (fuzz/, clang + libFuzzer + ASan + UBSan) in its own build folder and runs
# it for a bounded time on a seed corpus it generates: small valid files from the tests' GGUF
# writer, plus the first 8 KiB of the real model when scripts/fetch_model.sh has fetched it.
#
# usage: scripts/run_fuzz.sh [SECONDS] [extra libFuzzer flags...]
#   SECONDS defaults to 60 (or $CAPKV_FUZZ_SECONDS).
# Environment:
#   CAPKV_FUZZ_CXX    clang++ to build with (default: clang++-14, else clang++)
#   CAPKV_FUZZ_BUILD  build folder (default: build-fuzz at the repository root)
#   CAPKV_FUZZ_JOBS   parallel fuzzing processes (default: 1)
#   CAPKV_MODEL / CAPKV_CACHE  where to look for the model, as in scripts/fetch_model.sh
#
# The corpus grows in $CAPKV_FUZZ_BUILD/corpus across runs. Crashing inputs land in
# $CAPKV_FUZZ_BUILD/artifacts and the script exits non-zero; reproduce one with
#   $CAPKV_FUZZ_BUILD/gguf_fuzz $CAPKV_FUZZ_BUILD/artifacts/crash-...
set -euo pipefail

die() {
  echo "run_fuzz.sh: error: $*" >&2
  exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-${CAPKV_FUZZ_SECONDS:-60}}"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || die "SECONDS must be a positive integer, not '$seconds'"
shift || true
build="${CAPKV_FUZZ_BUILD:-$root/build-fuzz}"
jobs="${CAPKV_FUZZ_JOBS:-1}"
[[ "$jobs" =~ ^[0-9]+$ && "$jobs" -gt 0 ]] || die "CAPKV_FUZZ_JOBS must be a positive integer"

cxx="${CAPKV_FUZZ_CXX:-}"
if [[ -z "$cxx" ]]; then
  if command -v clang++-14 >/dev/null 2>&1; then cxx=clang++-14; else cxx=clang++; fi
fi
command -v "$cxx" >/dev/null 2>&1 ||
  die "'$cxx' not found; install clang and libFuzzer (Debian: apt-get install clang-14 libclang-rt-14-dev)"

cmake -S "$root/fuzz" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  >/dev/null || die "configuring $build failed"
cmake --build "$build" -j2 --target gguf_fuzz gguf_fuzz_seeds || die "building the fuzzer failed"

seeds="$build/seeds"
corpus="$build/corpus"
artifacts="$build/artifacts"
mkdir -p "$seeds" "$corpus" "$artifacts"
"$build/gguf_fuzz_seeds" "$seeds"

model="${CAPKV_MODEL:-${CAPKV_CACHE:-${HOME:-/nonexistent}/.cache/capkv}/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [[ -f "$model" ]]; then
  # The real header and the start of its metadata; truncated, so it steers mutations rather than
  # parsing as is.
  head -c 8192 "$model" >"$seeds/smollm2_head.gguf"
fi

echo "run_fuzz.sh: fuzzing for ${seconds}s ($jobs job(s)); corpus $corpus" >&2
parallel=()
# -fork keeps -max_total_time as the bound for the whole session, unlike -jobs.
[[ "$jobs" -gt 1 ]] && parallel=(-fork="$jobs")
status=0
# -max_len covers every seed; -timeout flags inputs that make one parse take seconds (a hang);
# -rss_limit_mb catches inputs that make the parser allocate far beyond the file's size.
"$build/gguf_fuzz" "$corpus" "$seeds" \
  -dict="$root/fuzz/gguf.dict" \
  -max_total_time="$seconds" \
  -max_len=8192 \
  -timeout=10 \
  -rss_limit_mb=2048 \
  -artifact_prefix="$artifacts/" \
  -print_final_stats=1 \
  "${parallel[@]}" \
  "$@" || status=$?

if [[ $status -ne 0 ]]; then
  echo "run_fuzz.sh: the fuzzer failed (exit $status); crashing inputs are in $artifacts" >&2
  exit "$status"
fi
echo "run_fuzz.sh: no crashes in ${seconds}s" >&2
