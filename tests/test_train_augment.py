"""The training pipeline's multi-image and geometric augmentations: each equals MMPose's given the same draw
(in its reference environment, ``run_reference.py``), and each does what it says on its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rtmo.train.affine import AffineDraw, draw_affine, letterbox_matrix, perspective_matrix, warp
from rtmo.train.augment import filter_annotations
from rtmo.train.batch_resize import BatchSyncRandomResize, draw_input_size, pad_batch, resize_batch
from rtmo.train.dataset import CocoKeypointDataset
from rtmo.train.mixup import MixUpDraw, apply_mixup, draw_mixup
from rtmo.train.mosaic import MosaicDraw, apply_mosaic, draw_mosaic
from rtmo.train.pipeline import make_batch, recipe_for, stage1_sample, stage2_sample
from rtmo.train.targets import ImageTargets

DATA = Path(__file__).resolve().parents[1] / "data"
ANNOTATIONS = DATA / "coco_val2017_subset.json"
PHOTOS = DATA / "photos"
SIDE = 640
COMPARED = ("bboxes", "keypoints", "keypoints_visible", "areas")


@pytest.fixture(scope="module")
def dataset() -> CocoKeypointDataset:
    return CocoKeypointDataset(ANNOTATIONS, PHOTOS)


def people(count: int, k: int = 3) -> dict[str, np.ndarray]:
    """``count`` made-up people with ``k`` keypoints, all visible, inside a 100 px square."""
    boxes = np.tile(np.array([[10.0, 20.0, 60.0, 90.0]], np.float32), (count, 1))
    keypoints = np.tile(np.array([[[20.0, 30.0], [40.0, 50.0], [55.0, 85.0]]], np.float32)[:, :k], (count, 1, 1))
    return dict(
        bboxes=boxes,
        labels=np.zeros(count, np.int64),
        keypoints=keypoints,
        keypoints_visible=np.ones((count, k), np.float32),
        areas=np.full(count, 3500.0, np.float32),
    )


def batch_file(path: Path, images: list[np.ndarray], targets: list[dict], **extra) -> Path:
    arrays = dict(extra)
    for i, (image, arrays_i) in enumerate(zip(images, targets)):
        arrays[f"img{i}"] = image
        arrays.update({f"img{i}_{key}": arrays_i[key] for key in COMPARED})
    np.savez(path, **arrays)
    return path


def reference(mmpose_python: Path, tmp_path: Path, command: str, batch: Path, *options: str) -> dict:
    from mmpose_reference import run_reference

    out = tmp_path / f"{command}-out.npz"
    run_reference(mmpose_python, command, "--batch", str(batch), *options, "--out", str(out))
    return dict(np.load(out))


def assert_same(image: np.ndarray, targets: dict, ref: dict, *, grey_levels: int = 0) -> None:
    assert image.shape == ref["img"].shape
    difference = np.abs(image.astype(np.int16) - ref["img"].astype(np.int16))
    assert difference.max() <= grey_levels, f"image differs by up to {difference.max()} grey levels"
    for key in COMPARED:
        assert targets[key].shape == ref[key].shape, key
        np.testing.assert_allclose(targets[key], ref[key], rtol=0, atol=1e-4, err_msg=key)


def mosaic_of(dataset: CocoKeypointDataset, draw: MosaicDraw) -> tuple[np.ndarray, dict]:
    quartet = [dataset.samples[i] for i in (0, *draw.partners)]
    return apply_mosaic([s.load_image() for s in quartet], [s.targets() for s in quartet], draw, side=SIDE)


# ---------------------------------------------------------------- Mosaic


@pytest.mark.parity
@pytest.mark.parametrize("centre", [(500, 700), (959, 321)])
def test_mosaic_equals_mmposes(mmpose_python, tmp_path, dataset, centre):
    """Four photos (portrait and landscape, people overhanging the centre lines), the same centre."""
    draw = MosaicDraw(centre_xy=centre, partners=(1, 2, 3))
    samples = [dataset.samples[i] for i in (0, 1, 2, 3)]
    images = [s.load_image() for s in samples]
    batch = batch_file(tmp_path / "in.npz", images, [s.targets() for s in samples])
    ref = reference(mmpose_python, tmp_path, "mosaic", batch, f"--centre={centre[0]},{centre[1]}")
    canvas, targets = apply_mosaic(images, [s.targets() for s in samples], draw, side=SIDE)
    assert_same(canvas, targets, ref)
    assert (targets["keypoints_visible"] == 0).sum() > sum((s.keypoints_visible == 0).sum() for s in samples)


def test_mosaic_places_image_k_in_quadrant_k_and_clips_to_the_canvas():
    side = 100
    images = [np.full((side, side, 3), 10 * (k + 1), np.uint8) for k in range(4)]
    targets = [people(1) for _ in range(4)]
    targets[3]["keypoints"][0, 2] = [99.0, 99.0]  # bottom-right image's last keypoint: pasted beyond the canvas
    canvas, moved = apply_mosaic(images, targets, MosaicDraw(centre_xy=(60, 130), partners=(0, 0, 0)), side=side)
    assert canvas.shape == (200, 200, 3)
    assert canvas[129, 59, 0] == 10 and canvas[129, 60, 0] == 20  # top-left | top-right of the centre
    assert canvas[130, 59, 0] == 30 and canvas[130, 60, 0] == 40  # bottom-left | bottom-right
    assert canvas[29, 100, 0] == 114 and canvas[30, 100, 0] == 20  # the top images start 100 px above the centre
    # each image's people move with its paste offset: image 0's top-left is at (60 - 100, 130 - 100)
    np.testing.assert_allclose(moved["bboxes"][0], [0.0, 50.0, 20.0, 120.0])  # x clipped at the left edge
    np.testing.assert_allclose(moved["bboxes"][3], [70.0, 150.0, 120.0, 200.0])  # y clipped at 200
    np.testing.assert_allclose(moved["keypoints"][3, 2], [159.0, 229.0])  # not moved back in: hidden
    assert list(moved["keypoints_visible"][3]) == [1, 1, 0]
    assert list(moved["keypoints_visible"][0]) == [0, 1, 1]  # x = 20 - 40 < 0


def test_mosaic_draw_is_in_range_and_reproducible():
    draws = [draw_mosaic(np.random.default_rng(seed), dataset_size=4, side=SIDE) for seed in range(50)]
    assert all(320 <= c <= 960 for d in draws for c in d.centre_xy)
    assert all(0 <= i < 4 for d in draws for i in d.partners)
    assert draw_mosaic(np.random.default_rng(7), dataset_size=4, side=SIDE) == draws[7]
    with pytest.raises(ValueError, match=r"MosaicDraw.partners: got \(1, 2\)"):
        MosaicDraw(centre_xy=(1, 1), partners=(1, 2))


# ---------------------------------------------------------------- BottomupRandomAffine


@pytest.mark.parity
@pytest.mark.parametrize(
    "draw",
    [
        AffineDraw(shift_xy=(0.07, -0.04), scale=0.8, rotation_deg=8.5, shear_deg=(1.5, -0.7)),
        AffineDraw(shift_xy=(-0.1, 0.1), scale=1.0, rotation_deg=-10.0, shear_deg=(-2.0, 2.0)),
    ],
)
def test_stage1_perspective_equals_mmposes(mmpose_python, tmp_path, dataset, draw):
    """On a mosaic (1280²) as in the pipeline: the same draw gives the same picture, boxes, keypoints, areas."""
    mosaic, targets = mosaic_of(dataset, MosaicDraw(centre_xy=(420, 380), partners=(1, 2, 3)))
    batch = batch_file(tmp_path / "in.npz", [mosaic], [targets])
    fields = dict(shift_xy=draw.shift_xy, scale=draw.scale, rotation_deg=draw.rotation_deg, shear_deg=draw.shear_deg)
    ref = reference(mmpose_python, tmp_path, "random-affine", batch, "--draw", json.dumps(fields))
    canvas, warped = warp(mosaic, targets, perspective_matrix(draw, side=SIDE), side=SIDE)
    assert_same(canvas, warped, ref)
    assert 0 < warped["keypoints_visible"].sum() < targets["keypoints_visible"].sum()  # some left the view


@pytest.mark.parity
@pytest.mark.parametrize("index", [0, 2])  # a portrait and a landscape photo
def test_stage2_fit_equals_mmposes(mmpose_python, tmp_path, dataset, index):
    sample = dataset.samples[index]
    image = sample.load_image()
    batch = batch_file(tmp_path / "in.npz", [image], [sample.targets()])
    ref = reference(mmpose_python, tmp_path, "random-affine", batch, "--stage2")
    matrix = letterbox_matrix(image.shape[1], image.shape[0], side=SIDE)
    canvas, warped = warp(image, sample.targets(), matrix, side=SIDE)
    assert_same(canvas, warped, ref)


def test_identity_draw_is_the_identity_and_the_view_is_the_top_left_square():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2 * 64, 2 * 64, 3), dtype=np.uint8)
    targets = people(2)
    targets["bboxes"][1] = [50.0, 30.0, 100.0, 60.0]  # overhangs the 64 px view on the right
    targets["keypoints"][1, 0] = [70.0, 10.0]
    matrix = perspective_matrix(AffineDraw(), side=64)
    np.testing.assert_array_equal(matrix, np.eye(3))
    canvas, warped = warp(image, targets, matrix, side=64)
    np.testing.assert_array_equal(canvas, image[:64, :64])
    np.testing.assert_allclose(warped["bboxes"], [[10.0, 20.0, 60.0, 64.0], [50.0, 30.0, 64.0, 60.0]])
    np.testing.assert_allclose(warped["keypoints"], targets["keypoints"], atol=1e-5)
    assert warped["keypoints_visible"].tolist() == [[1, 1, 0], [0, 1, 0]]  # y = 85 and x = 70 leave the view
    np.testing.assert_allclose(warped["areas"], targets["areas"])


def test_affine_scale_shrinks_about_the_centre_and_areas_follow():
    targets = people(1)
    matrix = perspective_matrix(AffineDraw(scale=0.5), side=100)
    _, warped = warp(np.zeros((100, 100, 3), np.uint8), targets, matrix, side=100)
    np.testing.assert_allclose(warped["bboxes"][0], [30.0, 35.0, 55.0, 70.0], atol=1e-4)  # 50 + (x - 50) / 2
    np.testing.assert_allclose(warped["areas"], targets["areas"] * 0.25, rtol=1e-6)
    letterbox = letterbox_matrix(200, 100, side=100)  # landscape: long side 200 -> 100, centred vertically
    np.testing.assert_allclose(letterbox, [[0.5, 0.0, 0.0], [0.0, 0.5, 25.0]], atol=1e-6)


def test_affine_draw_stays_in_the_recipes_ranges():
    draws = [draw_affine(np.random.default_rng(seed)) for seed in range(100)]
    assert all(abs(v) <= 0.1 for d in draws for v in d.shift_xy)
    assert all(0.75 <= d.scale <= 1.0 for d in draws) and all(abs(d.rotation_deg) <= 10 for d in draws)
    assert all(abs(v) <= 2.0 for d in draws for v in d.shear_deg)
    assert max(d.rotation_deg for d in draws) > 5 > -5 > min(d.rotation_deg for d in draws)
    with pytest.raises(ValueError, match="AffineDraw.scale: got 0"):
        AffineDraw(scale=0)


# ---------------------------------------------------------------- YOLOXMixUp


@pytest.mark.parity
@pytest.mark.parametrize(
    "draw",
    [
        MixUpDraw(partner=1, jitter=1.37, flip=True, offset_xy=(101, 37)),
        MixUpDraw(partner=1, jitter=0.83, flip=False, offset_xy=(0, 0)),
    ],
)
def test_mixup_equals_mmposes(mmpose_python, tmp_path, dataset, draw):
    """A stage-1 input (the perspective view of a mosaic) mixed with a raw photo and its people."""
    mosaic, targets = mosaic_of(dataset, MosaicDraw(centre_xy=(600, 640), partners=(1, 2, 3)))
    canvas, targets = warp(mosaic, targets, perspective_matrix(AffineDraw(scale=0.9), side=SIDE), side=SIDE)
    partner = dataset.samples[3]
    flip_indices = dataset.keypoint_set.flip_indices
    batch = batch_file(
        tmp_path / "in.npz", [canvas, partner.load_image()], [targets, partner.targets()], flip_indices=flip_indices
    )
    fields = dict(jitter=draw.jitter, flip=draw.flip, offset_xy=list(draw.offset_xy))
    ref = reference(mmpose_python, tmp_path, "mixup", batch, "--draw", json.dumps(fields))
    mixed, merged = apply_mixup(
        canvas, targets, partner.load_image(), partner.targets(), draw, side=SIDE, flip_indices=flip_indices
    )
    assert_same(mixed, merged, ref)
    assert len(merged["bboxes"]) == len(targets["bboxes"]) + len(partner.bboxes)


def test_mixup_averages_the_partner_and_moves_its_people():
    image = np.full((100, 100, 3), 200, np.uint8)
    partner = np.full((50, 100, 3), 100, np.uint8)  # fitted to 100 x 50, the rest 114
    partner_people = people(1)
    draw = MixUpDraw(partner=0, jitter=1.0, flip=False, offset_xy=(0, 0))
    mixed, merged = apply_mixup(image, people(1), partner, partner_people, draw, side=100, flip_indices=np.arange(3))
    assert mixed[10, 10, 0] == 150 and mixed[90, 10, 0] == 157  # (200 + 100) / 2, (200 + 114) / 2 truncated
    np.testing.assert_allclose(merged["bboxes"][1], [10.0, 20.0, 60.0, 90.0])
    flipped = MixUpDraw(partner=0, jitter=2.0, flip=True, offset_xy=(30, 0))
    _, merged = apply_mixup(image, people(1), partner, partner_people, flipped, side=100, flip_indices=[2, 1, 0])
    # scale 2 on a 200 px canvas, mirrored (x -> 199 - x), then 30 px to the left; clipped to the 100 px input
    np.testing.assert_allclose(merged["bboxes"][1], [49.0, 40.0, 100.0, 100.0])
    np.testing.assert_allclose(merged["keypoints"][1, 0], [199 - 110 - 30, 170.0])  # keypoint 2 moved to 0
    assert merged["keypoints_visible"][1].tolist() == [0, 1, 0]  # (59, 170) and (129, 60) are outside
    empty = {key: value[:0] for key, value in people(1).items()}
    same, kept = apply_mixup(image, people(1), partner, empty, draw, side=100, flip_indices=np.arange(3))
    assert same is image and len(kept["bboxes"]) == 1


def test_mixup_draw_fits_the_crop_window():
    for seed in range(50):
        draw = draw_mixup(np.random.default_rng(seed), dataset_size=4, side=SIDE, input_hw=(SIDE, SIDE))
        jittered = int(SIDE * draw.jitter)
        assert 0.8 <= draw.jitter <= 1.6 and 0 <= draw.partner < 4
        assert all(0 <= o <= max(0, jittered - SIDE) for o in draw.offset_xy)


# ---------------------------------------------------------------- FilterAnnotations


@pytest.mark.parity
def test_filter_annotations_equals_mmposes(mmpose_python, tmp_path):
    targets = people(5)
    targets["bboxes"][1] = [600.0, 20.0, 600.0, 90.0]  # clipped flat against the border: no width
    targets["bboxes"][2] = [10.0, 20.0, 11.0, 90.0]  # exactly 1 px wide: not wider than 1
    targets["keypoints_visible"][3] = 0  # every keypoint outside
    image = np.zeros((640, 640, 3), np.uint8)
    ref = reference(mmpose_python, tmp_path, "filter-annotations", batch_file(tmp_path / "in.npz", [image], [targets]))
    kept = filter_annotations(targets)
    assert_same(image, kept, ref)
    assert len(kept["bboxes"]) == 2


def test_filter_annotations_keeps_an_empty_image_empty():
    targets = people(2)
    targets["keypoints_visible"][:] = 0
    kept = filter_annotations(targets)
    assert {key: value.shape[0] for key, value in kept.items()} == dict.fromkeys(kept, 0)
    assert kept["keypoints"].shape == (0, 3, 2)


# ---------------------------------------------------------------- pad to 32, BatchSyncRandomResize


def image_targets(arrays: dict) -> ImageTargets:
    return ImageTargets(**{key: torch.from_numpy(value) for key, value in arrays.items()})


@pytest.mark.parity
def test_batch_resize_equals_mmposes(mmpose_python, tmp_path):
    rng = np.random.default_rng(3)
    images = torch.from_numpy(rng.uniform(0, 255, (2, 3, 640, 640)).astype(np.float32))
    targets = [people(2), people(1)]
    arrays = {"inputs": images.numpy()}
    for i, t in enumerate(targets):
        arrays.update({f"img{i}_{key}": t[key] for key in ("bboxes", "keypoints", "areas")})
    np.savez(tmp_path / "in.npz", **arrays)
    from mmpose_reference import run_reference

    run_reference(
        mmpose_python,
        "batch-resize",
        "--batch",
        str(tmp_path / "in.npz"),
        "--size",
        "544,544",
        "--out",
        str(tmp_path / "out.npz"),
    )
    ref = np.load(tmp_path / "out.npz")
    resized, scaled = resize_batch(images, [image_targets(t) for t in targets], (544, 544))
    assert resized.shape == (2, 3, 544, 544)
    np.testing.assert_allclose(resized.numpy(), ref["inputs"], rtol=0, atol=1e-3)
    for i, t in enumerate(scaled):
        for key in ("bboxes", "keypoints", "areas"):
            np.testing.assert_allclose(getattr(t, key).numpy(), ref[f"img{i}_{key}"], rtol=1e-6, atol=1e-4)


def test_batch_resize_keeps_the_first_batch_then_uses_each_draw():
    resize = BatchSyncRandomResize(size_range=(480, 800))
    rng = np.random.default_rng(0)
    images, targets = torch.zeros(1, 3, 640, 640), [image_targets(people(1))]
    first, first_targets = resize(images, targets, iteration=0, rng=rng)
    assert first.shape[-2:] == (640, 640) and first_targets[0] is targets[0]
    drawn = resize.size_hw
    second, second_targets = resize(images, targets, iteration=1, rng=rng)
    assert second.shape[-2:] == drawn
    factor = drawn[0] / 640
    np.testing.assert_allclose(second_targets[0].bboxes.numpy(), people(1)["bboxes"] * factor, rtol=1e-6)
    np.testing.assert_allclose(second_targets[0].areas.numpy(), people(1)["areas"] * factor**2, rtol=1e-6)
    sizes = {draw_input_size(np.random.default_rng(s), size_range=(480, 800)) for s in range(200)}
    assert sizes == {(32 * n, 32 * n) for n in range(15, 26)}  # 480 ... 800, both ends, multiples of 32
    with pytest.raises(ValueError, match=r"BatchSyncRandomResize.size_range: got \(800, 480\)"):
        BatchSyncRandomResize(size_range=(800, 480))


def test_pad_batch_pads_bottom_right_to_a_multiple_of_32():
    batch = pad_batch([np.full((40, 70, 3), 7, np.uint8), np.full((64, 30, 3), 9, np.uint8)])
    assert batch.shape == (2, 3, 64, 96) and batch.dtype == torch.float32
    assert batch[0, :, :40, :70].eq(7).all() and batch[0, :, 40:].eq(0).all() and batch[0, :, :, 70:].eq(0).all()
    assert batch[1, :, :, :30].eq(9).all()


# ---------------------------------------------------------------- the pipelines


def test_stage1_pipeline_is_reproducible_and_differs_from_stage2(dataset):
    recipe = recipe_for("small", SIDE)
    first = stage1_sample(dataset, 0, np.random.default_rng(5), recipe)
    again = stage1_sample(dataset, 0, np.random.default_rng(5), recipe)
    np.testing.assert_array_equal(first[0], again[0])
    for key in COMPARED:
        np.testing.assert_array_equal(first[1][key], again[1][key])
    # a mosaic of four photos (and a MixUp partner) holds more people than the photo alone
    assert first[0].shape == (SIDE, SIDE, 3) and len(first[1]["bboxes"]) > len(dataset.samples[0].bboxes)
    canvas, targets = stage2_sample(dataset, 0, np.random.default_rng(5), recipe)
    assert canvas.shape == (SIDE, SIDE, 3) and len(targets["bboxes"]) == len(dataset.samples[0].bboxes)


def test_recipes_follow_mmposes_configs_per_size():
    assert recipe_for("small", 640).resize_range == (480, 800) and recipe_for("small", 640).mixup
    tiny = recipe_for("tiny", 416)
    assert tiny.resize_range == (320, 640) and not tiny.mixup  # rtmo-t's config has no YOLOXMixUp
    assert recipe_for("medium", 128).resize_range == (96, 160)


def test_make_batch_gives_tensors_and_targets_per_stage(dataset):
    recipe = recipe_for("tiny", 128)
    for strong in (True, False):
        images, targets = make_batch(dataset, [0, 3], np.random.default_rng(1), recipe, strong=strong)
        assert images.shape == (2, 3, 128, 128) and images.dtype == torch.float32 and len(targets) == 2
        assert all(t.keypoints.shape[1:] == (17, 2) and t.areas.dtype == torch.float32 for t in targets)
        assert all(float(t.keypoints_visible.sum(dim=1).min()) >= 1 for t in targets if len(t))


def test_training_switches_to_the_stage2_pipeline_at_the_yoloxpose_switch(tmp_path, monkeypatch):
    """5 epochs of one batch: Mosaic/affine/MixUp in epochs 1-4, the stage-2 pipeline in epoch 5 (the scaled
    YOLOXPoseModeSwitchHook epoch), and the batches resized to the drawn sizes from the second on (RTMO-t:
    320-640 at 416, so 96-192 at 128)."""
    import io

    from rtmo.train import trainer

    calls, shapes = [], []

    def recording_make_batch(*args, strong: bool):
        calls.append(strong)
        return make_batch(*args, strong=strong)

    real_criterion = trainer.RTMOCriterion.forward

    def recording_forward(self, model, images, targets, *, stage):
        shapes.append(tuple(images.shape[-2:]))
        return real_criterion(self, model, images, targets, stage=stage)

    monkeypatch.setattr(trainer, "make_batch", recording_make_batch)
    monkeypatch.setattr(trainer.RTMOCriterion, "forward", recording_forward)
    options = trainer.TrainOptions(
        annotations=ANNOTATIONS,
        images=PHOTOS,
        out_dir=tmp_path / "run",
        epochs=5,
        batch_size=4,
        input_size=128,
        checkpoint_interval=10**6,
        resume=False,
    )
    trainer.train(options, log=io.StringIO())
    assert calls == [True, True, True, True, False]
    assert shapes[0] == (128, 128) and all(h % 32 == 0 and 96 <= h <= 192 and h == w for h, w in shapes)
