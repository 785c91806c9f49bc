"""Shared fixtures: real photos, and one real tritonserver serving a calibrated random-weight tiny RTMO."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rtmo.serving.tritonserver import TritonServer
from rtmo_serving import calibrated_model, serve_model

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


@pytest.fixture(scope="session")
def served_model() -> torch.nn.Module:
    """The calibrated random-weight tiny RTMO that :func:`rtmo_server` serves (a handful of people per photo)."""
    return calibrated_model("tiny")


@pytest.fixture(scope="session")
def rtmo_server(served_model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """One real tritonserver for the session with the rtmo and rtmo_frames ensembles; do not stop or reconfigure it."""
    with serve_model(served_model, tmp_path_factory.mktemp("rtmo-serving")) as server:
        yield server
