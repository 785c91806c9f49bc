"""Random-weight checkpoints that find a chosen number of people in a photo: the people-count axis of the serving
benchmark (the keypoint decode costs per person, so crowds are what load the postprocessor).

The classifier's logits are spread (weights × 20000) and shifted by one bias, found by bisection so that
``RTMO.predict`` finds about the asked number of people in the photo; the weights are saved in MMPose's key layout.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import torch

import rtmo

__all__ = ["crowd_checkpoint"]

LOGIT_SPREAD = 20000.0


def crowd_checkpoint(size: str, photo: Path, people: int, path: Path, *, steps: int = 14) -> tuple[Path, int]:
    """Save to ``path`` a ``random:<size>`` RTMO that finds about ``people`` people in ``photo``; returns the path and
    the count found (0 asks for none: the classifier is shifted far below every threshold)."""
    model = rtmo.load_checkpoint(f"random:{size}")
    image = cv2.imread(str(photo))
    convs = model.head.head_module.out_cls
    with torch.no_grad():
        for conv in convs:
            conv.weight.mul_(LOGIT_SPREAD)
    base = [conv.bias.clone() for conv in convs]

    def found(shift: float) -> int:
        with torch.no_grad():
            for conv, bias in zip(convs, base):
                conv.bias.copy_(bias + shift)
        return len(model.predict([image])[0])

    low, high = -200.0, 0.0  # found(low) == 0; found(high) is a crowd of hundreds
    count = found(low)
    if people > 0:
        for _ in range(steps):
            middle = (low + high) / 2
            if found(middle) < people:
                low = middle
            else:
                high = middle
        count = found(high)
    torch.save({"state_dict": model.state_dict()}, path)
    return path, count
