"""A deterministic training batch from the annotated COCO photos: letterboxed, annotations moved along."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from rtmo.train.targets import ImageTargets

DATA = Path(__file__).resolve().parents[1] / "data"
ANNOTATIONS = DATA / "coco_val2017_subset.json"


def letterboxed_batch(file_names: list[str], size: int) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """(B, 3, size, size) float32 BGR and per image the arrays of ``ImageTargets`` (top-left letterbox)."""
    coco = json.loads(ANNOTATIONS.read_text())
    images = {image["file_name"]: image for image in coco["images"]}
    canvases, targets = [], []
    for name in file_names:
        picture = cv2.imread(str(DATA / "photos" / name))
        scale = size / max(picture.shape[:2])
        resized = cv2.resize(picture, (round(picture.shape[1] * scale), round(picture.shape[0] * scale)))
        canvas = np.full((size, size, 3), 114, np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        canvases.append(canvas.transpose(2, 0, 1).astype(np.float32))
        people = [a for a in coco["annotations"] if a["image_id"] == images[name]["id"]]
        x, y, w, h = np.array([a["bbox"] for a in people], np.float64).T
        keypoints = np.array([a["keypoints"] for a in people], np.float64).reshape(len(people), -1, 3)
        targets.append(
            dict(
                bboxes=(np.stack([x, y, x + w, y + h], 1) * scale).astype(np.float32),
                labels=np.zeros(len(people), np.int64),
                keypoints=(keypoints[..., :2] * scale).astype(np.float32),
                keypoints_visible=np.minimum(keypoints[..., 2], 1).astype(np.float32),
                areas=(np.array([a["area"] for a in people]) * scale**2).astype(np.float32),
            )
        )
    return np.stack(canvases), targets


def as_targets(arrays: dict[str, np.ndarray]) -> ImageTargets:
    return ImageTargets(**{key: torch.from_numpy(value) for key, value in arrays.items()})


def batch_npz(inputs: np.ndarray, targets: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The ``--batch`` file of run_reference.py's ``train-step``."""
    out = {"inputs": inputs}
    for i, arrays in enumerate(targets):
        out.update({f"img{i}_{key}": value for key, value in arrays.items()})
    return out
