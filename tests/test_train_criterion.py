"""RTMOCriterion on batches MMPose's own loss cannot take."""

from __future__ import annotations

import torch

from rtmo.checkpoint import load_checkpoint
from rtmo.head import COCO_SIGMAS
from rtmo.train.criterion import RTMOCriterion, Stage
from rtmo.train.targets import ImageTargets
from training_batch import letterboxed_batch


def test_a_batch_with_a_single_positive_trains_with_the_running_statistics():
    """One person, one matched prior: BatchNorm1d has no batch statistics of one row (MMPose raises there and the run
    ends); the DCC then uses its running statistics, the losses stay finite and the running statistics untouched."""
    canvases, arrays = letterboxed_batch(["000000000785.jpg"], 128)
    targets = [ImageTargets(**{k: torch.from_numpy(v) for k, v in a.items()}) for a in arrays]
    torch.manual_seed(0)
    model = load_checkpoint("random:tiny").train()
    norm = model.head.dcc.pose_to_kpts[1]
    running_mean = norm.running_mean.clone()
    step = RTMOCriterion(COCO_SIGMAS)(model, torch.from_numpy(canvases), targets, stage=Stage().after_rtmo_switch())
    assert step.num_positives == 1
    assert torch.isfinite(step.total) and "loss_mle" in step.terms
    step.total.backward()
    assert norm.training and torch.equal(norm.running_mean, running_mean)
    assert model.head.dcc.pose_to_kpts[0].weight.grad.abs().sum() > 0
