"""Between the ``rtmo_contract.PEOPLE`` tensors of a request and the tracker: unpadded people in, track tensors out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rtmo.runtime.tracking.tracker import NO_TRACK, Assignment, Detections

__all__ = ["people_in_row", "track_tensors"]


def people_in_row(tensors: Mapping[str, np.ndarray], row: int) -> tuple[Detections, tuple[int, int]]:
    """The people of batch row ``row`` (padding cut at ``num_people``) and the image's width and height."""
    n = int(tensors["num_people"][row].reshape(-1)[0])
    people = Detections(
        boxes=tensors["boxes"][row, :n],
        scores=tensors["box_scores"][row, :n],
        keypoints=tensors["keypoints"][row, :n],
        keypoint_scores=tensors["keypoint_scores"][row, :n],
    )
    width, height = (int(v) for v in tensors["image_size"][row].reshape(-1)[:2])
    return people, (width, height)


def track_tensors(assignments: Sequence[Assignment], *, width: int) -> dict[str, np.ndarray]:
    """``track_ids`` (B, width) INT64 and ``track_ages`` (B, width) INT32, padded with -1 like the people rows."""
    ids = np.full((len(assignments), width), NO_TRACK, dtype=np.int64)
    ages = np.full((len(assignments), width), NO_TRACK, dtype=np.int32)
    for row, assignment in enumerate(assignments):
        ids[row, : len(assignment.track_ids)] = assignment.track_ids
        ages[row, : len(assignment.track_ages)] = assignment.track_ages
    return {"track_ids": ids, "track_ages": ages}
