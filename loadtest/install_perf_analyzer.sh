#!/usr/bin/env bash
# Make Triton's perf_analyzer runnable on a CPU-only Linux machine; idempotent, safe to run on every `make test`.
#
# The binary ships inside the tritonclient wheel (tritonclient-*.data/data/bin/perf_analyzer, installed into the
# virtual environment's bin/). It links two libraries the wheel does not carry:
#   libb64.so.0d     Debian package libb64-0d (apt-get; needs root or sudo)
#   libcudart.so.12  PyPI nvidia-cuda-runtime-cu12 (pip, into the same virtual environment); only loaded, never used on CPU
# If the installed tritonclient has no perf_analyzer, the tritonclient 2.49.0 wheel is downloaded (no dependencies)
# and the binary extracted into $RTMO_CACHE_DIR/perf_analyzer/.
#
# Usage: loadtest/install_perf_analyzer.sh [VENV]   (default: .venv of this checkout)
# Prints the binary's path and the LD_LIBRARY_PATH it needs on its last two lines.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
PYTHON="$VENV/bin/python"
CUDART_PIN="nvidia-cuda-runtime-cu12==12.9.79"
FALLBACK_WHEEL="tritonclient==2.49.0"
CACHE="${RTMO_CACHE_DIR:-$HOME/.cache/rtmo}/perf_analyzer"

log() { echo "install_perf_analyzer: $*" >&2; }

[ -x "$PYTHON" ] || { log "no Python at $PYTHON (create the environment first: make install)"; exit 2; }

# 1. The binary: from the installed tritonclient wheel, else from the 2.49.0 wheel.
BINARY="$VENV/bin/perf_analyzer"
if [ ! -x "$BINARY" ]; then
    BINARY="$CACHE/perf_analyzer"
    if [ ! -x "$BINARY" ]; then
        log "installed tritonclient has no perf_analyzer; extracting it from $FALLBACK_WHEEL"
        mkdir -p "$CACHE"
        tmp="$(mktemp -d)"
        trap 'rm -rf "$tmp"' EXIT
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "$FALLBACK_WHEEL"
        "$PYTHON" - "$tmp" "$BINARY" <<'PY'
import sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("tritonclient-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    member = next(n for n in archive.namelist() if n.endswith(".data/data/bin/perf_analyzer"))
    pathlib.Path(sys.argv[2]).write_bytes(archive.read(member))
PY
        chmod +x "$BINARY"
    fi
fi

# 2. libb64 from Debian.
LDCONFIG="$(command -v ldconfig || echo /sbin/ldconfig)"  # /sbin is not on every user's PATH
if ! "$LDCONFIG" -p | grep -q 'libb64\.so\.0d'; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo > /dev/null || { log "libb64-0d is missing and installing it needs root: run 'apt-get install libb64-0d' as root"; exit 1; }
        SUDO="sudo"
    fi
    log "installing libb64-0d with apt-get"
    $SUDO apt-get update -qq >&2 || log "apt-get update failed; trying the install with the current lists"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libb64-0d >&2
fi

# 3. libcudart from PyPI, into the virtual environment.
cudart_dir() {
    "$PYTHON" - <<'PY'
import importlib.util, pathlib
try:
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
except ModuleNotFoundError:  # no nvidia namespace package at all
    spec = None
if spec and spec.submodule_search_locations:
    lib = pathlib.Path(next(iter(spec.submodule_search_locations))) / "lib"
    if (lib / "libcudart.so.12").is_file():
        print(lib)
PY
}
CUDART_DIR="$(cudart_dir)"
if [ -z "$CUDART_DIR" ]; then
    log "installing $CUDART_PIN into $VENV"
    "$PYTHON" -m pip install --quiet "$CUDART_PIN" >&2
    CUDART_DIR="$(cudart_dir)"
fi

# 4. Check: every library resolves and the binary starts.
missing="$(LD_LIBRARY_PATH="$CUDART_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$BINARY" | grep 'not found' || true)"
if [ -n "$missing" ]; then
    log "perf_analyzer still misses libraries:"; echo "$missing" >&2; exit 1
fi
LD_LIBRARY_PATH="$CUDART_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$BINARY" --version >&2 \
    || { log "$BINARY does not start"; exit 1; }
echo "$BINARY"
echo "$CUDART_DIR"
