"""Fail an image build whose TensorRT differs from the version in docker/versions.md.

Usage: python3 check_tensorrt_version.py 10.5.0.18

Reads the version from the ``tensorrt`` Python package (engine-build image) or, without it, from
``libnvinfer``'s ``getInferLibVersion()`` (Triton image). Plans load only in the TensorRT that built them, so a
mismatch between the two images is an error; a version that cannot be read is only a warning.
"""

from __future__ import annotations

import ctypes
import sys


def installed_tensorrt_version() -> str | None:
    """``major.minor.patch[.build]`` of the TensorRT in this image, or None when neither source is present."""
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except ImportError:
        pass
    for name in ("libnvinfer.so.10", "libnvinfer.so"):
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        code = int(library.getInferLibVersion())  # major * 10000 + minor * 100 + patch since TensorRT 10
        return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: check_tensorrt_version.py EXPECTED (e.g. 10.5.0.18)\n")
        return 2
    expected = argv[0]
    found = installed_tensorrt_version()
    if found is None:
        sys.stderr.write(f"WARNING: cannot read the TensorRT version of this image (expected {expected})\n")
        return 0
    if found.split(".")[:3] != expected.split(".")[:3]:
        sys.stderr.write(f"ERROR: this image has TensorRT {found}, docker/versions.md says {expected}; plans built by "
                         "engine-build would not load in triton. Fix the table or the image tags.\n")
        return 1
    sys.stdout.write(f"TensorRT {found} (expected {expected})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
