#!/usr/bin/env bash
# The main job: installs dependencies, fetches SmolLM2-135M, builds Release, and runs the policy
# comparison on the real model (capkv-eval's default protocol: a 2048-token window of the GPL-3,
# every policy at 10/25/50/75% of the cache kept, 128 teacher-forced tokens, passkey retrieval and
# the decode-time mode). The table goes to stdout, progress to stderr, CSV/JSON/plots to out/eval.
# Where the model cannot be fetched it falls back to the synthetic quickstart.
#   scripts/run.sh [capkv-eval options]   e.g. scripts/run.sh --context 4096 --docs 3
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_dependencies.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
if ! model="$(scripts/fetch_model.sh)"; then
  echo "run.sh: SmolLM2-135M could not be fetched (see above); running the synthetic quickstart" \
    "instead, which shows the policies on a made-up cache, not a real model" >&2
  cmake --build build -j"$(nproc)" --target quickstart
  build/examples/quickstart
  exit 0
fi
cmake --build build -j"$(nproc)" --target capkv_eval
# capkv-eval prints the Markdown table, then where results.csv, results.json and the plots are.
CAPKV_MODEL="$model" build/examples/llm/eval/capkv-eval "$@"
