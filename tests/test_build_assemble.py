"""rtmo.build.assemble: the checked-in configs, and repositories assembled from an export for each target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format

from rtmo.build.assemble import MODELS, assemble_repository, main
from rtmo.errors import BuildError

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
PHOTO = Path(__file__).resolve().parents[1] / "data" / "photos" / "000000196141.jpg"


# ---------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("model", MODELS)
def test_checked_in_config_parses_as_model_config(model: str) -> None:
    config = text_format.Parse((REPOSITORY / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == model
    # keypoints: one row per person, top-K (256) x the ensembles' batch (8).
    assert config.max_batch_size == (256 * 8 if model == "keypoints" else 8)
    if config.platform != "ensemble":
        # The tracker keeps state per sequence: the sequence batcher, Oldest, idling out well after Triton's 1 s.
        assert config.HasField("sequence_batching" if model == "tracker" else "dynamic_batching")
    if model == "tracker":
        assert config.sequence_batching.HasField("oldest")
        assert config.sequence_batching.max_sequence_idle_microseconds == 60_000_000


def test_ensemble_steps_name_existing_tensors() -> None:
    configs = {
        m: text_format.Parse((REPOSITORY / m / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        for m in MODELS
    }
    for ensemble in ("rtmo", "rtmo_frames", "rtmo_track"):
        for step in configs[ensemble].ensemble_scheduling.step:
            composing = configs[step.model_name]
            assert set(step.input_map) <= {t.name for t in composing.input}
            assert set(step.output_map) <= {t.name for t in composing.output}
    assert (REPOSITORY / "rtmo" / "1").is_dir() and not (REPOSITORY / "rtmo" / "1" / "model.py").exists()


def test_assemble_repository_writes_parseable_cpu_configs_with_patched_dims(export_tiny: Path, repo_copy: Path) -> None:
    written = assemble_repository(export_tiny, target="cpu", repository=repo_copy, max_batch_size=4)
    assert (repo_copy / "engine" / "1" / "model.onnx").is_file() and (
        repo_copy / "keypoints" / "1" / "model.onnx"
    ).is_file()
    configs = {
        m: text_format.Parse((repo_copy / m / "configs" / "cpu.pbtxt").read_text(), model_config_pb2.ModelConfig())
        for m in MODELS
    }
    assert len(written) == 2 + len(MODELS)
    engine = configs["engine"]
    assert engine.backend == "python" and engine.platform == "" and engine.max_batch_size == 4
    assert list(engine.input[0].dims) == [416, 416, 3]
    assert {t.name: list(t.dims) for t in engine.output}["pose_vectors"] == [256, 192]
    assert list(engine.model_warmup[0].inputs["images"].dims) == [416, 416, 3]
    assert configs["preprocess"].parameters["input_size"].string_value == "416"
    sigmas = json.loads(configs["tracker"].parameters["keypoint_sigmas"].string_value)
    assert len(sigmas) == 17 and sigmas[0] == pytest.approx(0.026)  # COCO's nose
    assert "keypoint_sigmas" not in configs["rtmo_track"].parameters
    assert configs["rtmo_track"].parameters["keypoint_names"].string_value.startswith('["nose"')
    assert configs["postprocess"].parameters["num_anchors"].string_value == "845"
    assert configs["postprocess"].parameters["keypoints_max_batch_size"].string_value == str(256 * 4)
    keypoints = configs["keypoints"]
    # One row per person: every candidate of a full batch fits one call; served by ONNX Runtime on the cpu target.
    assert keypoints.backend == "python" and keypoints.max_batch_size == 256 * 4
    assert {t.name: list(t.dims) for t in keypoints.input}["pose_vectors"] == [192]
    assert list(keypoints.output[0].dims) == [17, 2]
    rtmo = configs["rtmo"]
    assert json.loads(rtmo.parameters["keypoint_names"].string_value)[0] == "nose"
    assert rtmo.parameters["checkpoint"].string_value == "random:tiny"
    assert len(json.loads(rtmo.parameters["skeleton"].string_value)) == 19


def test_assemble_repository_refuses_a_config_that_drifts_from_the_contract(export_tiny: Path, repo_copy: Path) -> None:
    config = repo_copy / "engine" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "priors"', 'name: "anchors"'))
    with pytest.raises(
        BuildError, match=r"engine: config declares \[.*'anchors'.*\]; the contract has \[.*'priors'.*\]"
    ):
        assemble_repository(export_tiny, target="cpu", repository=repo_copy)
    assert not (repo_copy / "engine" / "configs").exists()
    assert not (repo_copy / "engine" / "1" / "model.onnx").exists()
    postprocess = repo_copy / "postprocess" / "config.pbtxt"
    config.write_text((REPOSITORY / "engine" / "config.pbtxt").read_text())
    text = postprocess.read_text()
    postprocess.write_text(text.replace('"num_people", data_type: TYPE_INT32', '"num_people", data_type: TYPE_INT64'))
    with pytest.raises(
        BuildError, match="postprocess: num_people is TYPE_INT64 in the config; the contract says TYPE_INT32"
    ):
        assemble_repository(export_tiny, target="cpu", repository=repo_copy)


def test_assemble_repository_refuses_onnx_whose_tensor_names_differ(
    export_tiny: Path, repo_copy: Path, tmp_path: Path
) -> None:
    import onnx

    export = tmp_path / "export"
    shutil.copytree(export_tiny, export)
    model = onnx.load(str(export / "model.onnx"))
    renamed = {"priors": "anchors"}
    for node in model.graph.node:
        node.output[:] = [renamed.get(name, name) for name in node.output]
    for output in model.graph.output:
        output.name = renamed.get(output.name, output.name)
    onnx.save(model, str(export / "model.onnx"))
    with pytest.raises(BuildError, match=r"outputs .*'anchors'.* declares .*'priors'"):
        assemble_repository(export, target="cpu", repository=repo_copy)
    assert not (repo_copy / "engine" / "1" / "model.onnx").exists()


def test_assemble_repository_refuses_a_float32_nchw_export(export_tiny: Path, repo_copy: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(export_tiny, export)
    metadata = json.loads((export / "metadata.json").read_text())
    metadata["input"].update(dtype="float32", layout="NCHW")
    (export / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(BuildError, match="takes a float32 NCHW input; the repository's preprocess sends uint8 NHWC"):
        assemble_repository(export, target="cpu", repository=repo_copy)
    assert not (repo_copy / "engine" / "configs").exists()


def test_assemble_repository_gpu_refuses_plan_profile_below_max_batch(
    export_tiny: Path, repo_copy: Path, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    shutil.copytree(export_tiny, export)
    with pytest.raises(BuildError, match="needs a TensorRT plan"):
        assemble_repository(export, target="gpu", repository=repo_copy)
    (export / "model.plan").write_bytes(b"plan")
    (export / "model.plan.json").write_text(json.dumps({"profile": {"min_batch": 1, "opt_batch": 2, "max_batch": 4}}))
    with pytest.raises(BuildError, match="needs a TensorRT plan at .*keypoints.plan"):  # the decoder's plan too
        assemble_repository(export, target="gpu", repository=repo_copy)
    (export / "keypoints.plan").write_bytes(b"keypoints plan")
    with pytest.raises(BuildError, match="max batch is 4, below max_batch_size 8"):
        assemble_repository(export, target="gpu", repository=repo_copy)
    assemble_repository(export, target="gpu", repository=repo_copy, max_batch_size=4)
    gpu = text_format.Parse(
        (repo_copy / "engine" / "configs" / "gpu.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert gpu.platform == "tensorrt_plan" and (repo_copy / "engine" / "1" / "model.plan").read_bytes() == b"plan"
    keypoints = text_format.Parse(
        (repo_copy / "keypoints" / "configs" / "gpu.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert keypoints.platform == "tensorrt_plan" and keypoints.max_batch_size == 256 * 4
    assert (repo_copy / "keypoints" / "1" / "model.plan").read_bytes() == b"keypoints plan"


def test_assemble_main_returns_1_with_message_when_export_is_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["--export-dir", str(tmp_path), "--target", "cpu", "--repository", str(REPOSITORY)]) == 1
    assert "missing ['model.onnx', 'keypoints.onnx', 'metadata.json']" in caplog.text


def test_assemble_repository_sets_python_model_instances_and_refuses_others(export_tiny: Path, repo_copy: Path) -> None:
    assemble_repository(export_tiny, target="cpu", repository=repo_copy, instances={"preprocess": 3, "postprocess": 2})
    counts = {
        model: [
            group.count
            for group in text_format.Parse(
                (repo_copy / model / "configs" / "cpu.pbtxt").read_text(), model_config_pb2.ModelConfig()
            ).instance_group
        ]
        for model in ("preprocess", "postprocess", "engine", "keypoints")
    }
    assert counts == {"preprocess": [3], "postprocess": [2], "engine": [1], "keypoints": [1]}
    with pytest.raises(BuildError, match="instances: got engine=2; accepted: preprocess, postprocess = 1..64"):
        assemble_repository(export_tiny, target="cpu", repository=repo_copy, instances={"engine": 2})
    with pytest.raises(BuildError, match="instances: got preprocess=0"):
        assemble_repository(export_tiny, target="cpu", repository=repo_copy, instances={"preprocess": 0})
