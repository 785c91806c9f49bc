"""Stage 3: exported artifacts -> a servable Triton model repository for one target (``cpu`` or ``gpu``).

Copies ``model.onnx`` (and ``model.plan`` for gpu) into ``engine/1/`` and ``keypoints.onnx`` (``keypoints.plan``) into
``keypoints/1/``, and
writes ``<model>/configs/<target>.pbtxt`` for every model, generated from its checked-in ``config.pbtxt`` through
the ``ModelConfig`` schema: tensor dims patched for the input size S, top-K K, keypoints J and pose-vector channels
C; the engine's backend chosen for the target; model metadata attached as ``parameters``. Serve it with
``tritonserver --model-config-name=<target>``. Everything is validated before anything is written, and each file
is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from google.protobuf import json_format, text_format

from rtmo.errors import BuildError
from rtmo.keypoints import layout_for
from rtmo_contract import (
    CANDIDATE_PREFIX,
    CANDIDATES,
    DECODER_INPUTS,
    DECODER_OUTPUT,
    ENGINE,
    FRAME_INPUT,
    FRAME_MODEL,
    IMAGE_INPUT,
    IMAGE_MODEL,
    KEYPOINTS,
    LETTERBOX,
    LETTERBOXED_IMAGES,
    MODELS,
    PEOPLE,
    POSTPROCESS,
    PREPROCESS,
    TRACK_MODEL,
    TRACKER,
    TRACKS,
    Tensor,
)

__all__ = [
    "MODELS",
    "SCALABLE_MODELS",
    "add_instance_options",
    "apply_signature",
    "assemble_repository",
    "copy_templates",
    "generate_config",
    "instance_counts",
    "main",
]

LOGGER = logging.getLogger(__name__)

PLAN_SIDECAR = "model.plan.json"  # written by rtmo.build.engine next to the plan: {"profile": {"max_batch": N}, ...}
SCALABLE_MODELS = (PREPROCESS, POSTPROCESS)  # the Python models whose instance count is a setting
KEYPOINTS_ONNX = "keypoints.onnx"  # rtmo.build.export writes it beside model.onnx
KEYPOINTS_PLAN = "keypoints.plan"  # rtmo.build.engine.build_keypoint_decoder writes it beside model.plan
# What assemble (and the build stages before it) write into a repository, as opposed to what is checked in.
GENERATED = ("configs", "*.onnx", "*.npz", "*.plan", PLAN_SIDECAR, "__pycache__")


def copy_templates(source: Path, destination: Path) -> Path:
    """Copy the checked-in part of a model repository (``config.pbtxt`` and ``model.py`` files) to ``destination``,
    leaving out everything built or assembled, so that ``destination`` can be assembled on its own."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(*GENERATED))
    return destination


def _model_config_pb2() -> Any:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def _signatures() -> dict[str, tuple[tuple[Tensor, ...], tuple[Tensor, ...]]]:
    """Every model's (inputs, outputs), from the contract."""
    candidates_in = tuple(Tensor(CANDIDATE_PREFIX + t.name, t.data_type, t.dims) for t in CANDIDATES)
    return {
        PREPROCESS: ((IMAGE_INPUT, FRAME_INPUT), (LETTERBOXED_IMAGES, LETTERBOX)),
        ENGINE: ((LETTERBOXED_IMAGES,), CANDIDATES),
        KEYPOINTS: (DECODER_INPUTS, (DECODER_OUTPUT,)),
        POSTPROCESS: ((*candidates_in, LETTERBOX), PEOPLE),
        IMAGE_MODEL: ((IMAGE_INPUT,), PEOPLE),
        FRAME_MODEL: ((FRAME_INPUT,), PEOPLE),
        TRACKER: (PEOPLE, (*PEOPLE, *TRACKS)),
        TRACK_MODEL: ((FRAME_INPUT,), (*PEOPLE, *TRACKS)),
    }


def _sizes(metadata: Mapping[str, Any]) -> dict[str, int]:
    return {
        "S": int(metadata["input_size"][0]),
        "K": int(metadata["top_k"]),
        "J": int(metadata["num_keypoints"]),
        "C": int(metadata["pose_vec_channels"]),
    }


def apply_signature(config: Any, model: str, sizes: Mapping[str, int]) -> dict[str, list[int]]:
    """Set the dims of every tensor of ``config`` from the contract; returns them by name.

    Raises:
        BuildError: the config declares other tensors, or other data types, than the contract (``rtmo_contract``).
    """
    data_type_name = _model_config_pb2().DataType.Name
    dims: dict[str, list[int]] = {}
    for declared, wanted in zip((config.input, config.output), _signatures()[model]):
        by_name = {t.name: t for t in wanted}
        if sorted(t.name for t in declared) != sorted(by_name):
            raise BuildError(
                f"{model}: config declares {sorted(t.name for t in declared)}; the contract has {sorted(by_name)}"
            )
        for tensor in declared:
            want = by_name[tensor.name]
            if data_type_name(tensor.data_type) != f"TYPE_{want.data_type}":
                raise BuildError(
                    f"{model}: {tensor.name} is {data_type_name(tensor.data_type)} in the config; the "
                    f"contract says TYPE_{want.data_type}"
                )
            tensor.dims[:] = dims[tensor.name] = want.resolve(sizes)
    return dims


def _parameters(metadata: Mapping[str, Any], target: str) -> dict[str, str]:
    return {
        "checkpoint": str(metadata.get("checkpoint", "unknown")),
        "checkpoint_sha256": str(metadata.get("checkpoint_sha256", "unknown")),
        "size": str(metadata["size"]),
        "input_size": str(int(metadata["input_size"][0])),
        "top_k": str(int(metadata["top_k"])),
        "num_anchors": str(int(metadata["num_anchors"])),
        "keypoint_names": json.dumps(list(metadata.get("keypoint_names", []))),
        "skeleton": json.dumps([list(link) for link in metadata.get("skeleton", [])]),
        "target": target,
    }


def generate_config(
    template: str,
    *,
    model: str,
    metadata: Mapping[str, Any],
    target: Literal["cpu", "gpu"],
    max_batch_size: int = 8,
    engine_intra_op_threads: int = 0,
    instances: int = 1,
) -> Any:
    """Patch one model's checked-in ``config.pbtxt`` text for ``metadata`` and ``target``.

    Args:
        template: text of the checked-in ``config.pbtxt``.
        model: the model's name (one of ``MODELS``).
        metadata: the export stage's ``metadata.json``.
        target: ``cpu`` (engine = ONNX Runtime in the Python backend) or ``gpu`` (engine = TensorRT plan).
        max_batch_size: for every model.
        engine_intra_op_threads: ONNX Runtime threads of the cpu engine (0: ONNX Runtime's default).
        instances: instances of this model (its ``instance_group`` count).

    Returns:
        The ``ModelConfig`` message, checked by a round trip through ``json_format.ParseDict``.
    """
    pb2 = _model_config_pb2()
    config = text_format.Parse(template, pb2.ModelConfig())
    # The keypoints model's batch rows are people: every candidate of every image of a full batch, at most.
    people_per_call = int(metadata["top_k"]) * max_batch_size
    config.max_batch_size = people_per_call if model == KEYPOINTS else max_batch_size
    dims = apply_signature(config, model, _sizes(metadata))
    for warmup in config.model_warmup:
        for name, tensor in warmup.inputs.items():
            if -1 not in dims.get(name, [-1]):  # a variable-size input keeps the warmup's own example shape
                tensor.dims[:] = dims[name]
    params = _parameters(metadata, target)
    params["num_keypoints"] = str(int(metadata["num_keypoints"]))
    params["keypoints_max_batch_size"] = str(people_per_call)
    params["keypoint_sigmas"] = json.dumps(_keypoint_sigmas(metadata))
    if model in (ENGINE, KEYPOINTS) and target == "cpu":
        config.platform = ""
        config.backend = "python"
        del config.instance_group[:]
        config.instance_group.add(count=1, kind=pb2.ModelInstanceGroup.KIND_CPU)
        params["intra_op_threads"] = str(engine_intra_op_threads)
    for group in config.instance_group:
        group.count = instances
    keep = {
        PREPROCESS: ("input_size",),
        POSTPROCESS: ("num_anchors", "num_keypoints", "keypoints_max_batch_size"),
        KEYPOINTS: ("intra_op_threads",) if target == "cpu" else (),
        TRACKER: ("keypoint_sigmas",),
    }.get(model, tuple(key for key in params if key not in _STEP_PARAMETERS))
    for key in keep:
        config.parameters[key].string_value = params[key]
    return json_format.ParseDict(json_format.MessageToDict(config, preserving_proto_field_name=True), pb2.ModelConfig())


_STEP_PARAMETERS = ("num_keypoints", "keypoints_max_batch_size", "keypoint_sigmas")  # not the ensembles' business


def _keypoint_sigmas(metadata: Mapping[str, Any]) -> list[float]:
    """The OKS sigmas the tracker compares poses with: the export's ``keypoint_sigmas`` (the checkpoint's), or for
    an export made before they were recorded, its dataset's."""
    count = int(metadata["num_keypoints"])
    sigmas = metadata.get("keypoint_sigmas", layout_for(count).sigmas)
    if not isinstance(sigmas, (list, tuple)) or len(sigmas) != count:
        raise BuildError(f"metadata.json: keypoint_sigmas is {sigmas!r}; expected {count} numbers (OKS sigmas)")
    return [float(s) for s in sigmas]


def _onnx_tensor_names(onnx_path: Path) -> tuple[list[str], list[str]]:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers], [o.name for o in graph.output]


def _write_atomic(path: Path, data: bytes | None = None, *, source: Path | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(handle)
    try:
        if source is not None:
            shutil.copyfile(source, tmp_name)
        else:
            Path(tmp_name).write_bytes(data or b"")
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _check_arguments(target: str, max_batch_size: int, instances: Mapping[str, int]) -> None:
    if target not in ("cpu", "gpu"):
        raise BuildError(f"target: got {target!r}; accepted: 'cpu', 'gpu'")
    if not 1 <= max_batch_size <= 64:
        raise BuildError(f"max_batch_size: got {max_batch_size}; accepted: 1..64")
    for model, count in instances.items():
        if model not in SCALABLE_MODELS or not 1 <= count <= 64:
            raise BuildError(f"instances: got {model}={count}; accepted: {', '.join(SCALABLE_MODELS)} = 1..64")


def _find_plan(*candidates: Path) -> Path:
    plan = next((path for path in candidates if path.is_file()), None)
    if plan is None:
        raise BuildError(
            f"target gpu needs a TensorRT plan at {candidates[0]} or {candidates[1]}; "
            "build them with python -m rtmo.build --target gpu"
        )
    return plan


def assemble_repository(
    export_dir: Path,
    *,
    target: Literal["cpu", "gpu"],
    repository: Path = Path("model_repository"),
    max_batch_size: int = 8,
    engine_intra_op_threads: int = 0,
    instances: Mapping[str, int] | None = None,
) -> list[Path]:
    """Fill ``repository`` with the artifacts of ``export_dir`` and write ``configs/<target>.pbtxt`` per model.

    Args:
        export_dir: output of the export stage (``model.onnx``, ``dcc.npz``, ``metadata.json``). For gpu, the plan
            is taken from ``export_dir/model.plan`` or else ``engine/1/model.plan``, with its ``model.plan.json``
            sidecar when present.
        target: ``cpu`` or ``gpu``.
        repository: the model repository holding the checked-in ``config.pbtxt`` files.
        max_batch_size: max batch of every model, 1..64.
        engine_intra_op_threads: ONNX Runtime threads of the cpu engine (0: ONNX Runtime's default).
        instances: instance counts of the Python models by name (``preprocess``, ``postprocess``), 1..64 each;
            the others stay at 1. On a GPU host enough CPU instances keep the engine busy (README, sizing).

    Returns:
        The files written.

    Raises:
        BuildError: a missing artifact or template, ONNX tensor names that differ from the engine config's, a plan
            whose profile max batch is below ``max_batch_size``, or an invalid argument.
    """
    export_dir, repository = Path(export_dir), Path(repository)
    instances = dict(instances or {})
    _check_arguments(target, max_batch_size, instances)
    missing = [name for name in ("model.onnx", KEYPOINTS_ONNX, "metadata.json") if not (export_dir / name).is_file()]
    if missing:
        raise BuildError(f"{export_dir}: missing {missing}; run the export stage (python -m rtmo.build.export) first")
    plan = keypoints_plan = None
    if target == "gpu":
        plan = _find_plan(export_dir / "model.plan", repository / ENGINE / "1" / "model.plan")
        keypoints_plan = _find_plan(export_dir / KEYPOINTS_PLAN, repository / KEYPOINTS / "1" / "model.plan")
    templates = {}
    for model in MODELS:
        path = repository / model / "config.pbtxt"
        if not path.is_file():
            raise BuildError(f"{path} does not exist: {repository} is not an rtmo model repository")
        templates[model] = path.read_text()
    metadata = json.loads((export_dir / "metadata.json").read_text())
    exported_input = metadata.get("input", {})
    if (exported_input.get("dtype"), exported_input.get("layout")) != ("uint8", "NHWC"):
        raise BuildError(
            f"{export_dir / 'model.onnx'} takes a {exported_input.get('dtype')} {exported_input.get('layout')} input; "
            "the "
            "repository's preprocess sends uint8 NHWC: re-export with input_layout='uint8_nhwc' (the default)"
        )

    configs = {
        model: generate_config(
            templates[model],
            model=model,
            metadata=metadata,
            target=target,
            max_batch_size=max_batch_size,
            engine_intra_op_threads=engine_intra_op_threads,
            instances=instances.get(model, 1),
        )
        for model in MODELS
    }
    engine = configs[ENGINE]
    onnx_inputs, onnx_outputs = _onnx_tensor_names(export_dir / "model.onnx")
    config_inputs, config_outputs = [t.name for t in engine.input], [t.name for t in engine.output]
    if sorted(onnx_inputs) != sorted(config_inputs) or sorted(onnx_outputs) != sorted(config_outputs):
        raise BuildError(
            f"{export_dir / 'model.onnx'} has inputs {onnx_inputs} and outputs {onnx_outputs}, but "
            f"{repository / 'engine' / 'config.pbtxt'} declares inputs {config_inputs} and outputs {config_outputs}; "
            "re-export with the current rtmo or fix the config"
        )
    sidecar = plan.with_name(PLAN_SIDECAR) if plan is not None else None
    if sidecar is not None and sidecar.is_file():
        profile_max = int(json.loads(sidecar.read_text()).get("profile", {}).get("max_batch", 0))
        if profile_max < max_batch_size:
            raise BuildError(
                f"{plan}: its optimization profile's max batch is {profile_max}, below "
                f"max_batch_size {max_batch_size}; rebuild the engine with max batch >= {max_batch_size} or lower it"
            )

    written = []
    copies = [
        ("model.onnx", repository / ENGINE / "1" / "model.onnx"),
        (KEYPOINTS_ONNX, repository / KEYPOINTS / "1" / "model.onnx"),
    ]
    for name, destination in copies:
        _write_atomic(destination, source=export_dir / name)
        written.append(destination)
    if plan is not None and plan.parent != repository / ENGINE / "1":
        for source in (plan, sidecar):
            if source is not None and source.is_file():
                destination = repository / ENGINE / "1" / source.name
                _write_atomic(destination, source=source)
                written.append(destination)
    if keypoints_plan is not None and keypoints_plan.parent != repository / KEYPOINTS / "1":
        destination = repository / KEYPOINTS / "1" / "model.plan"
        _write_atomic(destination, source=keypoints_plan)
        written.append(destination)
    for model, config in configs.items():
        destination = repository / model / "configs" / f"{target}.pbtxt"
        origin = f"{model}/config.pbtxt and {export_dir.name}/metadata.json"
        header = f"# Generated by rtmo.build.assemble from {origin}; do not edit.\n"
        _write_atomic(destination, (header + text_format.MessageToString(config)).encode())
        written.append(destination)
    LOGGER.info(
        "assembled %s for %s (%s, input %s)", repository, target, metadata.get("checkpoint"), metadata["input_size"]
    )
    return written


def add_instance_options(parser: argparse.ArgumentParser) -> None:
    """``--preprocess-instances`` and ``--postprocess-instances`` of assemble, rtmo.build and ``rtmo serve``."""
    for model in SCALABLE_MODELS:
        parser.add_argument(f"--{model}-instances", type=int, default=1, help=f"instances of the {model} model")


def instance_counts(args: argparse.Namespace) -> dict[str, int]:
    """The counts :func:`add_instance_options` parsed, for ``assemble_repository(instances=...)``."""
    return {model: getattr(args, f"{model}_instances") for model in SCALABLE_MODELS}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m rtmo.build.assemble --export-dir artifacts/export --target cpu``."""
    parser = argparse.ArgumentParser(prog="rtmo-assemble", description=__doc__.splitlines()[0])
    parser.add_argument("--export-dir", type=Path, required=True, help="output folder of the export stage")
    parser.add_argument("--target", choices=("cpu", "gpu"), required=True)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--engine-intra-op-threads", type=int, default=0)
    add_instance_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        written = assemble_repository(
            args.export_dir,
            target=args.target,
            repository=args.repository,
            max_batch_size=args.max_batch_size,
            engine_intra_op_threads=args.engine_intra_op_threads,
            instances=instance_counts(args),
        )
    except BuildError as error:
        LOGGER.error("%s", error)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
