"""RTMO's optimizer: AdamW with MMPose's parameter-wise settings, and its gradient clipping.

``ForceDefaultOptimWrapperConstructor`` with ``norm_decay_mult=0, bias_decay_mult=0, force_default_settings=True``
and ``custom_keys={'neck.encoder': lr_mult 0.05}``: no weight decay on normalisation layers or on any parameter
named ``bias``; parameters under ``neck.encoder`` learn at 5 % of the rate (and follow the same decay rules).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "AUTO_SCALE_BASE_BATCH",
    "BASE_LR",
    "ENCODER_LR_MULT",
    "GRAD_CLIP_MAX_NORM",
    "WEIGHT_DECAY",
    "build_optimizer",
    "clip_gradients",
]

BASE_LR = 0.004
WEIGHT_DECAY = 0.05
ENCODER_LR_MULT = 0.05
ENCODER_PREFIX = "neck.encoder"
GRAD_CLIP_MAX_NORM = 0.1
# the recipe's batch (8 GPUs × 32), to which its lr belongs: the config's auto_scale_lr base_batch_size
AUTO_SCALE_BASE_BATCH = 256
# The layer types MMEngine treats as normalisation (``_BatchNorm, _InstanceNorm, GroupNorm, LayerNorm``).
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def parameter_settings(model: nn.Module, *, lr: float, weight_decay: float) -> dict[str, tuple[float, float]]:
    """``name -> (lr, weight_decay)`` for every trainable parameter."""
    settings: dict[str, tuple[float, float]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, _NORMS)
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            full_name = f"{module_name}.{name}" if module_name else name
            param_lr = lr * ENCODER_LR_MULT if ENCODER_PREFIX in f"{module_name}.{name}" else lr
            decay = 0.0 if is_norm or name == "bias" else weight_decay
            settings[full_name] = (param_lr, decay)
    return settings


def build_optimizer(model: nn.Module, *, lr: float = BASE_LR, weight_decay: float = WEIGHT_DECAY) -> torch.optim.AdamW:
    """AdamW over ``model``'s parameters, one group per (lr, weight decay) setting; each group's ``initial_lr``
    is what the schedule scales."""
    if not lr > 0:
        raise ValueError(f"build_optimizer lr: got {lr}; accepted: a number > 0")
    params = dict(model.named_parameters())
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, setting in parameter_settings(model, lr=lr, weight_decay=weight_decay).items():
        groups.setdefault(setting, []).append(params[name])
    optimizer = torch.optim.AdamW(
        [dict(params=p, lr=group_lr, weight_decay=decay) for (group_lr, decay), p in groups.items()],
        lr=lr,
        weight_decay=weight_decay,
    )
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return optimizer


def clip_gradients(model: nn.Module, *, max_norm: float = GRAD_CLIP_MAX_NORM) -> torch.Tensor:
    """Clip the global L2 norm of the gradients to ``max_norm``; returns the norm before clipping."""
    params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    return torch.nn.utils.clip_grad_norm_(params, max_norm=max_norm, norm_type=2)
