"""RTMO's training data pipeline per stage, in MMPose's order (``rtmo-*_coco-640x640.py``):

- stage 1: Mosaic → BottomupRandomAffine (perspective) → YOLOXMixUp (not in the tiny recipe) →
  YOLOXHSVRandomAug → RandomFlip → FilterAnnotations;
- stage 2 (from the YOLOXPoseModeSwitchHook epoch): BottomupRandomAffine without its random parts (long side to
  S, centred) → YOLOXHSVRandomAug → RandomFlip → FilterAnnotations.

Then, per batch: pad to 32 and BatchSyncRandomResize (``rtmo.train.batch_resize``). GenerateTarget's
``YOLOXPoseAnnotationProcessor`` only renames fields here (``Targets`` already are ``ImageTargets``' fields), and
stage 2's ``BottomupGetHeatmapMask`` feeds no RTMO loss, so neither is a step. Every draw comes from one numpy
Generator, so a run is reproducible from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rtmo.train.affine import draw_affine, letterbox_matrix, perspective_matrix, warp
from rtmo.train.augment import Targets, apply_hsv, filter_annotations, flip_horizontally, hsv_gains
from rtmo.train.batch_resize import pad_batch
from rtmo.train.dataset import CocoKeypointDataset
from rtmo.train.mixup import apply_mixup, draw_mixup
from rtmo.train.mosaic import apply_mosaic, draw_mosaic
from rtmo.train.targets import ImageTargets

__all__ = ["FLIP_PROB", "PipelineRecipe", "make_batch", "recipe_for", "stage1_sample", "stage2_sample"]

FLIP_PROB = 0.5  # RandomFlip's default, which the recipe keeps


@dataclass(frozen=True)
class PipelineRecipe:
    """The pipeline's settings for one model size and input side S."""

    side: int
    mixup: bool = True
    resize_range: tuple[int, int] = (480, 800)
    flip_prob: float = FLIP_PROB

    def __post_init__(self) -> None:
        if self.side < 32:
            raise ValueError(f"PipelineRecipe.side: got {self.side}; accepted: an integer >= 32")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"PipelineRecipe.flip_prob: got {self.flip_prob}; accepted: 0 <= value <= 1")

    def steps(self, *, strong: bool) -> str:
        """The per-image steps of stage 1 (``strong``) or stage 2, for the log."""
        geometry = ("Mosaic, perspective" + (", MixUp" if self.mixup else "")) if strong else "centred fit"
        return f"{geometry}, HSV, flip {self.flip_prob:g}, filter ({self.side} px)"


def recipe_for(size_name: str, side: int, *, flip_prob: float = FLIP_PROB) -> PipelineRecipe:
    """MMPose's settings: RTMO-t (416) without MixUp and resized within 320–640, the others within 480–800 at
    640; another side scales the range with it."""
    low, high, reference = (320, 640, 416) if size_name == "tiny" else (480, 800, 640)
    resize_range = (round(low * side / reference), round(high * side / reference))
    return PipelineRecipe(side=side, mixup=size_name != "tiny", resize_range=resize_range, flip_prob=flip_prob)


def stage1_sample(
    dataset: CocoKeypointDataset, index: int, rng: np.random.Generator, recipe: PipelineRecipe
) -> tuple[np.ndarray, Targets]:
    """Sample ``index`` through the stage-1 pipeline: (S, S, 3) uint8 and its people."""
    side = recipe.side
    mosaic = draw_mosaic(rng, dataset_size=len(dataset), side=side)
    # partners are read afresh from the dataset, as MMPose's Mosaic does without a cache
    quartet = [dataset.samples[i] for i in (index, *mosaic.partners)]
    canvas, targets = apply_mosaic([s.load_image() for s in quartet], [s.targets() for s in quartet], mosaic, side=side)
    canvas, targets = warp(canvas, targets, perspective_matrix(draw_affine(rng), side=side), side=side)
    if recipe.mixup:
        mixup = draw_mixup(rng, dataset_size=len(dataset), side=side, input_hw=canvas.shape[:2])
        partner = dataset.samples[mixup.partner]
        canvas, targets = apply_mixup(
            canvas,
            targets,
            partner.load_image(),
            partner.targets(),
            mixup,
            side=side,
            flip_indices=dataset.keypoint_set.flip_indices,
        )
    return _photometric_flip_filter(canvas, targets, rng, recipe, dataset.keypoint_set.flip_indices)


def stage2_sample(
    dataset: CocoKeypointDataset, index: int, rng: np.random.Generator, recipe: PipelineRecipe
) -> tuple[np.ndarray, Targets]:
    """Sample ``index`` through the stage-2 pipeline: (S, S, 3) uint8 and its people."""
    sample = dataset.samples[index]
    image = sample.load_image()
    matrix = letterbox_matrix(image.shape[1], image.shape[0], side=recipe.side)
    canvas, targets = warp(image, sample.targets(), matrix, side=recipe.side)
    return _photometric_flip_filter(canvas, targets, rng, recipe, dataset.keypoint_set.flip_indices)


def make_batch(
    dataset: CocoKeypointDataset,
    indices: list[int],
    rng: np.random.Generator,
    recipe: PipelineRecipe,
    *,
    strong: bool,
) -> tuple[torch.Tensor, list[ImageTargets]]:
    """The batch of ``indices`` through stage 1's pipeline (``strong``) or stage 2's, padded to 32: (B, 3, H, W)
    float32 BGR 0–255 and each image's targets."""
    sample = stage1_sample if strong else stage2_sample
    canvases, targets = [], []
    for index in indices:
        canvas, arrays = sample(dataset, int(index), rng, recipe)
        canvases.append(canvas)
        targets.append(ImageTargets(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}))
    return pad_batch(canvases), targets


def _photometric_flip_filter(
    canvas: np.ndarray, targets: Targets, rng: np.random.Generator, recipe: PipelineRecipe, flip_indices: np.ndarray
) -> tuple[np.ndarray, Targets]:
    canvas = apply_hsv(canvas, hsv_gains(rng))
    if rng.random() < recipe.flip_prob:
        canvas, targets = flip_horizontally(canvas, targets, flip_indices)
    return canvas, filter_annotations(targets)
