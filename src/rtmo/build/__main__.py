"""All build stages in one command: ``python -m rtmo.build --checkpoint rtmo-s_body7 --target cpu``.

export (checkpoint → network ONNX + keypoint-decoder ONNX) → engine (``--target gpu`` only: both ONNX → TensorRT
plans, the decoder in FP32) → assemble
(artifacts and generated ``configs/<target>.pbtxt`` into the model repository).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rtmo.build.assemble import KEYPOINTS_PLAN, add_instance_options, assemble_repository, instance_counts
from rtmo.build.engine import EngineProfile, build_engine, build_keypoint_decoder
from rtmo.build.export import DEFAULT_TOP_K, export_onnx, load_model
from rtmo.checkpoint_weights import DEFAULT_CHECKPOINT_WEIGHTS, CheckpointWeights, add_checkpoint_weights_option
from rtmo.errors import RTMOError

LOGGER = logging.getLogger("rtmo.build")


def run_all(
    checkpoint: str,
    *,
    target: str,
    repository: Path,
    work_dir: Path,
    top_k: int = DEFAULT_TOP_K,
    max_batch_size: int = 8,
    precision: str = "fp16",
    workspace_gib: float = 4.0,
    instances: dict[str, int] | None = None,
    checkpoint_weights: CheckpointWeights = DEFAULT_CHECKPOINT_WEIGHTS,
) -> list[Path]:
    """Run every stage for ``target`` (``cpu`` or ``gpu``) and return the files written into ``repository``."""
    if max_batch_size < 1:
        raise RTMOError(f"max_batch_size: got {max_batch_size}; accepted: >= 1")
    model, provenance = load_model(checkpoint, checkpoint_weights=checkpoint_weights)
    exported = export_onnx(model, work_dir / "export", top_k=top_k, provenance=provenance)
    if target == "gpu":
        opt = max(1, max_batch_size // 2)
        build_engine(
            exported.onnx_path,
            exported.directory / "model.plan",
            precision=precision,  # type: ignore[arg-type]
            profile=EngineProfile(1, opt, max_batch_size),
            max_batch_size=max_batch_size,
            workspace_gib=workspace_gib,
            timing_cache=work_dir / "timing.cache",
            provenance=provenance,
        )
        build_keypoint_decoder(
            exported.keypoints_onnx_path,
            exported.directory / KEYPOINTS_PLAN,
            max_people=top_k * max_batch_size,
            workspace_gib=workspace_gib,
            timing_cache=work_dir / "timing.cache",
            provenance=provenance,
        )
    return assemble_repository(
        exported.directory,
        target=target,
        repository=repository,  # type: ignore[arg-type]
        max_batch_size=max_batch_size,
        instances=instances,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtmo.build", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="path, zoo name (e.g. rtmo-s_body7), URL, or random:<size>")
    add_checkpoint_weights_option(parser)
    parser.add_argument("--target", choices=("cpu", "gpu"), required=True)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--work-dir", type=Path, default=Path("artifacts"))
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--precision", choices=("fp32", "tf32", "fp16"), default="fp16")
    parser.add_argument("--workspace-gib", type=float, default=4.0)
    add_instance_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        written = run_all(
            args.checkpoint,
            target=args.target,
            repository=args.repository,
            work_dir=args.work_dir,
            top_k=args.top_k,
            max_batch_size=args.max_batch_size,
            precision=args.precision,
            workspace_gib=args.workspace_gib,
            instances=instance_counts(args),
            checkpoint_weights=args.checkpoint_weights,
        )
    except RTMOError as error:
        LOGGER.error("%s", error)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
