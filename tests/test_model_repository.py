"""The model repository's model.py adapters without a server, with a fake triton_python_backend_utils."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format

from fake_triton_backend import FakeError, FakeInferenceRequest, FakeRequest
from image_files import encode
from rtmo.build.assemble import assemble_repository

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
PHOTO = Path(__file__).resolve().parents[1] / "data" / "photos" / "000000196141.jpg"


def load_adapter(repository: Path, model: str, target: str = "cpu", config: str = "config.pbtxt") -> object:
    path = repository / model / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"adapter_{model}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config_path = (
        repository
        / model
        / ("configs/cpu.pbtxt" if (repository / model / "configs" / "cpu.pbtxt").exists() else config)
    )
    from google.protobuf import json_format

    message = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    instance = module.TritonPythonModel()
    instance.initialize(
        {
            "model_config": json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True)),
            "model_repository": str(repository / model),
            "model_version": "1",
        }
    )
    return instance


def test_preprocess_adapter_answers_bad_request_with_invalid_arg_and_serves_its_batch_mates(pb_utils: object) -> None:
    model = load_adapter(REPOSITORY, "preprocess")
    good = np.array([[PHOTO.read_bytes()], [encode(np.zeros((32, 32, 3), np.uint8))]], dtype=object)
    responses = model.execute(
        [
            FakeRequest({"image": good}),
            FakeRequest({"image": np.array([[b"nope"]], dtype=object)}),
            FakeRequest({"frame": np.zeros((1, 10, 20, 3), np.uint8)}),
            FakeRequest({"frame": np.zeros((1, 10, 20, 3), np.uint8)}, {"max_people": -1}),
            FakeRequest({}),
        ]
    )
    assert len(responses) == 5
    assert responses[0].error is None and responses[0].tensors["images"].shape == (2, 640, 640, 3)
    np.testing.assert_allclose(responses[0].tensors["letterbox"][0], [320, 214.5, 640, 640, 640, 640])
    assert responses[1].error.code == FakeError.INVALID_ARG and "not a supported image" in responses[1].error.message
    assert responses[2].error is None and responses[2].tensors["letterbox"].shape == (1, 6)
    assert responses[3].error.code == FakeError.INVALID_ARG and "max_people" in responses[3].error.message
    assert "send exactly one of them" in responses[4].error.message


def test_postprocess_adapter_pads_outputs_and_refuses_bad_parameters(
    pb_utils: object, export_tiny: Path, repo_copy: Path
) -> None:
    assemble_repository(export_tiny, target="cpu", repository=repo_copy)
    model = load_adapter(repo_copy, "postprocess")
    decoder = ort.InferenceSession(str(repo_copy / "keypoints" / "1" / "model.onnx"))
    FakeInferenceRequest.MODELS["keypoints"] = lambda feed: {"keypoints": decoder.run(None, feed)[0]}
    k, j, c = 256, 17, 192
    rng = np.random.default_rng(0)
    boxes = np.sort(rng.uniform(0, 400, (2, k, 4)).reshape(2, k, 2, 2), axis=2).reshape(2, k, 4).astype(np.float32)
    inputs = {
        "candidate_scores": np.sort(rng.uniform(0, 0.3, (2, k)).astype(np.float32))[:, ::-1].copy(),
        "candidate_boxes": boxes,
        "candidate_keypoint_visibility": rng.uniform(0, 1, (2, k, j)).astype(np.float32),
        "candidate_pose_vectors": rng.normal(size=(2, k, c)).astype(np.float32),
        "candidate_priors": rng.uniform(0, 400, (2, k, 2)).astype(np.float32),
        "letterbox": np.tile(np.array([[208, 208, 416, 416, 416, 416]], np.float32), (2, 1)),
    }
    inputs["candidate_scores"][1] = 0.0
    responses = model.execute(
        [
            FakeRequest(inputs, {"score_threshold": 0.2, "max_people": 3}),
            FakeRequest(inputs, {"nms_iou_threshold": 2}),
            FakeRequest(inputs, {"score_threshold": 0.2, "pose_nms": True}),
        ]
    )
    first = responses[0].tensors
    assert responses[0].error is None
    np.testing.assert_array_equal(first["num_people"][:, 0], [3, 0])
    assert first["keypoints"].shape == (2, 3, j, 2) and not first["keypoints"][1].any()
    assert (
        responses[1].error.code == FakeError.INVALID_ARG and "nms_iou_threshold: got 2.0" in responses[1].error.message
    )
    assert responses[2].error is None and 1 <= responses[2].tensors["num_people"][0, 0] <= 30
    # One keypoints call for the survivors of both valid requests (3 capped + the pose-NMS request's box survivors).
    ((name, feed),) = FakeInferenceRequest.calls
    assert name == "keypoints" and len(feed["boxes"]) > 3 and feed["pose_vectors"].shape[1] == c
    np.testing.assert_array_equal(first["image_size"], [[416, 416], [416, 416]])


def test_postprocess_adapter_answers_internal_when_the_keypoints_model_fails(pb_utils: object, export_tiny, repo_copy):
    assemble_repository(export_tiny, target="cpu", repository=repo_copy)
    model = load_adapter(repo_copy, "postprocess")  # no keypoints model registered: the BLS call fails
    k, j, c = 256, 17, 192
    inputs = {
        "candidate_scores": np.full((1, k), 0.9, np.float32),
        "candidate_boxes": np.tile(np.array([10, 10, 100, 200], np.float32), (1, k, 1)),
        "candidate_keypoint_visibility": np.zeros((1, k, j), np.float32),
        "candidate_pose_vectors": np.zeros((1, k, c), np.float32),
        "candidate_priors": np.full((1, k, 2), 50.0, np.float32),
        "letterbox": np.array([[208, 208, 416, 416, 416, 416]], np.float32),
    }
    responses = model.execute([FakeRequest(inputs), FakeRequest(inputs, {"max_people": 0})])
    assert responses[0].error.code == FakeError.INTERNAL and "see the server log" in responses[0].error.message
    assert responses[1].error.code == FakeError.INVALID_ARG  # its own bad parameter, not the shared failure
