"""The tracker model's adapter (model_repository/tracker/1/model.py) under a fake pb_utils."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fake_triton_backend import FakeError, FakeRequest
from rtmo.build.assemble import assemble_repository
from rtmo.runtime.tracking import SEQUENCE_END, SEQUENCE_START
from test_model_repository import load_adapter


def people(*centres: tuple[float, float], size: tuple[int, int] = (640, 480), pad_to: int = 0) -> dict:
    n, width = len(centres), max(pad_to, len(centres))
    boxes = np.zeros((1, width, 4), np.float32)
    keypoints = np.zeros((1, width, 17, 2), np.float32)
    for i, (cx, cy) in enumerate(centres):
        boxes[0, i] = [cx - 30, cy - 75, cx + 30, cy + 75]
        keypoints[0, i] = np.linspace([cx - 20, cy - 60], [cx + 20, cy + 60], 17)
    scores = np.zeros((1, width), np.float32)
    scores[0, :n] = 0.9
    return {
        "boxes": boxes,
        "box_scores": scores,
        "keypoints": keypoints,
        "keypoint_scores": (scores[..., None] * np.ones(17, np.float32)).astype(np.float32),
        "num_people": np.array([[n]], np.int32),
        "truncated": np.array([[False]]),
        "image_size": np.array([list(size)], np.int32),
    }


def test_tracker_adapter_keeps_one_state_per_sequence_and_refuses_bad_frames_alone(
    pb_utils: object, export_tiny: Path, repo_copy: Path
) -> None:
    assemble_repository(export_tiny, target="cpu", repository=repo_copy)
    model = load_adapter(repo_copy, "tracker")
    first = model.execute(
        [
            FakeRequest(people((100, 200), (300, 200)), correlation_id=11, flags=SEQUENCE_START),
            FakeRequest(people((500, 200), pad_to=2), correlation_id=22, flags=SEQUENCE_START),
        ]
    )
    assert first[0].error is None and first[0].tensors["track_ids"].tolist() == [[1, 2]]
    # Sequence 22's padding row gets -1, and its own numbering starts at 1 too.
    assert first[1].tensors["track_ids"].tolist() == [[1, -1]] and first[1].tensors["track_ages"].tolist() == [[0, -1]]
    np.testing.assert_array_equal(first[0].tensors["boxes"], people((100, 200), (300, 200))["boxes"])
    second = model.execute(
        [
            FakeRequest(people((300, 200), size=(320, 240)), correlation_id=11),  # another frame size
            FakeRequest(people((505, 200)), correlation_id=22, flags=SEQUENCE_END),
            FakeRequest(people((1, 1)), correlation_id=33),  # never started
            FakeRequest(people((505, 200)), {"track_min_similarity": 0}, correlation_id=11),
        ]
    )
    assert second[0].error.code == FakeError.INVALID_ARG and "320x240 pixels" in second[0].error.message
    assert second[1].error is None and second[1].tensors["track_ids"].tolist() == [[1]]
    assert second[1].tensors["track_ages"].tolist() == [[1]]
    assert second[2].error.code == FakeError.INVALID_ARG and "sequence 33: unknown" in second[2].error.message
    assert "track_min_similarity: got 0" in second[3].error.message
    third = model.execute(
        [
            FakeRequest(people((302, 200), (102, 200)), correlation_id=11),  # the refused frames changed nothing
            FakeRequest(people((505, 200)), correlation_id=22),  # ended
        ]
    )
    assert third[0].tensors["track_ids"].tolist() == [[2, 1]] and third[0].tensors["track_ages"].tolist() == [[1, 1]]
    assert "sequence 22: unknown to the tracker" in third[1].error.message
