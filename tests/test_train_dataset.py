"""COCO-format training data: keypoint sets from the file plus a spec, and clear errors before training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtmo.train.augment import apply_hsv, flip_horizontally
from rtmo.train.checkpoints import adapt_keypoints, initial_model, reinitialised_layers
from rtmo.train.dataset import CocoKeypointDataset, DatasetError

DATA = Path(__file__).resolve().parents[1] / "data"
ANNOTATIONS = DATA / "coco_val2017_subset.json"
PHOTOS = DATA / "photos"


def coco() -> dict:
    return json.loads(ANNOTATIONS.read_text())


def write(tmp_path: Path, data: dict, name: str = "ann.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def five_keypoint_file(tmp_path: Path) -> Path:
    """The subset cut down to the five face keypoints (nose, eyes, ears)."""
    data = coco()
    data["categories"][0]["keypoints"] = data["categories"][0]["keypoints"][:5]
    data["categories"][0]["skeleton"] = [[1, 2], [1, 3], [2, 4], [3, 5]]
    for ann in data["annotations"]:
        ann["keypoints"] = ann["keypoints"][:15]
    return write(tmp_path, data)


def test_coco_file_loads_with_coco_sigmas_and_flip_pairs():
    dataset = CocoKeypointDataset(ANNOTATIONS, PHOTOS)
    assert len(dataset) == 4 and sum(len(s.bboxes) for s in dataset.samples) == 14
    keypoints = dataset.keypoint_set
    assert keypoints.names[0] == "nose" and len(keypoints.sigmas) == 17
    assert keypoints.flip_indices[1] == 2 and keypoints.flip_indices[0] == 0  # left/right eye swap, nose stays
    assert keypoints.skeleton[0] == (15, 13)  # COCO's 1-based [16, 14]: left_ankle - left_knee
    canvas, targets = dataset.samples[0].letterboxed(416)
    assert canvas.shape == (416, 416, 3)
    assert targets["bboxes"].max() <= 416 + 1 and targets["keypoints_visible"].max() == 1


def test_boxes_are_clipped_to_the_last_pixel_as_mmposes_coco_dataset_reads_them():
    data = coco()
    sizes = {image["id"]: (image["width"], image["height"]) for image in data["images"]}
    overhanging = next(a for a in data["annotations"] if a["id"] == 533949)  # x + w = 639.21 in a 640 px image
    x, y, w, h = overhanging["bbox"]
    assert x + w > sizes[overhanging["image_id"]][0] - 1
    sample = next(s for s in CocoKeypointDataset(ANNOTATIONS, PHOTOS).samples if s.image_id == overhanging["image_id"])
    boxes = sample.bboxes.tolist()
    np.testing.assert_allclose(boxes[[round(b[0], 2) for b in boxes].index(372.58)], [x, y, 639.0, y + h], atol=1e-4)
    for s in CocoKeypointDataset(ANNOTATIONS, PHOTOS).samples:
        width, height = sizes[s.image_id]
        assert s.bboxes[:, 0::2].max() <= width - 1 and s.bboxes[:, 1::2].max() <= height - 1


def test_custom_keypoint_set_needs_a_spec_then_uses_it(tmp_path):
    annotations = five_keypoint_file(tmp_path)
    with pytest.raises(DatasetError, match=r"5 keypoints, and no keypoint spec file.*'sigmas' \(5 OKS sigmas\)"):
        CocoKeypointDataset(annotations, PHOTOS)
    spec = write(tmp_path, {"sigmas": [0.026, 0.025, 0.025, 0.035, 0.035]}, "spec.json")
    with pytest.raises(DatasetError, match=r"missing \['flip_pairs'\]"):
        CocoKeypointDataset(annotations, PHOTOS, keypoint_spec=spec)
    spec = write(tmp_path, {"sigmas": [0.1] * 4, "flip_pairs": []}, "spec.json")
    with pytest.raises(DatasetError, match="4 sigmas for the 5 keypoints"):
        CocoKeypointDataset(annotations, PHOTOS, keypoint_spec=spec)
    spec = write(tmp_path, {"sigmas": [0.1] * 5, "flip_pairs": [["left_eye", "right_knee"]]}, "spec.json")
    with pytest.raises(DatasetError, match=r"unknown: \['right_knee'\]"):
        CocoKeypointDataset(annotations, PHOTOS, keypoint_spec=spec)
    spec = write(
        tmp_path,
        {
            "sigmas": [0.026, 0.025, 0.025, 0.035, 0.035],
            "flip_pairs": [["left_eye", "right_eye"], ["left_ear", "right_ear"]],
        },
        "spec.json",
    )
    dataset = CocoKeypointDataset(annotations, PHOTOS, keypoint_spec=spec)
    assert dataset.keypoint_set.names == ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
    assert dataset.keypoint_set.skeleton == ((0, 1), (0, 2), (1, 3), (2, 4))
    assert list(dataset.keypoint_set.flip_indices) == [0, 2, 1, 4, 3]
    meta = dataset.keypoint_set.as_dataset_meta()
    assert meta["num_keypoints"] == 5 and meta["keypoint_id2name"][4] == "right_ear"


def test_bad_data_is_refused_naming_file_and_annotation(tmp_path):
    data = coco()
    data["images"][0]["file_name"] = "missing.jpg"
    data["annotations"][3]["keypoints"] = data["annotations"][3]["keypoints"][:-3]
    data["annotations"][5]["bbox"] = [600.0, 10.0, 200.0, 50.0]
    data["annotations"][6]["bbox"] = [10.0, 10.0, 0.0, 50.0]
    annotations = write(tmp_path, data)
    with pytest.raises(DatasetError) as caught:
        CocoKeypointDataset(annotations, PHOTOS)
    message = str(caught.value)
    assert str(annotations) in message and "4 problem(s)" in message
    assert "image missing.jpg (id 785): not found" in message
    ids = [data["annotations"][i]["id"] for i in (3, 5, 6)]
    assert f"annotation id {ids[0]} (image 000000040083.jpg): 48 keypoint values; expected 51" in message
    assert (
        f"annotation id {ids[1]} (image 000000196141.jpg): box [x 600, y 10, w 200, h 50] outside the 640x429"
        in message
    )
    assert f"annotation id {ids[2]}" in message and "is empty" in message
    data = coco()
    data["annotations"] = []
    with pytest.raises(DatasetError, match="no annotations: nothing to train on"):
        CocoKeypointDataset(write(tmp_path, data), PHOTOS)


def test_keypoint_dependent_layers_are_reinitialised_and_the_rest_kept():
    model, reinitialised = initial_model("random:tiny", num_keypoints=5)
    assert model.config.num_keypoints == 5 and reinitialised == []  # random weights are built with 5 at once
    coco_model, _ = initial_model("random:tiny", num_keypoints=17)
    adapted, reinitialised = adapt_keypoints(coco_model, 5)
    assert reinitialised_layers(reinitialised) == [
        "head.dcc.pos_enc",
        "head.dcc.pose_to_kpts.0",
        "head.dcc.pose_to_kpts.1",
        "head.dcc.sigma_fc.0",
        "head.head_module.out_kpt_reg.0",
        "head.head_module.out_kpt_reg.1",
        "head.head_module.out_kpt_vis.0",
        "head.head_module.out_kpt_vis.1",
        "head.loss_oks.sigmas",
    ]
    kept = coco_model.state_dict()
    for name, value in adapted.state_dict().items():
        if name not in reinitialised:
            assert value.equal(kept[name]), name
    assert not any(name.startswith(("backbone.", "neck.")) for name in reinitialised)


def test_flip_mirrors_boxes_and_keypoints_and_swaps_sides():
    canvas = np.zeros((32, 64, 3), np.uint8)
    canvas[:, :8] = 255
    targets = dict(
        bboxes=np.array([[4.0, 2.0, 20.0, 30.0]], np.float32),
        labels=np.zeros(1, np.int64),
        keypoints=np.array([[[10.0, 5.0], [12.0, 6.0], [30.0, 7.0]]], np.float32),
        keypoints_visible=np.array([[1.0, 0.0, 1.0]], np.float32),
        areas=np.array([100.0], np.float32),
    )
    flipped, moved = flip_horizontally(canvas, targets, np.array([0, 2, 1]))
    assert flipped[:, -8:].min() == 255 and flipped[:, :8].max() == 0
    np.testing.assert_array_equal(moved["bboxes"], [[43.0, 2.0, 59.0, 30.0]])
    np.testing.assert_array_equal(moved["keypoints"], [[[53.0, 5.0], [33.0, 7.0], [51.0, 6.0]]])
    np.testing.assert_array_equal(moved["keypoints_visible"], [[1.0, 1.0, 0.0]])


@pytest.mark.parity
def test_flip_equals_mmposes_random_flip(mmpose_python, tmp_path):
    """Given the draw that flips, our flip of a letterboxed photo and its people is MMPose's ``RandomFlip``."""
    from mmpose_reference import run_reference

    dataset = CocoKeypointDataset(ANNOTATIONS, PHOTOS)
    canvas, targets = dataset.samples[2].letterboxed(416)
    flip_indices = dataset.keypoint_set.flip_indices
    np.savez(tmp_path / "in.npz", img=canvas, flip_indices=flip_indices, **targets)
    run_reference(mmpose_python, "random-flip", "--batch", str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz"))
    ref = np.load(tmp_path / "out.npz")
    flipped, moved = flip_horizontally(canvas, targets, flip_indices)
    np.testing.assert_array_equal(flipped, ref["img"])
    for key in ("bboxes", "keypoints", "keypoints_visible"):
        np.testing.assert_allclose(moved[key], ref[key], rtol=0, atol=1e-4, err_msg=key)


@pytest.mark.parity
@pytest.mark.parametrize("gains", [(3, -20, 25), (-5, 30, -30), (0, 0, 0)])
def test_hsv_jitter_equals_mmposes_yolox_hsv_random_aug(mmpose_python, tmp_path, gains):
    """Given the same gains, our HSV jitter is MMPose's ``YOLOXHSVRandomAug`` to the bit."""
    from mmpose_reference import run_reference

    canvas, _ = CocoKeypointDataset(ANNOTATIONS, PHOTOS).samples[2].letterboxed(416)
    np.savez(tmp_path / "in.npz", img=canvas)
    run_reference(
        mmpose_python,
        "hsv",
        "--batch",
        str(tmp_path / "in.npz"),
        "--gains=" + ",".join(map(str, gains)),  # "=": a leading minus is not an option
        "--out",
        str(tmp_path / "out.npz"),
    )
    ours = apply_hsv(canvas, np.array(gains, np.int16))
    np.testing.assert_array_equal(ours, np.load(tmp_path / "out.npz")["img"])
    assert (gains == (0, 0, 0)) or not np.array_equal(ours, canvas)
