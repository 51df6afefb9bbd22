#!/usr/bin/env bash
# The main job: installs dependencies, builds Release, and runs the policy comparison.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_dependencies.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target quickstart
build/examples/quickstart
