#!/usr/bin/env bash
# Installs everything capkv's build, tests, benchmarks and SmolLM2 evaluation need on Debian 12.
# Idempotent: packages already present are left alone. Needs root (or sudo) for apt-get.
set -euo pipefail

packages=(
  build-essential cmake git pkg-config python3 python3-pip
  libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev
  libpcre2-dev nlohmann-json3-dev libcli11-dev libfmt-dev gnuplot-nox
  clang-14 libclang-rt-14-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python is only used by tests that compare with independent references (gguf's dequantizers,
# the tokenizers library); those tests skip cleanly if this fails.
python3 -m pip install --quiet --disable-pip-version-check gguf numpy tokenizers 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check --break-system-packages gguf numpy tokenizers ||
  echo "warning: could not pip install gguf/numpy/tokenizers; their reference tests will skip" >&2
