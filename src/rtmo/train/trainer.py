"""The training loop of ``rtmo train``: MMPose's RTMO recipe on one device.

Per iteration: a batch through the stage's data pipeline (``rtmo.train.pipeline``: Mosaic, perspective, MixUp,
HSV, flip in stage 1; the centred fit, HSV, flip from the YOLOX-Pose switch), padded to 32 and randomly resized
(``BatchSyncRandomResize``), ``RTMOCriterion`` at the current stage, backward, gradient clipping at 0.1, AdamW step
with the scheduled lr, EMA update. The stage switches at the scaled epochs of the two mode-switch hooks.
Validation scores the EMA model with the COCO evaluator.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from rtmo.checkpoint_pickle import safe_torch_load
from rtmo.model import RTMO
from rtmo.train.batch_resize import BatchSyncRandomResize
from rtmo.train.checkpoints import initial_model, reinitialised_layers, write_checkpoint
from rtmo.train.criterion import LOSS_TERMS, RTMOCriterion, Stage
from rtmo.train.dataset import CocoKeypointDataset, KeypointSet
from rtmo.train.ema import ExpMomentumEMA
from rtmo.train.optim import AUTO_SCALE_BASE_BATCH, BASE_LR, build_optimizer, clip_gradients
from rtmo.train.pipeline import FLIP_PROB, make_batch, recipe_for
from rtmo.train.schedule import RecipeSchedule

__all__ = ["TrainOptions", "stage_at", "train", "validation_ap"]

LAST, BEST = "last.pth", "best.pth"


@dataclass(frozen=True)
class TrainOptions:
    """What ``rtmo train`` was asked for (see ``rtmo train --help``)."""

    annotations: Path
    images: Path
    out_dir: Path
    source: str = "random:tiny"
    epochs: int = 600
    batch_size: int = 8
    val_annotations: Path | None = None
    val_images: Path | None = None
    val_interval: int = 10
    checkpoint_interval: int = 10  # epochs between last.pth writes (and the last epoch)
    keypoint_spec: Path | None = None
    lr: float = BASE_LR
    auto_scale_lr: bool = False  # MMPose's --auto-scale-lr: lr × batch_size / AUTO_SCALE_BASE_BATCH
    device: str = "cpu"
    seed: int = 0
    flip_prob: float = FLIP_PROB
    strong_augmentation: bool = True  # False: stage 2's pipeline (no Mosaic, affine, MixUp) in every epoch
    random_resize: bool = True  # BatchSyncRandomResize; False: every batch at the input size
    resume: bool = True
    max_iters: int | None = None  # stop early (tests, smoke runs)
    input_size: int | None = None  # training input side; None: the model's (416 tiny, 640 otherwise)
    rtmo_switch_epoch: int | None = None  # 1-based, as the start log prints it; None: the recipe's, scaled
    rtmo_mode_switch: bool = True  # False: as a config without RTMOModeSwitchHook (stage-1 targets and weights)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"TrainOptions.batch_size: got {self.batch_size}; accepted: an integer >= 1")
        if self.checkpoint_interval < 1:
            raise ValueError(
                f"TrainOptions.checkpoint_interval: got {self.checkpoint_interval}; accepted: an integer >= 1"
            )
        if self.val_interval < 1:
            raise ValueError(f"TrainOptions.val_interval: got {self.val_interval}; accepted: an integer >= 1")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"TrainOptions.flip_prob: got {self.flip_prob}; accepted: 0 <= value <= 1")
        if self.input_size is not None and (self.input_size < 64 or self.input_size % 32):
            raise ValueError(f"TrainOptions.input_size: got {self.input_size}; accepted: a multiple of 32, >= 64")
        if (self.val_annotations is None) != (self.val_images is None):
            raise ValueError("TrainOptions.val_annotations / val_images: give both or neither")


def stage_at(epoch: int, schedule: RecipeSchedule, *, rtmo_mode_switch: bool = True) -> Stage:
    stage = Stage()
    if rtmo_mode_switch and epoch >= schedule.rtmo_switch_epoch:
        stage = stage.after_rtmo_switch()
    if epoch >= schedule.yoloxpose_switch_epoch:
        stage = stage.after_yoloxpose_switch()
    return stage


def validation_ap(
    model: RTMO, dataset_path: Path, images: Path, *, input_size: int | None = None
) -> dict[str, float] | None:
    """COCO AP of ``model`` on a keypoint annotation file (17 COCO or 14 CrowdPose keypoints; None otherwise: the
    evaluator knows no other sigmas), the photos letterboxed to ``input_size`` (default: the model's)."""
    import cv2

    from rtmo_client.evaluation import evaluate_results, image_paths, load_annotations

    annotations = load_annotations(dataset_path)
    k = len(annotations.dataset["categories"][0]["keypoints"])
    if k not in (14, 17) or k != model.config.num_keypoints:
        return None
    results = []
    model.eval()
    config = model.config
    model.config = replace(config, input_size=input_size or config.input_size)
    try:
        for image_id, path in image_paths(annotations, images).items():
            poses = model.predict([cv2.imread(str(path))], score_threshold=0.1)[0]
            for box_score, keypoints, scores in zip(poses.box_scores, poses.keypoints, poses.keypoint_scores):
                triplets = np.concatenate([keypoints, scores[:, None]], axis=1).ravel()
                results.append(
                    dict(
                        image_id=image_id, category_id=1, keypoints=[float(v) for v in triplets], score=float(box_score)
                    )
                )
    finally:
        model.config = config
    return evaluate_results(annotations, results)


def train(options: TrainOptions, *, log: TextIO | None = None) -> dict:
    """Run (or resume) a training, logging to ``log`` (stdout by default); returns a summary (losses per
    iteration, validation APs, paths)."""

    def say(message: str) -> None:
        print(message, file=log or sys.stdout, flush=True)

    dataset = CocoKeypointDataset(options.annotations, options.images, keypoint_spec=options.keypoint_spec)
    keypoint_set = dataset.keypoint_set
    if options.val_annotations is not None:
        CocoKeypointDataset(options.val_annotations, options.val_images, keypoint_spec=options.keypoint_spec)
    k = len(keypoint_set.names)
    torch.manual_seed(options.seed)
    model, reinitialised = initial_model(options.source, num_keypoints=k, seed=options.seed)
    if reinitialised:
        say(f"re-initialised for {k} keypoints: {', '.join(reinitialised_layers(reinitialised))}")
    device = torch.device(options.device)
    with torch.no_grad():
        model.head.loss_oks.sigmas.copy_(torch.tensor(keypoint_set.sigmas))
    model.to(device).train()
    iters_per_epoch = math.ceil(len(dataset) / options.batch_size)
    schedule = RecipeSchedule(
        epochs=options.epochs,
        iters_per_epoch=iters_per_epoch,
        rtmo_switch=None if options.rtmo_switch_epoch is None else options.rtmo_switch_epoch - 1,
    )
    lr = options.lr
    if options.auto_scale_lr:
        lr = options.lr * options.batch_size / AUTO_SCALE_BASE_BATCH
        say(f"lr {options.lr:g} scaled to {lr:g} for batch {options.batch_size} (base batch {AUTO_SCALE_BASE_BATCH})")
    optimizer = build_optimizer(model, lr=lr)
    group_lrs = [schedule.learning_rates(g["initial_lr"]) for g in optimizer.param_groups]
    ema = ExpMomentumEMA(model)
    criterion = RTMOCriterion(keypoint_set.sigmas).to(device)
    start_epoch, best_ap, history = 0, -1.0, dict(loss=[], terms=[], val=[])
    last_path, best_path = options.out_dir / LAST, options.out_dir / BEST
    if options.resume and last_path.is_file():
        start_epoch, best_ap, history = _resume(last_path, model, optimizer, ema, device)
        say(f"resumed from {last_path} at epoch {start_epoch}")
    say(
        f"training {len(dataset)} images, {k} keypoints, {options.epochs} epochs × {iters_per_epoch} iterations; "
        + (
            f"RTMO mode switch from epoch {schedule.rtmo_switch_epoch + 1}"
            if options.rtmo_mode_switch
            else f"no RTMO mode switch (the lr bump stays at epoch {schedule.rtmo_switch_epoch + 1})"
        )
        + f", YOLOX-Pose mode switch from epoch {schedule.yoloxpose_switch_epoch + 1}"
    )
    rng = np.random.default_rng(options.seed + start_epoch)
    size = options.input_size or model.config.input_size
    recipe = recipe_for(model.config.backbone_config.size, size, flip_prob=options.flip_prob)
    resize = BatchSyncRandomResize(size_range=recipe.resize_range)
    low, high = recipe.resize_range
    say(
        f"data pipeline: {recipe.steps(strong=options.strong_augmentation)}; from epoch "
        f"{schedule.yoloxpose_switch_epoch + 1}: {recipe.steps(strong=False)}; batches padded to 32"
        + (f", resized within {low}-{high} px" if options.random_resize else "")
    )
    iteration = start_epoch * iters_per_epoch
    for epoch in range(start_epoch, options.epochs):
        stage = stage_at(epoch, schedule, rtmo_mode_switch=options.rtmo_mode_switch)
        order = rng.permutation(len(dataset))
        started = time.perf_counter()
        for batch_index in range(iters_per_epoch):
            if options.max_iters is not None and iteration >= options.max_iters:
                break
            chosen = order[batch_index * options.batch_size :][: options.batch_size]
            # YOLOXPoseModeSwitchHook turns on the aux loss and turns off Mosaic, MixUp and the random affine
            strong = options.strong_augmentation and not stage.use_aux_loss
            images, targets = make_batch(dataset, chosen, rng, recipe, strong=strong)
            if options.random_resize:
                images, targets = resize(images, targets, iteration=iteration, rng=rng)
            for group, lrs in zip(optimizer.param_groups, group_lrs):
                group["lr"] = lrs[iteration]
            model.train()
            step = criterion(model, images.to(device), targets, stage=stage)
            optimizer.zero_grad(set_to_none=True)
            step.total.backward()
            clip_gradients(model)
            optimizer.step()
            ema.update(model)
            iteration += 1
            terms = {name: float(step.terms[name].detach()) for name in LOSS_TERMS if name in step.terms}
            history["loss"].append(float(step.total.detach()))
            history["terms"].append(terms)
            bar = _progress(batch_index + 1, iters_per_epoch)
            say(
                f"epoch {epoch + 1}/{options.epochs} {bar} loss {history['loss'][-1]:.4f} "
                + " ".join(f"{name[5:]} {value:.4f}" for name, value in terms.items())
                + f" lr {optimizer.param_groups[0]['lr']:.2e} positives {step.num_positives}"
            )
        say(f"epoch {epoch + 1} done in {time.perf_counter() - started:.1f} s")
        stopped = options.max_iters is not None and iteration >= options.max_iters
        ap = None
        last_epoch = stopped or epoch + 1 == options.epochs
        if options.val_annotations is not None and ((epoch + 1) % options.val_interval == 0 or last_epoch):
            # at the training side: weights fitted at one scale are measured at that scale
            stats = validation_ap(ema.module, options.val_annotations, options.val_images, input_size=size)
            if stats is None:
                say("validation AP: not computed (the evaluator knows COCO's and CrowdPose's keypoint sets only)")
            else:
                ap = stats["AP"]
                history["val"].append(dict(epoch=epoch + 1, **stats))
                say(f"validation AP {ap:.4f} (epoch {epoch + 1})")
        payload = _payload(ema, keypoint_set, epoch=epoch + 1, iteration=iteration)
        checkpoint_epoch = (epoch + 1) % options.checkpoint_interval == 0 or last_epoch
        # without validation data the latest EMA weights are the best known ones
        if (options.val_annotations is None and checkpoint_epoch) or (ap is not None and ap > best_ap):
            best_ap = best_ap if ap is None else ap
            write_checkpoint(best_path, payload)
        if checkpoint_epoch:
            resume = dict(
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                ema_steps=ema.steps,
                epoch=epoch + 1,
                best_ap=best_ap,
                history=history,
            )
            write_checkpoint(last_path, dict(payload, resume=resume))
        if stopped:
            break
    return dict(history=history, last=last_path, best=best_path, best_ap=best_ap, schedule=schedule)


def _payload(ema: ExpMomentumEMA, keypoint_set: KeypointSet, *, epoch: int, iteration: int) -> dict:
    state = {k: v.detach().float().cpu() if v.is_floating_point() else v.cpu() for k, v in ema.state_dict().items()}
    meta = dict(epoch=epoch, iter=iteration, dataset_meta=keypoint_set.as_dataset_meta(), trained_by="rtmo train")
    return dict(meta=meta, state_dict=state)


def _resume(path: Path, model: RTMO, optimizer: torch.optim.Optimizer, ema: ExpMomentumEMA, device: torch.device):
    checkpoint = safe_torch_load(path)  # on the CPU; load_state_dict moves each tensor where its parameter is
    resume = checkpoint.get("resume")
    if resume is None:
        raise ValueError(f"{path}: no 'resume' entry; accepted: a last.pth written by rtmo train")
    model.load_state_dict(resume["model"])
    optimizer.load_state_dict(resume["optimizer"])
    ema.module.load_state_dict(checkpoint["state_dict"])
    ema.steps = int(resume["ema_steps"])
    return int(resume["epoch"]), float(resume["best_ap"]), resume["history"]


def _progress(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
