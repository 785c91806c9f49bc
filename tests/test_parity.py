"""Parity with MMPose's own RTMO code, run in its own virtual environment (tests/mmpose_ref/).

MMPose's code builds random-weight checkpoints, calibrated so that several people pass the score threshold and
NMS removes some; we load them unchanged and compare raw head outputs and final predictions on real photos of
different aspect ratios.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import rtmo
from mmpose_reference import run_reference
from rtmo.processing import letterbox

pytestmark = [pytest.mark.parity, pytest.mark.slow]

PHOTOS = Path(__file__).parent / "data" / "photos"
# Landscape 640x429 (five people), portrait 334x512, landscape 640x480.
COMPARE = [PHOTOS / "000000196141.jpg", PHOTOS / "image29590.jpg", PHOTOS / "103319.jpg"]


# Full predictions are compared for t and s; m and l (calibrated on one photo) for strict loading and raw outputs.
FULL = [("body7", "t"), ("body7", "s"), ("crowdpose", "s")]
RAW_ONLY = [("body7", "m"), ("body7", "l")]


def run_id(param: tuple[str, str]) -> str:
    return f"{param[0]}-{param[1]}"


@pytest.fixture(scope="module")
def reference_runs(mmpose_python, mmpose_checkpoint, tmp_path_factory):
    """``(dataset, size) -> (size, make-checkpoint report, checkpoint, images, MMPose's predict output)``, run once."""
    runs = {}

    def run(dataset: str, size: str):
        if (dataset, size) not in runs:
            tmp = tmp_path_factory.mktemp(run_id((dataset, size)))
            checkpoint, made = mmpose_checkpoint(dataset, size)
            images = COMPARE if size in ("t", "s") else COMPARE[:1]
            run_reference(mmpose_python, "predict", "--dataset", dataset, "--size", size, "--checkpoint", str(checkpoint),
                          "--images", *map(str, images), "--out", str(tmp / "ref.npz"))
            with np.load(tmp / "ref.npz") as data:
                runs[(dataset, size)] = size, made, checkpoint, images, {k: data[k] for k in data.files}
        return runs[(dataset, size)]

    return run


@pytest.fixture(scope="module", params=FULL + RAW_ONLY, ids=run_id)
def reference_run(request, reference_runs):
    return reference_runs(*request.param)


@pytest.fixture(scope="module", params=FULL, ids=run_id)
def full_reference_run(request, reference_runs):
    return reference_runs(*request.param)


def test_mmpose_checkpoint_loads_strictly_with_inferred_config(reference_run):
    size, made, path, _, _ = reference_run
    model = rtmo.load_checkpoint(path)
    assert model.config.backbone_config.size == rtmo.CSPConfig(size=size).size
    assert len(model.state_dict()) == made["num_state_dict_keys"]
    expected_keypoints = 14 if "crowdpose" in str(path) else 17
    assert model.config.num_keypoints == expected_keypoints


def test_raw_head_outputs_match_mmpose(reference_run):
    _, _, path, images, ref = reference_run
    model = rtmo.load_checkpoint(path)
    size = model.config.input_size
    for i, image_path in enumerate(images):
        canvas, _ = letterbox(cv2.imread(str(image_path)), (size, size))
        x = torch.from_numpy(canvas).permute(2, 0, 1)[None].float().contiguous()
        np.testing.assert_array_equal(x.numpy(), ref[f"img{i}_input"])  # letterbox is pixel-identical
        with torch.no_grad():
            outputs = model(x)
        for name, levels in zip(("cls", "bbox", "vis", "pose"), outputs):
            for level, tensor in enumerate(levels):
                want = ref[f"img{i}_{name}_{level}"]
                scale = float(np.abs(want).max())
                assert np.abs(tensor.numpy() - want).max() <= 1e-4 * scale, f"{image_path.name} {name}[{level}]"


def test_predictions_match_mmpose_and_are_not_trivial(full_reference_run):
    size, made, path, images, ref = full_reference_run
    # The calibration must make the comparison meaningful: people detected, and NMS suppressed some.
    assert all(n >= 3 for n in made["num_after_nms"]), made
    assert any(a > n for a, n in zip(made["num_above_thr"], made["num_after_nms"])), made
    model = rtmo.load_checkpoint(path)
    for i, image_path in enumerate(images):
        ours = model.predict([cv2.imread(str(image_path))])[0]
        assert len(ours) == len(ref[f"img{i}_bbox_scores"]), image_path.name
        np.testing.assert_allclose(ours.bboxes, ref[f"img{i}_bboxes"], atol=0.01, rtol=0, err_msg=image_path.name)
        np.testing.assert_allclose(ours.keypoints, ref[f"img{i}_keypoints"], atol=0.01, rtol=0, err_msg=image_path.name)
        np.testing.assert_allclose(ours.bbox_scores, ref[f"img{i}_bbox_scores"], atol=1e-5, rtol=0, err_msg=image_path.name)
        np.testing.assert_allclose(ours.keypoint_scores, ref[f"img{i}_keypoint_scores"], atol=1e-5, rtol=0, err_msg=image_path.name)
    assert len(ref["img0_bbox_scores"]) >= 3


def test_interpreter_is_not_the_reference_one(mmpose_python):
    # Our side must not import MMPose: the comparison is between two independent implementations.
    # (both venvs may link to the same base interpreter, so compare the environments, not resolved binaries)
    assert Path(sys.prefix).resolve() != mmpose_python.parent.parent.resolve()
    with pytest.raises(ImportError):
        __import__("mmpose")
