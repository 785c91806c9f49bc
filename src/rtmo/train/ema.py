"""ExpMomentumEMA (YOLOX, MMPose's ``EMAHook``): an averaged copy of the model, parameters and buffers.

Update ``t`` (from 0): the first copies the model; later ones move each floating-point entry by
``m_t = (1 − momentum) · exp(−(1 + t) / gamma) + momentum`` towards it: large steps early, ``momentum`` late.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["ExpMomentumEMA"]


class ExpMomentumEMA:
    """EMA of ``model`` (``update_buffers=True``, interval 1), kept as a module of its own (``.module``).

    Args:
        model: the model being trained; deep-copied.
        momentum: the late momentum (RTMO: 2e-4).
        gamma: how fast the early momentum decays, in updates (RTMO: 2000).
    """

    def __init__(self, model: nn.Module, *, momentum: float = 0.0002, gamma: float = 2000.0) -> None:
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"ExpMomentumEMA momentum: got {momentum}; accepted: 0 < momentum < 1")
        if not gamma > 0:
            raise ValueError(f"ExpMomentumEMA gamma: got {gamma}; accepted: > 0")
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.momentum = float(momentum)
        self.gamma = float(gamma)
        self.steps = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        source = model.state_dict()
        averaged = self.module.state_dict()
        if self.steps == 0:
            for key, value in averaged.items():
                value.copy_(source[key])
        else:
            m = (1 - self.momentum) * math.exp(-float(1 + self.steps) / self.gamma) + self.momentum
            for key, value in averaged.items():
                if value.dtype.is_floating_point:
                    value.mul_(1 - m).add_(source[key].to(value.device), alpha=m)
        self.steps += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()
