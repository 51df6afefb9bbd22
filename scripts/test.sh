#!/usr/bin/env bash
# Sets up and runs the whole test suite: installs dependencies, fetches the SmolLM2 model (model
# tests skip with a message where it cannot be had), builds Release and runs ctest.
#   scripts/test.sh              the suite
#   scripts/test.sh --sanitize   the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
set -euo pipefail
cd "$(dirname "$0")/.."

build=build
flags=(-DCMAKE_BUILD_TYPE=Release)
if [[ "${1:-}" == "--sanitize" ]]; then
  build=build-sanitize
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAPKV_SANITIZE=ON -DCAPKV_BUILD_BENCH=OFF)
  # A 4K-token prefill under ASan takes many minutes and finds nothing the short prompts do not.
  export CAPKV_SKIP_SLOW_MODEL_TESTS=1
fi

scripts/install_dependencies.sh
if [[ -x scripts/fetch_model.sh ]]; then
  scripts/fetch_model.sh >/dev/null || echo "warning: model not available; model tests will skip" >&2
fi
cmake -S . -B "$build" "${flags[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" -j"$(nproc)" --output-on-failure
