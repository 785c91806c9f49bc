"""Training parity with MMPose, in its reference environment: one iteration on the same weights and batch.

MMPose runs ``BottomupPoseEstimator.loss`` + backward, its config's paramwise AdamW with gradient clipping and its
ExpMomentumEMA (run_reference.py ``train-step``); we run ``rtmo.train`` on the same checkpoint and batch. Both sides
run in float64: with random weights, float32 rounding moves the softmax of sharp DCC heatmaps enough to blur a
1e-5 comparison, in MMPose against itself too. The four stages: before any switch, after RTMOModeSwitchHook
(proxy target, oks 10 / mle 5), after YOLOXPoseModeSwitchHook (L1 box aux loss), and both.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import rtmo
from mmpose_reference import run_reference
from rtmo.head import COCO_SIGMAS
from rtmo.train.criterion import RTMOCriterion, Stage
from rtmo.train.ema import ExpMomentumEMA
from rtmo.train.optim import build_optimizer, clip_gradients
from training_batch import as_targets, batch_npz, letterboxed_batch

pytestmark = [pytest.mark.parity, pytest.mark.slow]

PHOTOS = ["000000196141.jpg", "000000197388.jpg"]  # five people each, some without labelled keypoints
STAGES = {
    "stage1": Stage(),
    "rtmo-switch": Stage().after_rtmo_switch(),
    "yoloxpose-switch": Stage().after_yoloxpose_switch(),
    "both-switches": Stage().after_rtmo_switch().after_yoloxpose_switch(),
}
SWITCH_FLAGS = {
    "stage1": [],
    "rtmo-switch": ["--rtmo-switch"],
    "yoloxpose-switch": ["--yoloxpose-switch"],
    "both-switches": ["--rtmo-switch", "--yoloxpose-switch"],
}
LR = 0.004


@pytest.fixture(scope="module")
def batch():
    return letterboxed_batch(PHOTOS, 416)


@pytest.fixture(scope="module")
def run_pair(mmpose_python, mmpose_checkpoint, batch, tmp_path_factory):
    """``stage -> (stage, MMPose's train-step output, our model after backward, our TrainingStep, our EMA)``."""
    done = {}

    def run(stage: str):
        if stage not in done:
            done[stage] = _run_pair(stage, mmpose_python, mmpose_checkpoint, batch, tmp_path_factory)
        return done[stage]

    return run


@pytest.fixture(scope="module", params=list(STAGES))
def step_pair(request, run_pair):
    return run_pair(request.param)


def _run_pair(stage, mmpose_python, mmpose_checkpoint, batch, tmp_path_factory):
    checkpoint, _ = mmpose_checkpoint("body7", "t")
    tmp = tmp_path_factory.mktemp(f"train-{stage}")
    inputs, targets = batch
    np.savez(tmp / "batch.npz", **batch_npz(inputs, targets))
    run_reference(
        mmpose_python,
        "train-step",
        "--dataset",
        "body7",
        "--size",
        "t",
        "--checkpoint",
        str(checkpoint),
        "--batch",
        str(tmp / "batch.npz"),
        "--out",
        str(tmp / "ref.npz"),
        "--float64",
        "--lr",
        str(LR),
        *SWITCH_FLAGS[stage],
    )
    with np.load(tmp / "ref.npz") as data:
        ref = {k: data[k] for k in data.files}
    model = rtmo.load_checkpoint(checkpoint).double().train()
    ema = ExpMomentumEMA(model)
    ema.update(model)  # the first update copies, before the iteration (as MMPose's harness does)
    criterion = RTMOCriterion(COCO_SIGMAS)
    step = criterion(
        model,
        torch.from_numpy(inputs).double(),
        [as_targets(t) for t in targets],
        stage=STAGES[stage],
    )
    step.total.backward()
    return stage, ref, model, step, ema


def test_assignment_equals_mmpose(step_pair):
    _, ref, _, step, _ = step_pair
    assert step.num_positives >= 10  # at least one prior for each of the ten people
    for i, assignment in enumerate(step.assignments):
        np.testing.assert_array_equal(assignment.gt_index.numpy() + 1, ref[f"img{i}_gt_inds"])
        positive = ref[f"img{i}_gt_inds"] > 0
        np.testing.assert_allclose(
            assignment.overlap.numpy()[positive], ref[f"img{i}_max_overlaps"][positive], rtol=1e-6
        )


def test_every_loss_term_matches_mmpose(step_pair):
    name, ref, _, step, _ = step_pair
    expected = {k for k in ref if k.startswith("loss_")}
    assert set(step.terms) == expected
    assert ("loss_bbox_aux" in expected) == ("yoloxpose" in name or "both" in name)
    for term, value in step.terms.items():
        np.testing.assert_allclose(float(value.detach()), float(ref[term]), rtol=1e-5, err_msg=term)
    np.testing.assert_allclose(float(step.total.detach()), float(ref["loss"]), rtol=1e-5)


def test_gradient_of_every_parameter_matches_mmpose(step_pair):
    _, ref, model, _, _ = step_pair
    compared = 0
    # Some gradients are structurally zero (a BatchNorm bias feeding another BatchNorm): rounding noise around 0
    # is measured against the largest gradient of the model instead.
    floor = 1e-8 * max(float(np.abs(v).max()) for k, v in ref.items() if k.startswith("grad/"))
    for name, param in model.named_parameters():
        key = f"grad/{name}"
        if param.grad is None:
            assert key not in ref, f"{name}: MMPose has a gradient, we have none"
            continue
        want = ref[key]
        scale = max(float(np.abs(want).max()), floor)
        assert float(np.abs(param.grad.numpy() - want).max()) <= 1e-4 * scale, name
        compared += 1
    assert compared == sum(k.startswith("grad/") for k in ref) > 100


def test_one_adamw_step_and_ema_update_match_mmpose(run_pair):
    """The optimizer and the EMA do not depend on the stage: checked once, after the stage-1 backward."""
    _, ref, model, _, ema = run_pair("stage1")
    optimizer = build_optimizer(model, lr=LR)
    ours = [
        dict(
            params=[n for n, p in model.named_parameters() if any(p is q for q in g["params"])],
            lr=g["lr"],
            weight_decay=g["weight_decay"],
        )
        for g in optimizer.param_groups
    ]
    assert _grouping(ours) == _grouping(json.loads(str(ref["param_groups"])))
    # The first AdamW step is about lr·g/(|g| + eps): for gradients near eps it amplifies the 1e-4 gradient
    # tolerance above, so the optimizer is judged on MMPose's own gradients.
    for param_name, param in model.named_parameters():
        param.grad = torch.from_numpy(ref[f"grad/{param_name}"]).clone()
    clip_gradients(model)
    optimizer.step()
    for param_name, param in model.named_parameters():
        np.testing.assert_allclose(
            param.detach().numpy(), ref[f"step/{param_name}"], rtol=1e-7, atol=1e-10, err_msg=param_name
        )
    ema.update(model)
    for key, value in ema.state_dict().items():
        np.testing.assert_allclose(value.numpy(), ref[f"ema/{key}"], rtol=1e-7, atol=1e-10, err_msg=key)


def _grouping(groups: list[dict]) -> dict[str, tuple[float, float]]:
    return {n: (round(g["lr"], 12), round(g["weight_decay"], 12)) for g in groups for n in g["params"]}
