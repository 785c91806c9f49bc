#!/usr/bin/env bash
# Create the MMPose reference virtual environment used by the RTMO parity tests.
#
# Usage: tests/mmpose_ref/setup_venv.sh [VENV_DIR]
#   VENV_DIR defaults to $RTMO_MMPOSE_VENV, else <repo>/.mmpose-ref-venv (git-ignored).
#
# Recipe: /work/shared/reference/mmpose-reference-venv.md (verified on Python 3.11, CPU torch).
# Idempotent: if VENV_DIR already has an importable mmpose (with the run_reference.py
# import placeholders), nothing is done.  Set PYTHON to choose the interpreter (default python3).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${1:-${RTMO_MMPOSE_VENV:-$REPO/.mmpose-ref-venv}}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${RTMO_TORCH_VERSION:-2.13.0}"

die() { echo "setup_venv.sh: ERROR: $*" >&2; exit 1; }

check_import() {
    # Imports mmpose.apis the same way run_reference.py does (placeholders only if needed).
    "$VENV/bin/python" "$HERE/run_reference.py" check >/dev/null 2>&1
}

# The pins this venv was built from; a venv from other pins is brought up to date.
PINS="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)-torch$TORCH_VERSION"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.pins" 2>/dev/null)" = "$PINS" ] && check_import; then
    echo "setup_venv.sh: $VENV already has mmpose importable with these pins; nothing to do."
    exit 0
fi

start=$(date +%s)
echo "setup_venv.sh: creating MMPose reference venv at $VENV"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" || die "could not create venv with '$PYTHON -m venv $VENV'"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)

# 1. torch first (local CPU wheel), so nothing else pulls a different build.
"${PIP[@]}" "torch==$TORCH_VERSION" \
    || die "pip install torch==$TORCH_VERSION failed"

# 2. Dependencies pinned exactly in requirements.txt (the recipe's list, resolved once, plus `six`:
#    mmpose/models/utils/misc.py does `from six.moves import ...`, and python-dateutil 4.0 no longer brings it).
#    Float32 parity must not depend on which release a fresh machine happens to resolve.
"${PIP[@]}" -r "$HERE/requirements.txt" \
    || die "pip install -r $HERE/requirements.txt failed"

# 3. mmdet / mmpose without their dependency lists (chumpy, CUDA torchvision).
"${PIP[@]}" --no-deps mmdet==3.3.0 mmpose==1.3.2 \
    || die "pip install --no-deps mmdet==3.3.0 mmpose==1.3.2 failed"

if ! check_import; then
    "$VENV/bin/python" "$HERE/run_reference.py" check >&2 || true
    die "mmpose is installed in $VENV but 'run_reference.py check' fails (see above)"
fi
"$VENV/bin/python" "$HERE/run_reference.py" check
echo "$PINS" > "$VENV/.pins"
echo "setup_venv.sh: done in $(( $(date +%s) - start )) s: $VENV"
