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
@pytest.mark.parametrize(("epochs", "rtmo_switch"), [(5, None), (30, None), (30, 24)])
def test_scaled_schedule_equals_mmengine_running_the_scaled_config(mmpose_python, epochs, rtmo_switch):
    schedule = RecipeSchedule(epochs=epochs, iters_per_epoch=7, rtmo_switch=rtmo_switch)
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


def test_a_moved_rtmo_switch_moves_the_bump_and_both_cosines():
    recipe = RecipeSchedule(epochs=60, iters_per_epoch=1)
    moved = RecipeSchedule(epochs=60, iters_per_epoch=1, rtmo_switch=40)
    assert (moved.rtmo_switch_epoch, moved.bump_end, moved.yoloxpose_switch_epoch) == (40, 41, 58)
    _, first, _, second, _ = moved.as_mmengine_config()
    assert (first["end"], first["T_max"], second["begin"], second["T_max"]) == (40, 40, 41, 18)
    recipe_lrs, moved_lrs = recipe.learning_rates(BASE_LR), moved.learning_rates(BASE_LR)
    # the 2.5x bump sits at the moved switch, not at the recipe's
    assert moved_lrs[40] == pytest.approx(moved_lrs[39] * 2.5, rel=0.05)
    assert moved_lrs[28] < moved_lrs[27]  # still the first cosine where the recipe would bump
    assert recipe_lrs[28] == pytest.approx(recipe_lrs[27] * 2.5, rel=0.05)


def test_a_switch_outside_the_schedule_is_refused_with_the_accepted_epochs():
    with pytest.raises(ValueError, match=r"switch from epoch 2 \(1-based\); accepted for 60 epochs: from epoch 3 "):
        RecipeSchedule(epochs=60, iters_per_epoch=1, rtmo_switch=1)
    with pytest.raises(ValueError, match="to 58"):
        RecipeSchedule(epochs=60, iters_per_epoch=1, rtmo_switch=58)


def test_too_few_epochs_is_refused():
    with pytest.raises(ValueError, match="RecipeSchedule.epochs: got 4"):
        RecipeSchedule(epochs=4, iters_per_epoch=10)
