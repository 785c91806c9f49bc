"""Results as COCO keypoint-detection results (the JSON list ``pycocotools``' ``COCO.loadRes`` reads)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rtmo_client.results import PoseResult

__all__ = ["to_coco", "write_coco"]


def to_coco(result: PoseResult, image_id: int, *, category_id: int = 1) -> list[dict[str, Any]]:
    """One COCO keypoint-results entry per person of ``result``.

    Args:
        result: One image's people.
        image_id: The COCO ``image_id`` the results belong to.
        category_id: COCO category (1 = person).

    Returns:
        ``{"image_id", "category_id", "keypoints": [x1, y1, s1, ..., xJ, yJ, sJ], "score"}`` dicts, where ``s`` is
        the keypoint score and ``score`` the person score; plain Python floats, ready for ``json.dump``.
    """
    entries = []
    for person in result.people:
        triplets = [[float(x), float(y), float(s)] for (x, y), s in zip(person.keypoints, person.keypoint_scores)]
        entries.append(
            {
                "image_id": int(image_id),
                "category_id": int(category_id),
                "keypoints": [value for triplet in triplets for value in triplet],
                "score": float(person.score),
            }
        )
    return entries


def write_coco(results: Iterable[tuple[int, PoseResult]], path: str | Path, *, category_id: int = 1) -> int:
    """Write ``(image_id, result)`` pairs as one COCO keypoint-results JSON file.

    Returns:
        The number of entries written.
    """
    entries = [entry for image_id, result in results for entry in to_coco(result, image_id, category_id=category_id)]
    Path(path).write_text(json.dumps(entries))
    return len(entries)
