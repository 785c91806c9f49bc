"""The learning-rate schedule against MMEngine's own schedulers (reference environment), and its scaling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmpose_reference import run_reference
from rtmo.train.optim import BASE_LR, ENCODER_LR_MULT
from rtmo.train.schedule import RecipeSchedule

BASE_LRS = (BASE_LR, BASE_LR * ENCODER_LR_MULT)  # the encoder's base lr sits at the cosine's minimum


def mmengine_lrs(python, epochs: int, iters: int, schedule: list[dict] | None) -> dict:
    return run_reference(
        python,
        "lr-schedule",
        "--dataset",
        "body7",
        "--size",
        "t",
        "--epochs",
        str(epochs),
        "--iters-per-epoch",
        str(iters),
        "--base-lrs",
        ",".join(map(str, BASE_LRS)),
        *(["--schedule", json.dumps(schedule)] if schedule is not None else []),
    )


@pytest.mark.parity
def test_600_epochs_is_mmposes_configured_schedule(mmpose_python):
    schedule = RecipeSchedule(epochs=600, iters_per_epoch=2)
    ref = mmengine_lrs(mmpose_python, 600, 2, None)
    assert schedule.as_mmengine_config() == ref["configured"]
    assert (schedule.rtmo_switch_epoch, schedule.yoloxpose_switch_epoch) == (280, 580)
    for base, want in zip(BASE_LRS, ref["lrs"]):
        np.testing.assert_allclose(schedule.learning_rates(base), want, rtol=1e-12)


@pytest.mark.parity
@pytest.mark.parametrize("epochs", [5, 30])
def test_scaled_schedule_equals_mmengine_running_the_scaled_config(mmpose_python, epochs):
    schedule = RecipeSchedule(epochs=epochs, iters_per_epoch=7)
    ref = mmengine_lrs(mmpose_python, epochs, 7, schedule.as_mmengine_config())
    for base, want in zip(BASE_LRS, ref["lrs"]):
        np.testing.assert_allclose(schedule.learning_rates(base), want, rtol=1e-12)


def test_switch_epochs_scale_with_the_epochs():
    assert (RecipeSchedule(epochs=60, iters_per_epoch=1).rtmo_switch_epoch) == 28
    assert (RecipeSchedule(epochs=60, iters_per_epoch=1).yoloxpose_switch_epoch) == 58
    short = RecipeSchedule(epochs=5, iters_per_epoch=1)
    assert short.warmup_end < short.rtmo_switch_epoch < short.bump_end < short.yoloxpose_switch_epoch < 5
    lrs = short.learning_rates(BASE_LR)
    assert len(lrs) == 5 and max(lrs) <= BASE_LR * 2.5


def test_too_few_epochs_is_refused():
    with pytest.raises(ValueError, match="RecipeSchedule.epochs: got 4"):
        RecipeSchedule(epochs=4, iters_per_epoch=10)
