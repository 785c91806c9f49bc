"""Decide whether a TensorRT plan already built can be served again instead of rebuilding it.

TensorRT plans are tied to the TensorRT version and the GPU model they were built on, and ours also to the
checkpoint, precision, Triton ``max_batch_size`` and the exported graph. ``rtmo.build.engine`` records all of that
in the ``model.plan.json`` sidecar; ``plan_mismatches`` compares it with what is wanted now. The docker compose
``engine-build`` service runs ``python -m rtmo.build.reuse`` first and skips export and engine build (minutes)
when it exits 0. A plan cache shared by pods on several GPU models (the Helm chart's ``planCache``) keeps one
folder per GPU model, TensorRT version and checkpoint, named by ``plan_cache_key``.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtmo.checkpoint_weights import DEFAULT_CHECKPOINT_WEIGHTS, add_checkpoint_weights_option
from rtmo.errors import RTMOError
from rtmo.files import sha256_file
from rtmo.zoo import checkpoint_sha256, resolve_checkpoint

__all__ = ["PlanRequest", "gpu_name", "main", "plan_cache_key", "plan_mismatches", "reusable_plan_mismatches"]

LOGGER = logging.getLogger(__name__)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class PlanRequest:
    """What the plan to serve must have been built for."""

    checkpoint: str
    checkpoint_sha256: str
    tensorrt_version: str
    gpu: str
    precision: str
    max_batch_size: int
    top_k: int
    checkpoint_weights: str = DEFAULT_CHECKPOINT_WEIGHTS


def plan_mismatches(
    sidecar: Mapping[str, Any], metadata: Mapping[str, Any], onnx_sha256: str, wanted: PlanRequest
) -> list[str]:
    """Every reason the plan described by ``sidecar`` (built from the export ``metadata``) cannot serve ``wanted``.

    An empty list means the plan can be reused. An unknown GPU or TensorRT version never matches: a plan whose
    origin is unknown is rebuilt rather than risked.
    """
    reasons = []

    def compare(field: str, have: object, want: object) -> None:
        if have != want or want in (None, UNKNOWN, ""):
            reasons.append(f"{field}: plan has {have!r}, wanted {want!r}")

    compare("tensorrt_version", sidecar.get("tensorrt_version"), wanted.tensorrt_version)
    compare("gpu", sidecar.get("gpu"), wanted.gpu)
    compare("precision", sidecar.get("precision"), wanted.precision)
    compare("max_batch_size", sidecar.get("max_batch_size"), wanted.max_batch_size)
    compare("checkpoint_sha256", sidecar.get("checkpoint_sha256"), wanted.checkpoint_sha256)
    if wanted.checkpoint_sha256 == "random":  # seeded random weights: the name (size, keypoints) tells them apart
        compare("checkpoint", sidecar.get("checkpoint"), wanted.checkpoint)
    else:  # the EMA and the source weights of one file; plans from before the choice existed served the EMA ones
        compare(
            "checkpoint_weights",
            sidecar.get("checkpoint_weights", DEFAULT_CHECKPOINT_WEIGHTS),
            wanted.checkpoint_weights,
        )
    compare("top_k", metadata.get("top_k"), wanted.top_k)
    compare("onnx_sha256 (plan built from this export)", sidecar.get("onnx_sha256"), onnx_sha256)
    return reasons


def reusable_plan_mismatches(export_dir: Path, wanted: PlanRequest) -> list[str]:
    """``plan_mismatches`` for ``export_dir/model.plan``; missing files are reasons too."""
    export_dir = Path(export_dir)
    files = {
        name: export_dir / name
        for name in ("model.plan", "model.plan.json", "metadata.json", "model.onnx", "keypoints.onnx", "keypoints.plan")
    }
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        return [f"{export_dir}: no {', '.join(missing)} from an earlier build"]
    sidecar = json.loads(files["model.plan.json"].read_text())
    metadata = json.loads(files["metadata.json"].read_text())
    return plan_mismatches(sidecar, metadata, sha256_file(files["model.onnx"]), wanted)


def gpu_name(device: int = 0) -> str:
    """Name of CUDA device ``device`` from the driver (``libcuda``), or ``"unknown"`` without a driver or GPU.

    Read through the driver API rather than PyTorch so that it works in images with a CPU-only PyTorch.
    """
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return UNKNOWN
    handle, name = ctypes.c_int(), ctypes.create_string_buffer(256)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(handle), device) != 0:
        return UNKNOWN
    if cuda.cuDeviceGetName(name, len(name), handle) != 0:
        return UNKNOWN
    return name.value.decode(errors="replace") or UNKNOWN


def plan_cache_key(checkpoint: str, *, gpu: str | None = None, tensorrt_version: str | None = None) -> str:
    """The folder, in a plan cache shared by several GPU models, for plans of ``checkpoint`` built on this GPU model
    with this TensorRT (or the ``gpu`` and ``tensorrt_version`` given): readable, and unique through a hash.

    Pods of one GPU model share a folder and reuse its plan; another GPU model never overwrites it.
    """
    parts = (gpu or gpu_name(), f"trt{tensorrt_version or _tensorrt_version()}", checkpoint)
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9.]+", "-", "_".join(parts)).strip("-")[:100]
    return f"{readable}-{digest}"


def _tensorrt_version() -> str:
    try:
        import tensorrt
    except ImportError:
        return UNKNOWN
    return str(tensorrt.__version__)


def _checkpoint_sha256(checkpoint: str) -> str:
    if checkpoint.startswith("random:"):
        return "random"
    return checkpoint_sha256(resolve_checkpoint(checkpoint))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: exit 0 when ``--export-dir`` holds a plan to reuse, 1 when it must be (re)built, 2 on a bad checkpoint."""
    parser = argparse.ArgumentParser(prog="python -m rtmo.build.reuse", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--export-dir", type=Path, required=True, help="export folder of an earlier build (holds model.plan)"
    )
    parser.add_argument("--checkpoint", required=True, help="path, zoo name (e.g. rtmo-s_body7), URL, or random:<size>")
    add_checkpoint_weights_option(parser)
    parser.add_argument("--precision", choices=("fp32", "tf32", "fp16"), default="fp16")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=256)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sha = _checkpoint_sha256(args.checkpoint)
    except RTMOError as error:
        LOGGER.error("%s", error)
        return 2
    wanted = PlanRequest(
        checkpoint=args.checkpoint,
        checkpoint_sha256=sha,
        tensorrt_version=_tensorrt_version(),
        gpu=gpu_name(),
        precision=args.precision,
        max_batch_size=args.max_batch_size,
        top_k=args.top_k,
        checkpoint_weights=args.checkpoint_weights,
    )
    reasons = reusable_plan_mismatches(args.export_dir, wanted)
    if reasons:
        LOGGER.info("building a new plan: %s", "; ".join(reasons))
        return 1
    LOGGER.info(
        "reusing %s (TensorRT %s, %s, %s, max batch %d)",
        args.export_dir / "model.plan",
        wanted.tensorrt_version,
        wanted.gpu,
        wanted.precision,
        wanted.max_batch_size,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
