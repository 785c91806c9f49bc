"""Real-image ``--input-data`` JSON for Triton's perf_analyzer.

perf_analyzer sends the entries of ``{"data": [...]}`` round-robin. Each entry holds one batch-1 row per input:

- ``rtmo`` (input ``image``, BYTES [1]): the photo's encoded bytes. perf_analyzer's binary form of a BYTES
  element is a 4-byte little-endian length followed by the bytes, base64-encoded as ``{"b64": ...}``.
- ``engine`` (input ``images``, UINT8 [S, S, 3]): the photo decoded and letterboxed exactly as the preprocess
  model does, raw row-major bytes in ``{"b64": ...}``. S comes from the served engine's config (640, 416 for tiny).

Usage: ``python loadtest/perf_input_data.py --model rtmo --out rtmo.json [--photos DIR] [--url HOST:PORT]``
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtmo_bench.serving import PHOTOS, engine_metadata, letterboxed, load_photos

MODELS = ("rtmo", "engine")


def bytes_element(data: bytes) -> str:
    """Base64 of one BYTES element in Triton's wire form: uint32 little-endian length, then the bytes."""
    return base64.b64encode(struct.pack("<I", len(data)) + data).decode("ascii")


def ensemble_input_data(photos: Sequence[bytes], *, input_name: str = "image") -> dict[str, Any]:
    """One entry per encoded photo for the ``rtmo`` ensemble."""
    if not photos:
        raise ValueError("photos is empty; give at least one encoded image")
    return {"data": [{input_name: {"content": {"b64": bytes_element(data)}, "shape": [1]}} for data in photos]}


def engine_input_data(photos: Sequence[bytes], *, input_size: int, input_name: str = "images") -> dict[str, Any]:
    """One entry per photo for the ``engine`` model: the letterboxed uint8 [S, S, 3] canvas."""
    if not photos:
        raise ValueError("photos is empty; give at least one encoded image")
    return {
        "data": [
            {
                input_name: {
                    "content": {"b64": base64.b64encode(canvas[0].tobytes()).decode("ascii")},
                    "shape": list(canvas.shape[1:]),
                }
            }
            for canvas in letterboxed(photos, input_size)
        ]
    }


def input_data(model: str, photos: Sequence[bytes], *, input_size: int) -> dict[str, Any]:
    """The ``--input-data`` document for ``model`` (``rtmo`` or ``engine``).

    Raises:
        ValueError: for another model name.
    """
    if model == "rtmo":
        return ensemble_input_data(photos)
    if model == "engine":
        return engine_input_data(photos, input_size=input_size)
    raise ValueError(f"model {model!r}: real input data is generated for {', '.join(MODELS)}")


def write_input_data(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--photos", type=Path, default=PHOTOS, help="directory of *.jpg photos (default: the test photos)"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--input-size", type=int, help="engine input S (default: read from the server at --url)")
    size.add_argument("--url", default="127.0.0.1:8001", help="gRPC host:port to read the engine input size from")
    args = parser.parse_args(argv)
    input_size = args.input_size or (engine_metadata(args.url)[0] if args.model == "engine" else 0)
    write_input_data(args.out, input_data(args.model, load_photos(args.photos), input_size=input_size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
