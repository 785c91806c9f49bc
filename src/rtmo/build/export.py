"""Stage 1: checkpoint → ``model.onnx`` (network + box decode + top-K), ``keypoints.onnx`` (the DCC keypoint
decoder, one row per person) and ``metadata.json``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import onnx
import torch

from rtmo.build.assemble import KEYPOINTS_ONNX
from rtmo.candidates import CANDIDATE_OUTPUTS, INPUT_LAYOUTS, INPUT_NAME, CandidateNet
from rtmo.checkpoint import load_checkpoint
from rtmo.checkpoint_weights import DEFAULT_CHECKPOINT_WEIGHTS, CheckpointWeights, add_checkpoint_weights_option
from rtmo.errors import BuildError
from rtmo.keypoints import layout_for
from rtmo.model import RTMO
from rtmo_contract import DECODER_INPUTS, DECODER_OUTPUT

__all__ = ["ExportResult", "MAX_TOP_K", "check_tensorrt_compatible", "export_onnx", "main", "tensorrt_supported_ops"]

LOGGER = logging.getLogger(__name__)
MAX_TOP_K = 3839  # TensorRT's TopK needs K < 3840
DEFAULT_TOP_K = 256


@dataclass(frozen=True)
class ExportResult:
    """Paths of the exported artifacts and the metadata written beside them."""

    directory: Path
    onnx_path: Path
    keypoints_onnx_path: Path
    metadata_path: Path
    metadata: dict[str, Any]


def tensorrt_supported_ops() -> frozenset[str]:
    """ONNX op types TensorRT 10's parser supports (checked-in list, source in the file header)."""
    text = resources.files("rtmo.build").joinpath("tensorrt10_onnx_ops.txt").read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_tensorrt_compatible(graph: onnx.ModelProto) -> None:
    """Raise ``BuildError`` if an op is outside TensorRT 10's ONNX support or a non-batch dim is not static."""
    unsupported = sorted({node.op_type for node in graph.graph.node} - tensorrt_supported_ops())
    if unsupported:
        raise BuildError(f"ONNX graph uses ops TensorRT 10 cannot parse: {unsupported}")
    for node in graph.graph.node:
        if node.op_type == "TopK":
            sorted_attr = [a.i for a in node.attribute if a.name == "sorted"]
            if sorted_attr and sorted_attr[0] != 1:
                raise BuildError(f"TopK node {node.name} has sorted=0; TensorRT needs sorted=1")
    for value in [*graph.graph.input, *graph.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims[1:]):
            raise BuildError(f"tensor {value.name!r} has a data-dependent non-batch dimension: {dims}")


def _fix_output_shapes(graph: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], *, batch: str = "batch") -> None:
    # The exporter names derived dims symbolically; we know them exactly, and strict inference below re-checks.
    for output in graph.graph.output:
        dims = output.type.tensor_type.shape.dim
        for dim, size in zip(dims[1:], shapes[output.name][1:]):
            dim.Clear()
            dim.dim_value = size
        dims[0].Clear()
        dims[0].dim_param = batch


def export_onnx(
    model: RTMO,
    out_dir: Path,
    *,
    top_k: int = DEFAULT_TOP_K,
    opset: int = 17,
    simplify: bool = True,
    provenance: dict[str, Any] | None = None,
    input_layout: str = "uint8_nhwc",
) -> ExportResult:
    """Export ``model`` into ``out_dir`` atomically (written to a temporary folder, then renamed).

    Args:
        model: an ``RTMO`` (e.g. from ``rtmo.load_checkpoint``).
        out_dir: folder to create or replace with ``model.onnx``, ``keypoints.onnx`` and ``metadata.json``.
        top_k: candidates per image the graph keeps (default 256; must be < 3840 for TensorRT).
        opset: ONNX opset, >= 17.
        simplify: run onnxslim (constant folding, shape-op elimination).
        provenance: extra metadata, e.g. ``{"checkpoint": name, "checkpoint_sha256": hash}``.
        input_layout: ``"uint8_nhwc"`` (served by the model repository) or ``"float32_nchw"`` (only for measuring
            that choice; ``assemble`` refuses it).

    Raises:
        BuildError: an argument is out of range or the graph is not TensorRT-parsable.
    """
    if not 1 <= top_k <= MAX_TOP_K:
        raise BuildError(f"top_k: got {top_k}; accepted: 1..{MAX_TOP_K} (TensorRT TopK limit)")
    if opset < 17:
        raise BuildError(f"opset: got {opset}; accepted: >= 17")
    if input_layout not in INPUT_LAYOUTS:
        raise BuildError(f"input_layout: got {input_layout!r}; accepted: {', '.join(INPUT_LAYOUTS)}")
    config = model.config
    size = config.input_size
    net = CandidateNet(model.eval(), top_k=top_k, input_layout=input_layout).eval()
    k, j, c = net.top_k, config.num_keypoints, config.pose_vec_channels
    shapes = {
        "scores": (1, k),
        "boxes": (1, k, 4),
        "keypoint_visibility": (1, k, j),
        "pose_vectors": (1, k, c),
        "priors": (1, k, 2),
    }
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        onnx_path = tmp / "model.onnx"
        if input_layout == "uint8_nhwc":
            dummy = torch.full((2, size, size, 3), 114, dtype=torch.uint8)
        else:
            dummy = torch.full((2, 3, size, size), 114.0, dtype=torch.float32)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
            torch.onnx.export(
                net,
                (dummy,),
                str(onnx_path),
                dynamo=False,
                opset_version=opset,
                do_constant_folding=True,
                input_names=[INPUT_NAME],
                output_names=list(CANDIDATE_OUTPUTS),
                dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *CANDIDATE_OUTPUTS)},
            )
        graph = onnx.load(str(onnx_path))
        if simplify:
            import onnxslim

            graph = onnxslim.slim(graph)
        _fix_output_shapes(graph, shapes)
        graph = onnx.shape_inference.infer_shapes(graph, strict_mode=True)
        onnx.checker.check_model(graph, full_check=True)
        check_tensorrt_compatible(graph)
        onnx.save(graph, str(onnx_path))

        export_keypoint_decoder(model, tmp / KEYPOINTS_ONNX, opset=opset)
        layout = getattr(model, "keypoint_layout", None) or layout_for(j)
        metadata = {
            "format": "rtmo-export/1",
            "size": config.backbone_config.size,
            "num_keypoints": j,
            "input_size": [size, size],
            "top_k": k,
            "num_anchors": int(len(net.anchor_points)),
            "pose_vec_channels": c,
            "opset": opset,
            "input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "NHWC", "shape": ["batch", size, size, 3]}
            if input_layout == "uint8_nhwc"
            else {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW", "shape": ["batch", 3, size, size]},
            "outputs": {name: ["batch", *shape[1:]] for name, shape in shapes.items()},
            "keypoint_decoder": {
                "onnx": KEYPOINTS_ONNX,
                "inputs": {t.name: ["people", *t.resolve({"C": c})] for t in DECODER_INPUTS},
                "outputs": {DECODER_OUTPUT.name: ["people", *DECODER_OUTPUT.resolve({"J": j})]},
            },
            "keypoint_names": list(layout.names),
            "skeleton": [list(link) for link in layout.skeleton],
            # OKS sigmas of the dataset (head.loss_oks.sigmas): how the tracker compares two poses.
            "keypoint_sigmas": [round(float(s), 6) for s in model.head.loss_oks.sigmas],
            "dataset": layout.dataset,
            "torch_version": torch.__version__,
            "onnx_version": onnx.__version__,
            **(provenance or {}),
        }
        metadata_path = tmp / "metadata.json"
        metadata_path.write_text(json.dumps(metadata, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    LOGGER.info(
        "exported %s (top_k=%d, %.1f MB)", out_dir / "model.onnx", k, (out_dir / "model.onnx").stat().st_size / 1e6
    )
    return ExportResult(out_dir, out_dir / "model.onnx", out_dir / KEYPOINTS_ONNX, out_dir / "metadata.json", metadata)


def export_keypoint_decoder(model: RTMO, onnx_path: Path, *, opset: int = 17) -> Path:
    """Write ``model``'s keypoint decoder (``rtmo.keypoint_decoder``) as ONNX: one batch row per person.

    Raises:
        BuildError: the graph is not TensorRT-parsable or has a data-dependent non-batch dimension.
    """
    config = model.config
    decoder = model.eval().keypoint_decoder()
    people = 3
    dummy = (
        torch.randn(people, config.pose_vec_channels),
        torch.tensor([[10.0, 20.0, 110.0, 220.0]] * people),
        torch.tensor([[60.0, 120.0]] * people),
    )
    names = [t.name for t in DECODER_INPUTS]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            decoder,
            dummy,
            str(onnx_path),
            dynamo=False,
            opset_version=opset,
            do_constant_folding=True,
            input_names=names,
            output_names=[DECODER_OUTPUT.name],
            dynamic_axes={name: {0: "people"} for name in (*names, DECODER_OUTPUT.name)},
        )
    graph = onnx.load(str(onnx_path))
    _fix_output_shapes(graph, {DECODER_OUTPUT.name: (people, config.num_keypoints, 2)}, batch="people")
    graph = onnx.shape_inference.infer_shapes(graph, strict_mode=True)
    onnx.checker.check_model(graph, full_check=True)
    check_tensorrt_compatible(graph)
    onnx.save(graph, str(onnx_path))
    return onnx_path


def load_model(
    checkpoint: str, *, seed: int = 0, checkpoint_weights: CheckpointWeights = DEFAULT_CHECKPOINT_WEIGHTS
) -> tuple[RTMO, dict[str, Any]]:
    """The model of ``checkpoint`` (see ``rtmo.checkpoint.load_checkpoint``) and its provenance for the metadata."""
    model = load_checkpoint(checkpoint, seed=seed, checkpoint_weights=checkpoint_weights)
    provenance: dict[str, Any] = {"checkpoint": checkpoint, "checkpoint_sha256": model.checkpoint_sha256}
    if model.checkpoint_sha256 == "random":
        provenance["seed"] = seed
    else:
        provenance["checkpoint_weights"] = checkpoint_weights  # the same file serves two models
    return model, provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtmo-export", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="path, zoo name (e.g. rtmo-s_body7), URL, or random:<size>")
    add_checkpoint_weights_option(parser)
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--no-simplify", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model, provenance = load_model(args.checkpoint, checkpoint_weights=args.checkpoint_weights)
    result = export_onnx(
        model, args.out, top_k=args.top_k, opset=args.opset, simplify=not args.no_simplify, provenance=provenance
    )
    print(result.onnx_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
