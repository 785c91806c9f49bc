"""Stage 2: ONNX → TensorRT plan, through the ``tensorrt`` Python API, with a metadata sidecar.

Needs an NVIDIA GPU and the ``tensorrt`` package; without them it stops with a clear ``BuildError``
(it never writes a placeholder plan). Plans are not portable: build on the GPU that will serve.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rtmo.build.reuse import gpu_name
from rtmo.candidates import INPUT_NAME
from rtmo.errors import BuildError
from rtmo.files import sha256_file
from rtmo_contract import DECODER_INPUTS

__all__ = ["EngineProfile", "build_engine", "build_keypoint_decoder", "main", "validate_profile"]

LOGGER = logging.getLogger(__name__)
Precision = Literal["fp32", "tf32", "fp16"]


@dataclass(frozen=True)
class EngineProfile:
    """Batch sizes of the optimization profile for the ``images`` input (H, W fixed by the export)."""

    min_batch: int = 1
    opt_batch: int = 4
    max_batch: int = 8


def validate_profile(profile: EngineProfile, *, max_batch_size: int) -> None:
    """Raise ``BuildError`` unless 1 <= min <= opt <= max and max >= the Triton ``max_batch_size``."""
    if not 1 <= profile.min_batch <= profile.opt_batch <= profile.max_batch:
        raise BuildError(f"profile: need 1 <= min <= opt <= max batch, got {asdict(profile)}")
    if profile.max_batch < max_batch_size:
        raise BuildError(
            f"profile max batch {profile.max_batch} is below the Triton max_batch_size {max_batch_size}; "
            "Triton would refuse to load the plan"
        )


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BuildError(
            "TensorRT engine build needs the `tensorrt` Python package and an NVIDIA GPU "
            "(pip install 'rtmo-triton[gpu]', or run the docker compose `engine-build` service); "
            "on a CPU-only machine use --target cpu, which serves the ONNX model with ONNX Runtime"
        ) from exc
    return trt


def _keep_decode_in_fp32(trt: Any, network: Any) -> int:
    # Everything after the last convolution is box decode and top-K: exp() of box sizes and the scores used
    # for ranking must not round to FP16, or boxes (and the DCC bins laid across them) shift by up to 0.5 px.
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    conv_indices = [i for i, layer in enumerate(layers) if layer.type == trt.LayerType.CONVOLUTION]
    pinned = 0
    for layer in layers[(conv_indices[-1] + 1 if conv_indices else 0) :]:
        if layer.type in (trt.LayerType.CONSTANT, trt.LayerType.SHAPE):
            continue
        layer.precision = trt.float32
        for index in range(layer.num_outputs):
            if layer.get_output(index).dtype in (trt.float16, trt.float32):
                layer.set_output_type(index, trt.float32)
        pinned += 1
    return pinned


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    *,
    precision: Precision = "fp16",
    profile: EngineProfile = EngineProfile(),
    max_batch_size: int = 8,
    workspace_gib: float = 4.0,
    timing_cache: Path | None = None,
    provenance: dict[str, Any] | None = None,
    input_names: Sequence[str] = (INPUT_NAME,),
) -> Path:
    """Build a TensorRT plan for ``onnx_path`` and write it, plus ``<plan>.json``, atomically.

    Args:
        onnx_path: exported RTMO candidate graph.
        plan_path: destination, e.g. ``model_repository/engine/1/model.plan``.
        precision: ``fp32`` (TF32 disabled), ``tf32`` or ``fp16`` (box decode and top-K stay FP32).
        profile: optimization profile batch sizes; max must be >= ``max_batch_size``.
        max_batch_size: the Triton config's ``max_batch_size``.
        workspace_gib: builder workspace limit.
        timing_cache: file to read and update so rebuilds are fast.
        provenance: extra sidecar fields (checkpoint name and hash from the export metadata).
        input_names: the graph's inputs, as the model repository names them; the profile sets their batch size.

    Raises:
        BuildError: no ``tensorrt``/GPU, a parser error (each one is logged first), FP16 not supported
            by the GPU, a bad profile, or a failed build.
    """
    if precision not in ("fp32", "tf32", "fp16"):
        raise BuildError(f"precision: got {precision!r}; accepted: fp32, tf32, fp16")
    validate_profile(profile, max_batch_size=max_batch_size)
    if not Path(onnx_path).is_file():
        raise BuildError(f"ONNX model not found: {onnx_path}")
    trt = _import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder is None:
        raise BuildError("TensorRT could not create a builder: no usable NVIDIA GPU/driver found")
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        for error in errors:
            LOGGER.error("ONNX parser: %s", error)
        raise BuildError(f"TensorRT could not parse {onnx_path}: {len(errors)} error(s), first: {errors[:1]}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    elif precision == "fp16":
        if not builder.platform_has_fast_fp16:
            raise BuildError("precision fp16 requested but this GPU has no fast FP16; use --precision tf32 or fp32")
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        LOGGER.info("kept %d decode/top-K layers in FP32", _keep_decode_in_fp32(trt, network))

    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if sorted(names) != sorted(input_names):
        raise BuildError(f"ONNX inputs are {names}; the model repository expects {list(input_names)}")
    trt_profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):  # one profile, the batch dimension of every input; the rest are fixed
        tensor = network.get_input(index)
        rest = tuple(tensor.shape)[1:]
        batches = (profile.min_batch, profile.opt_batch, profile.max_batch)
        trt_profile.set_shape(tensor.name, *((batch, *rest) for batch in batches))
    config.add_optimization_profile(trt_profile)

    cache = None
    if timing_cache is not None:
        blob = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)

    LOGGER.info("building %s engine (profile %s) — this can take minutes", precision, asdict(profile))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError("TensorRT build failed (build_serialized_network returned None); see the log above")

    plan_path = Path(plan_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(plan_path, bytes(serialized))
    if cache is not None and timing_cache is not None:
        _atomic_write(Path(timing_cache), bytes(cache.serialize()))
    sidecar = {
        "tensorrt_version": trt.__version__,
        "gpu": gpu_name(),  # from the CUDA driver: build images may carry a CPU-only PyTorch
        "precision": precision,
        "profile": asdict(profile),
        "max_batch_size": max_batch_size,
        "onnx_sha256": sha256_file(Path(onnx_path)),
        **(provenance or {}),
    }
    _atomic_write(plan_path.with_suffix(plan_path.suffix + ".json"), json.dumps(sidecar, indent=2).encode())
    return plan_path


def build_keypoint_decoder(
    onnx_path: Path,
    plan_path: Path,
    *,
    max_people: int,
    workspace_gib: float = 4.0,
    timing_cache: Path | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """The ``keypoints`` model's plan: ``keypoints.onnx`` in FP32 with TF32 off (its bin positions are pixel offsets
    fed to sin/cos, which neither FP16 nor TF32's 10-bit mantissa resolves), batch = people, 1..``max_people``.

    Raises:
        BuildError: as :func:`build_engine`.
    """
    return build_engine(
        onnx_path,
        plan_path,
        precision="fp32",
        profile=EngineProfile(1, max(1, max_people // 8), max_people),
        max_batch_size=max_people,
        workspace_gib=workspace_gib,
        timing_cache=timing_cache,
        provenance=provenance,
        input_names=[tensor.name for tensor in DECODER_INPUTS],
    )


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}-", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtmo-engine", description=__doc__)
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="plan path, e.g. model_repository/engine/1/model.plan")
    parser.add_argument("--precision", choices=("fp32", "tf32", "fp16"), default="fp16")
    parser.add_argument("--min-batch", type=int, default=1)
    parser.add_argument("--opt-batch", type=int, default=4)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-batch-size", type=int, default=8, help="Triton max_batch_size the plan must cover")
    parser.add_argument("--workspace-gib", type=float, default=4.0)
    parser.add_argument("--timing-cache", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    metadata_path = args.onnx.parent / "metadata.json"
    provenance = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
    provenance = {
        k: provenance[k] for k in ("checkpoint", "checkpoint_sha256", "checkpoint_weights", "top_k") if k in provenance
    }
    build_engine(
        args.onnx,
        args.out,
        precision=args.precision,
        profile=EngineProfile(args.min_batch, args.opt_batch, args.max_batch),
        max_batch_size=args.max_batch_size,
        workspace_gib=args.workspace_gib,
        timing_cache=args.timing_cache,
        provenance=provenance,
    )
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
