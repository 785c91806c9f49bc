"""Integration: the rtmo ensembles served by a real tritonserver on CPU equal ``RTMO.predict``.

The session's shared server (``rtmo_server`` in conftest): a random-weight tiny RTMO, calibrated so a handful of
anchors pass 0.1, exported, assembled for the cpu target in a copy of the model repository, and served with
``--model-config-name=cpu``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import torch

from image_files import png_claiming, webp_claiming
from rtmo.runtime.preprocess import decode_image
from rtmo.serving.tritonserver import TritonServer
from rtmo_serving import CALIBRATED_CHECKPOINT, PHOTOS

grpcclient = pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc]")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.integration

# 0.01 px of the network input: the served decoder (ONNX Runtime) and RTMO.predict's (PyTorch, thread count of the
# machine) round differently in float32; mapped to image pixels the bound grows with the letterbox's scale.
KEYPOINT_ATOL_PX = 0.01


@pytest.fixture(scope="module")
def model(served_model: torch.nn.Module) -> torch.nn.Module:
    return served_model


@pytest.fixture(scope="module")
def server(rtmo_server: TritonServer) -> TritonServer:
    return rtmo_server


@pytest.fixture(scope="module")
def client(server: TritonServer) -> Iterator[object]:
    with grpcclient.InferenceServerClient(server.urls.grpc) as connection:
        yield connection


def encoded_images() -> dict[str, bytes]:
    yy, xx = np.mgrid[0:3000, 0:4000]
    large = np.dstack([(xx // 16) % 256, (yy // 12) % 256, ((xx + yy) // 30) % 256]).astype(np.uint8)
    small = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return {
        "landscape": (PHOTOS / "000000196141.jpg").read_bytes(),
        "portrait": (PHOTOS / "image29590.jpg").read_bytes(),
        "synthetic_32x32": cv2.imencode(".png", small)[1].tobytes(),
        "synthetic_4000x3000": cv2.imencode(".jpg", large)[1].tobytes(),
    }


IMAGES = encoded_images()


def unusual_images() -> dict[str, bytes]:
    """Valid files that are not 8-bit BGR JPEGs: each must be decoded to BGR and served like any other."""
    photo = cv2.imread(str(PHOTOS / "image29590.jpg"))
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    return {
        "grayscale_png": cv2.imencode(".png", gray)[1].tobytes(),
        "rgba_png": cv2.imencode(".png", rgba)[1].tobytes(),
        "16bit_png": cv2.imencode(".png", photo.astype(np.uint16) * 257)[1].tobytes(),
        "1x1_png": cv2.imencode(".png", photo[:1, :1])[1].tobytes(),
        "webp": cv2.imencode(".webp", photo, [cv2.IMWRITE_WEBP_QUALITY, 90])[1].tobytes(),
        "tiff": cv2.imencode(".tiff", photo)[1].tobytes(),
    }


def image_input(images: list[bytes]) -> object:
    tensor = grpcclient.InferInput("image", [len(images), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data] for data in images], dtype=np.object_))
    return tensor


def infer(client: object, images: list[bytes], **parameters: object) -> object:
    return client.infer("rtmo", [image_input(images)], parameters=parameters or None)


def assert_row_equals(result: object, row: int, expected: object) -> None:
    n = int(result.as_numpy("num_people")[row, 0])
    assert n == len(expected)
    width, height = result.as_numpy("image_size")[row]
    atol = KEYPOINT_ATOL_PX * max(1.0, max(int(width), int(height)) / 640)
    np.testing.assert_allclose(result.as_numpy("keypoints")[row, :n], expected.keypoints, atol=atol, rtol=0)
    np.testing.assert_allclose(result.as_numpy("boxes")[row, :n], expected.boxes, atol=atol, rtol=0)
    np.testing.assert_allclose(result.as_numpy("box_scores")[row, :n], expected.box_scores, atol=1e-4, rtol=0)
    np.testing.assert_allclose(result.as_numpy("keypoint_scores")[row, :n], expected.keypoint_scores, atol=1e-4, rtol=0)
    assert not result.as_numpy("keypoints")[row, n:].any()


@pytest.fixture(scope="module")
def references(model: torch.nn.Module) -> dict[str, object]:
    decoded = {name: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for name, data in IMAGES.items()}
    return {name: model.predict([image], score_threshold=0.1)[0] for name, image in decoded.items()}


@pytest.mark.parametrize("name", list(IMAGES))
def test_rtmo_equals_model_predict_when_one_image_per_request(client: object, references: dict, name: str) -> None:
    assert len(references[name]) > 0, "calibration must give detections, or the comparison proves nothing"
    result = infer(client, [IMAGES[name]])
    assert_row_equals(result, 0, references[name])
    assert not result.as_numpy("truncated")[0, 0]


def test_rtmo_equals_model_predict_when_four_images_share_a_request(client: object, references: dict) -> None:
    names = list(IMAGES)
    result = infer(client, [IMAGES[name] for name in names])
    assert result.as_numpy("keypoints").shape[:2] == (4, max(len(references[n]) for n in names))
    for row, name in enumerate(names):
        assert_row_equals(result, row, references[name])


def test_rtmo_frames_equals_model_predict_for_a_raw_frame(client: object, model: torch.nn.Module) -> None:
    frame = cv2.imread(str(PHOTOS / "image29590.jpg"))
    tensor = grpcclient.InferInput("frame", [1, *frame.shape], "UINT8")
    tensor.set_data_from_numpy(frame[None])
    result = client.infer("rtmo_frames", [tensor])
    expected = model.predict([frame], score_threshold=0.1)[0]
    assert len(expected) > 0
    assert_row_equals(result, 0, expected)


def run_concurrently(client: object, jobs: list[tuple[list[bytes], dict]]) -> list[object]:
    """Send all jobs with async_infer at once (so they share dynamic batches); results or exceptions, in order."""
    results: list[object] = [None] * len(jobs)
    done = threading.Semaphore(0)

    def callback(index: int) -> object:
        def store(result: object, error: object) -> None:
            results[index] = error if error is not None else result
            done.release()

        return store

    for index, (images, parameters) in enumerate(jobs):
        client.async_infer("rtmo", [image_input(images)], callback(index), parameters=parameters or None)
    for _ in jobs:
        assert done.acquire(timeout=120)
    return results


def test_concurrent_requests_with_different_thresholds_get_their_own_results(
    client: object, model: torch.nn.Module
) -> None:
    image = IMAGES["landscape"]
    thresholds = [0.1, 0.3, 0.5, 0.7] * 3
    decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    expected = {t: model.predict([decoded], score_threshold=t)[0] for t in set(thresholds)}
    assert len({len(p) for p in expected.values()}) > 1, "thresholds must give different counts"
    results = run_concurrently(client, [([image], {"score_threshold": t}) for t in thresholds])
    for threshold, result in zip(thresholds, results):
        assert not isinstance(result, Exception), result
        assert_row_equals(result, 0, expected[threshold])


BAD_REQUESTS = [
    ([b"this is not an image"], {}, "not a supported image"),
    ([IMAGES["landscape"][:20000]], {}, "JPEG is truncated"),
    ([b""], {}, "empty (0 bytes)"),
    ([png_claiming(30000, 30000)], {}, "PNG of 30000x30000 = 900000000 pixels is too large; accepted: at most"),
    ([webp_claiming(16384, 16384)], {}, "WEBP of 16384x16384 = 268435456 pixels is too large"),
    ([IMAGES["portrait"]], {"score_threshold": 1.5}, "score_threshold: got 1.5"),
    ([IMAGES["portrait"]], {"max_people": 0}, "max_people: got 0"),
    ([IMAGES["portrait"]], {"pose_nms": "yes"}, "pose_nms"),
]


def test_bad_requests_get_invalid_argument_while_batch_mates_succeed(client: object, references: dict) -> None:
    good = ([IMAGES["portrait"]], {})
    jobs = [job for bad in BAD_REQUESTS for job in (good, bad[:2])] + [good]
    results = run_concurrently(client, jobs)
    for job, result in zip(jobs, results):
        if job is good:
            assert not isinstance(result, Exception), result
            assert_row_equals(result, 0, references["portrait"])
    for (_, _, message), result in zip(BAD_REQUESTS, results[1::2]):
        assert isinstance(result, InferenceServerException)
        assert result.status() == "StatusCode.INVALID_ARGUMENT"
        assert message in result.message()
        assert "Traceback" not in result.message()
    assert client.is_server_live() and client.is_model_ready("rtmo")
    assert_row_equals(infer(client, [IMAGES["portrait"]]), 0, references["portrait"])


def test_unusual_but_valid_images_are_served_as_bgr_like_model_predict(client: object, model: torch.nn.Module) -> None:
    images = unusual_images()
    result = infer(client, list(images.values()))
    for row, (name, data) in enumerate(images.items()):
        expected = model.predict([decode_image(data)], score_threshold=0.1)[0]
        if name != "1x1_png":
            assert len(expected) > 0, f"{name}: calibration must give detections"
        assert_row_equals(result, row, expected)


def test_pose_nms_and_max_people_limit_people(client: object, references: dict) -> None:
    full = len(references["landscape"])
    limited = infer(client, [IMAGES["landscape"]], max_people=1)
    assert int(limited.as_numpy("num_people")[0, 0]) == 1
    with_pose_nms = infer(client, [IMAGES["landscape"]], pose_nms=True)
    assert 1 <= int(with_pose_nms.as_numpy("num_people")[0, 0]) <= min(full, 30)


def test_server_model_metadata_carries_checkpoint_and_keypoints(client: object) -> None:
    config = client.get_model_config("rtmo", as_json=True)["config"]
    assert config["parameters"]["checkpoint"]["string_value"] == CALIBRATED_CHECKPOINT
    assert '"nose"' in config["parameters"]["keypoint_names"]["string_value"]


def test_rtmo_serves_max_batch_size_rows_and_refuses_more(client: object, references: dict) -> None:
    result = infer(client, [IMAGES["portrait"]] * 8)
    for row in range(8):
        assert_row_equals(result, row, references["portrait"])
    with pytest.raises(InferenceServerException) as raised:
        infer(client, [IMAGES["portrait"]] * 9)
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
