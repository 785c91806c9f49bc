"""Image inputs, header sizes, error mapping, result helpers (COCO, dict, drawing): pure functions, no transport."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_triton import KEYPOINT_NAMES, FakeResult, error, outputs_for

import rtmo_client
from rtmo_client.errors import from_triton_error
from rtmo_client.images import EncodedImage, Frame, to_payload
from rtmo_client.wire import decode_result

PHOTOS = Path(__file__).resolve().parents[2] / "data" / "photos"


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"])
def test_encoded_bytes_are_sent_as_they_are_and_left_to_the_server(data: bytes) -> None:
    payload = to_payload(data)
    assert isinstance(payload, EncodedImage) and payload.data == data


def test_paths_are_read_and_missing_files_named() -> None:
    photo = next(PHOTOS.glob("*.jpg"))
    payload = to_payload(str(photo))
    assert isinstance(payload, EncodedImage) and payload.data == photo.read_bytes()
    with pytest.raises(rtmo_client.InvalidInputError, match=r"images\[2\]: cannot read '/nope.jpg'"):
        to_payload(Path("/nope.jpg"), name="images[2]")


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "dtype float32"),
        (np.zeros((4, 4), np.uint8), r"shape \(4, 4\)"),
        (np.zeros((4, 4, 4), np.uint8), r"shape \(4, 4, 4\)"),
        (np.zeros((0, 4, 3), np.uint8), "empty frame"),
    ],
)
def test_bad_frames_are_refused_with_what_is_accepted(array: np.ndarray, message: str) -> None:
    with pytest.raises(rtmo_client.InvalidInputError, match=message):
        to_payload(array, channels="bgr")


def test_frames_are_made_contiguous_bgr() -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    payload = to_payload(rgb[:, ::-1], channels="rgb")
    assert isinstance(payload, Frame) and payload.array.flags.c_contiguous and payload.array.shape == (2, 3, 3)
    np.testing.assert_array_equal(payload.array, rgb[:, ::-1, ::-1])


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("INVALID_ARGUMENT", rtmo_client.InvalidInputError),
        ("UNAVAILABLE", rtmo_client.UnavailableError),
        ("DEADLINE_EXCEEDED", rtmo_client.DeadlineExceededError),
        ("NOT_FOUND", rtmo_client.ModelNotReadyError),
        ("INTERNAL", rtmo_client.ServerError),
        ("UNKNOWN", rtmo_client.ServerError),
        ("RESOURCE_EXHAUSTED", rtmo_client.ServerError),
    ],
)
def test_errors_map_by_status_code_not_by_message(status: str, kind: type) -> None:
    mapped = from_triton_error(error(status, "UNAVAILABLE INVALID_ARGUMENT deadline"))
    assert type(mapped) is kind and mapped.status == status
    assert mapped.message == "UNAVAILABLE INVALID_ARGUMENT deadline"
    assert isinstance(mapped, rtmo_client.RTMOClientError)


def test_error_without_status_is_the_base_class_and_builtin_bases_hold() -> None:
    from tritonclient.utils import InferenceServerException

    assert type(from_triton_error(InferenceServerException("local problem"))) is rtmo_client.RTMOClientError
    assert issubclass(rtmo_client.InvalidInputError, ValueError)
    assert issubclass(rtmo_client.DeadlineExceededError, TimeoutError)


def person(offset: float, score: float) -> rtmo_client.Person:
    keypoints = np.stack([offset + np.arange(17), offset + 2 * np.arange(17)], axis=1).astype(np.float32)
    scores = np.linspace(0.1, 0.9, 17, dtype=np.float32)
    return rtmo_client.Person(
        box=(offset, offset, offset + 40, offset + 60),
        score=score,
        keypoints=keypoints,
        keypoint_scores=scores,
        keypoint_names=tuple(KEYPOINT_NAMES),
    )


def test_to_coco_gives_keypoint_results_entries(tmp_path: Path) -> None:
    result = rtmo_client.PoseResult(people=[person(10, 0.8), person(50, 0.4)], image_size=(100, 120))
    entries = result.to_coco(785)
    assert [e["image_id"] for e in entries] == [785, 785] and [e["category_id"] for e in entries] == [1, 1]
    assert entries[1]["score"] == pytest.approx(0.4)
    assert len(entries[0]["keypoints"]) == 51
    assert entries[0]["keypoints"][:6] == pytest.approx([10.0, 10.0, 0.1, 11.0, 12.0, 0.15])
    assert rtmo_client.write_coco([(1, result), (2, rtmo_client.PoseResult([], (5, 5)))], tmp_path / "r.json") == 2
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(entries).replace("785", "1"))


def test_to_dict_is_json_with_named_keypoints() -> None:
    result = rtmo_client.PoseResult(people=[person(10, 0.8)], image_size=(100, 120), truncated=True)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["image_size"] == [100, 120] and data["truncated"] is True
    assert data["people"][0]["keypoints"]["right_ankle"] == pytest.approx([26.0, 42.0, 0.9])


def test_draw_marks_boxes_and_visible_keypoints_on_a_copy() -> None:
    image = np.zeros((120, 100, 3), np.uint8)
    result = rtmo_client.PoseResult(people=[person(10, 0.8)], image_size=(100, 120))
    drawn = rtmo_client.draw(image, result, skeleton=[(15, 16)], keypoint_threshold=0.5)
    assert not image.any() and drawn.shape == image.shape
    assert drawn[10, 30].any()  # the box's top edge
    assert drawn[42, 26].any()  # right_ankle (score 0.9) is drawn
    assert not drawn[10 + 2 * 1, 10 + 1].any()  # left_eye (score 0.15) is not
    with pytest.raises(ValueError, match="uint8"):
        rtmo_client.draw(image.astype(np.float32), result)  # type: ignore[arg-type]


def test_image_size_is_the_servers_and_unknown_when_an_older_server_leaves_it_out() -> None:
    payloads = [to_payload(b"jpeg bytes"), to_payload(b"more")]
    sizes = outputs_for([1, 0], image_sizes=[(640, 429), (20, 30)])
    assert [r.image_size for r in decode_result(FakeResult(sizes), payloads, None)] == [(640, 429), (20, 30)]
    older = outputs_for([1, 0])
    assert [r.image_size for r in decode_result(FakeResult(older), payloads, None)] == [None, None]
