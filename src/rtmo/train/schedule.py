"""RTMO's learning-rate schedule, scaled to any number of epochs, computed as MMEngine's schedulers compute it.

The 600-epoch recipe: quadratic warm-up for 5 epochs; cosine towards 2e-4 (T_max 280) until epoch 280, where the
RTMO mode switch happens; ×2.5 there (ConstantLR for one epoch, whose undoing step falls outside its range, so
the bumped lr stays); cosine again (T_max 300) from the bumped lr until 20 epochs before the end, where the
YOLOX-Pose mode switch happens; constant to the end. For ``epochs`` other than 600 every boundary scales by
``epochs / 600`` (rounded, each phase at least one epoch). The RTMO switch can be moved (``rtmo_switch``, as an
MMPose config moves its hook's epoch and the schedule's boundaries with it): the first cosine then ends there with
T_max at the switch, as the recipe's does, and the second spans from it to the YOLOX-Pose switch.

MMEngine's schedulers are *chainable*: each step rewrites the current lr from its previous value. The values here
follow the same recursions (the closed forms differ in the last bits, and the first cosine never reaches its
minimum because its T_max exceeds its length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RECIPE_EPOCHS", "RecipeSchedule"]

RECIPE_EPOCHS = 600
ETA_MIN = 0.0002
BUMP_FACTOR = 2.5


@dataclass(frozen=True)
class RecipeSchedule:
    """The recipe's phases for ``epochs`` epochs of ``iters_per_epoch`` iterations.

    Args:
        epochs: total epochs (>= 5: warm-up, first cosine, bump, second cosine, last stage).
        iters_per_epoch: optimizer steps per epoch (>= 1).
        rtmo_switch: the epoch (0-based) of the RTMO mode switch instead of the scaled recipe's; it needs the warm-up
            before it and the bump, the second cosine and the last stage after it.
    """

    epochs: int
    iters_per_epoch: int
    rtmo_switch: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 5:
            raise ValueError(
                f"RecipeSchedule.epochs: got {self.epochs!r}; accepted: an integer >= 5 "
                "(warm-up, first cosine, bump, second cosine and the last stage need an epoch each)"
            )
        if not isinstance(self.iters_per_epoch, int) or self.iters_per_epoch < 1:
            raise ValueError(f"RecipeSchedule.iters_per_epoch: got {self.iters_per_epoch!r}; accepted: an integer >= 1")
        if self.rtmo_switch is not None:
            low, high = self.warmup_end + 1, self.epochs - 3
            if not isinstance(self.rtmo_switch, int) or not low <= self.rtmo_switch <= high:
                shown = self.rtmo_switch + 1 if isinstance(self.rtmo_switch, int) else self.rtmo_switch
                raise ValueError(
                    f"RecipeSchedule.rtmo_switch: the RTMO mode switch from epoch {shown!r} (1-based); accepted for "
                    f"{self.epochs} epochs: from epoch {low + 1} (after the warm-up) to {high + 1} (the bump, the "
                    "second cosine and the last stage come after it)"
                )

    def _scaled(self, recipe_epochs: int) -> int:
        return max(1, round(recipe_epochs * self.epochs / RECIPE_EPOCHS))

    @property
    def warmup_end(self) -> int:
        return min(self._scaled(5), self.epochs - 4)

    @property
    def rtmo_switch_epoch(self) -> int:
        """Epoch (0-based) from which the proxy target and new loss weights apply (280 of 600)."""
        if self.rtmo_switch is not None:
            return self.rtmo_switch
        return min(max(self._scaled(280), self.warmup_end + 1), self.epochs - 3)

    @property
    def bump_end(self) -> int:
        return self.rtmo_switch_epoch + 1

    @property
    def yoloxpose_switch_epoch(self) -> int:
        """Epoch (0-based) from which augmentation stops and the aux loss applies (580 of 600)."""
        return max(self.epochs - self._scaled(20), self.bump_end + 1)

    @property
    def first_cosine_t_max(self) -> int:
        return self._scaled(280) if self.rtmo_switch is None else self.rtmo_switch

    @property
    def second_cosine_t_max(self) -> int:
        return self._scaled(300) if self.rtmo_switch is None else self.yoloxpose_switch_epoch - self.rtmo_switch

    def as_mmengine_config(self) -> list[dict]:
        """The schedule as MMPose's ``param_scheduler`` config, with these boundaries (the parity tests feed it to
        MMEngine)."""
        return [
            dict(type="QuadraticWarmupLR", by_epoch=True, begin=0, end=self.warmup_end, convert_to_iter_based=True),
            dict(
                type="CosineAnnealingLR",
                eta_min=ETA_MIN,
                begin=self.warmup_end,
                T_max=self.first_cosine_t_max,
                end=self.rtmo_switch_epoch,
                by_epoch=True,
                convert_to_iter_based=True,
            ),
            dict(type="ConstantLR", by_epoch=True, factor=BUMP_FACTOR, begin=self.rtmo_switch_epoch, end=self.bump_end),
            dict(
                type="CosineAnnealingLR",
                eta_min=ETA_MIN,
                begin=self.bump_end,
                T_max=self.second_cosine_t_max,
                end=self.yoloxpose_switch_epoch,
                by_epoch=True,
                convert_to_iter_based=True,
            ),
            dict(type="ConstantLR", by_epoch=True, factor=1, begin=self.yoloxpose_switch_epoch, end=self.epochs),
        ]

    def learning_rates(self, base_lr: float) -> list[float]:
        """The lr of every iteration (``epochs × iters_per_epoch`` values) for a group whose base lr is
        ``base_lr``."""
        n = self.iters_per_epoch
        phases = [
            _QuadraticWarmup(begin=0, end=self.warmup_end * n),
            _Cosine(begin=self.warmup_end * n, end=self.rtmo_switch_epoch * n, t_max=self.first_cosine_t_max * n),
            _Constant(begin=self.rtmo_switch_epoch, end=self.bump_end, factor=BUMP_FACTOR, by_epoch=True),
            _Cosine(begin=self.bump_end * n, end=self.yoloxpose_switch_epoch * n, t_max=self.second_cosine_t_max * n),
            _Constant(begin=self.yoloxpose_switch_epoch, end=self.epochs, factor=1.0, by_epoch=True),
        ]
        lr = base_lr
        for phase in phases:  # constructing an MMEngine scheduler takes its step 0
            lr = phase.step(lr, base_lr)
        lrs = []
        for _epoch in range(self.epochs):
            for _ in range(n):
                lrs.append(lr)
                for phase in phases:
                    if not phase.by_epoch:
                        lr = phase.step(lr, base_lr)
            for phase in phases:
                if phase.by_epoch:
                    lr = phase.step(lr, base_lr)
        return lrs


class _Phase:
    """One chainable scheduler: counts its global steps, changes the lr while ``begin <= step < end``."""

    by_epoch = False

    def __init__(self, *, begin: int, end: int) -> None:
        self.begin, self.end = begin, end
        self.global_step = -1
        self.last_step = -1

    def step(self, lr: float, base_lr: float) -> float:
        self.global_step += 1
        if self.begin <= self.global_step < self.end:
            self.last_step += 1
            return self.value(lr, base_lr)
        return lr

    def value(self, lr: float, base_lr: float) -> float:
        raise NotImplementedError


class _QuadraticWarmup(_Phase):
    def value(self, lr: float, base_lr: float) -> float:
        total = self.end - self.begin
        increment = base_lr * (2 * self.last_step + 1) / total**2
        return increment if self.last_step == 0 else lr + increment


class _Cosine(_Phase):
    def __init__(self, *, begin: int, end: int, t_max: int) -> None:
        super().__init__(begin=begin, end=end)
        self.t_max = t_max

    def value(self, lr: float, base_lr: float) -> float:
        t, t_max = self.last_step, self.t_max
        if t == 0:
            return lr
        if (t - 1 - t_max) % (2 * t_max) == 0:
            return lr + (base_lr - ETA_MIN) * (1 - math.cos(math.pi / t_max)) / 2
        return (1 + math.cos(math.pi * t / t_max)) / (1 + math.cos(math.pi * (t - 1) / t_max)) * (
            lr - ETA_MIN
        ) + ETA_MIN


class _Constant(_Phase):
    def __init__(self, *, begin: int, end: int, factor: float, by_epoch: bool) -> None:
        super().__init__(begin=begin, end=end)
        self.factor = factor
        self.by_epoch = by_epoch

    def value(self, lr: float, base_lr: float) -> float:
        total = self.end - self.begin - 1
        if self.last_step == 0:
            return lr * self.factor
        if self.last_step == total:
            return lr * (1.0 / self.factor)
        return lr
