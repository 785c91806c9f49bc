"""Shared fixtures: real photos, and one real tritonserver serving a calibrated random-weight tiny RTMO."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import fake_triton_backend
from mmpose_reference import build_reference_environment, run_reference
from rtmo.build.assemble import copy_templates
from rtmo.build.export import export_onnx, load_model
from rtmo.serving.tritonserver import TritonServer
from rtmo_serving import calibrated_model, serve_model

DATA = Path(__file__).resolve().parents[1] / "data"
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


@pytest.fixture(scope="session")
def mmpose_python() -> Path:
    """MMPose's reference interpreter; builds its environment on first use (about 1.5 minutes)."""
    return build_reference_environment()


# MMPose's make-checkpoint calibrates on these: several people on the first, at least 3 on every one.
CALIBRATION_PHOTOS = (PHOTOS / "000000196141.jpg", PHOTOS / "image29590.jpg")


@pytest.fixture(scope="session")
def mmpose_checkpoint(
    mmpose_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., tuple[Path, dict]]:
    """``(dataset, size, *options) -> (path, make-checkpoint's report)``: calibrated random-weight checkpoints made by
    MMPose's code, once per session (t and s on both calibration photos, m and l on the first only); ``options`` are
    further ``make-checkpoint`` arguments."""
    made: dict[tuple[str, ...], tuple[Path, dict]] = {}

    def make(dataset: str, size: str, *options: str) -> tuple[Path, dict]:
        key = (dataset, size, *options)
        if key not in made:
            path = tmp_path_factory.mktemp(f"mmpose-{dataset}-{size}") / "ckpt.pth"
            photos = CALIBRATION_PHOTOS if size in ("t", "s") else CALIBRATION_PHOTOS[:1]
            report = run_reference(
                mmpose_python,
                "make-checkpoint",
                "--dataset",
                dataset,
                "--size",
                size,
                "--out",
                str(path),
                "--calib-image",
                *map(str, photos),
                "--seed",
                "0",
                "--threads",
                str(torch.get_num_threads()),
                *options,
            )
            made[key] = path, report
        return made[key]

    return make


REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"


@pytest.fixture(scope="session")
def export_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny RTMO exported once per session (network and keypoint-decoder ONNX, metadata)."""
    model, provenance = load_model("random:tiny")
    return export_onnx(model, tmp_path_factory.mktemp("export") / "tiny", provenance=provenance).onnx_path.parent


@pytest.fixture()
def repo_copy(tmp_path: Path) -> Path:
    """A fresh copy of the checked-in model repository."""
    return copy_templates(REPOSITORY, tmp_path / "model_repository")


@pytest.fixture()
def pb_utils(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A fake ``triton_python_backend_utils`` in ``sys.modules`` (tests/fake_triton_backend.py)."""
    return fake_triton_backend.install(monkeypatch)
