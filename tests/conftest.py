"""Shared fixtures: real photos and random-weight RTMO checkpoints in MMPose's key layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
PHOTOS = DATA / "photos"


@pytest.fixture(scope="session")
def photo_paths() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PHOTOS.glob("*.jpg"))}


@pytest.fixture(scope="session")
def crowd_photo() -> np.ndarray:
    """640x429 landscape COCO photo with five people."""
    return cv2.imread(str(PHOTOS / "000000196141.jpg"))


@pytest.fixture(scope="session")
def portrait_photo() -> np.ndarray:
    """334x512 portrait photo."""
    return cv2.imread(str(PHOTOS / "image29590.jpg"))
