"""Random-weight RTMOs whose people keep a well-defined identity when the camera pans: for tracking tests and the
tracking benchmark (no trained weights can be downloaded).

The calibrated random model of the other tests (``tests/rtmo_serving.py``) finds people everywhere: its scores are
mostly a pattern of position (the image border seen through the zero padding of every convolution, the neck's
positional encoding), its boxes are one anchor cell, and its people sit one stride apart, so a shift of the
picture moves each onto its neighbour's place. Measured on ``synthetic_video`` pans, three changes, all on the
head's output convolutions, make people content-bound, sparse and large:

1. **People at the stride-16 level only** (the stride-32 classifier is switched off). Its scores follow the content
   to within a few per cent when the picture moves by 16 pixels; the stride-32 level's (after the neck's
   transformer) hardly do.
2. **A classifier blind to position**: its random weights, less their part along the ``POSITION_DIRECTIONS``
   feature directions along which a plain frame's features vary most (its principal components), so a plain wall
   scores the same everywhere and only the photo makes peaks. The logits are then spread to ``LOGIT_SPREAD``
   (standard deviation over the calibration frame's anchors) and shifted so that its best ``PEOPLE_FRACTION``
   anchors score above 0.5.
3. **Boxes of ``BOX_CELLS`` cells a side** (a bias on the box regressor's log-size), so that with
   ``nms_iou_threshold=NMS_IOU_THRESHOLD`` the people left are a few cells apart, and a 16-pixel step keeps a
   person's box overlapping its own last box more than any neighbour's.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rtmo.build.export import load_model
from rtmo.runtime.preprocess import PAD_VALUE

__all__ = ["BOX_CELLS", "NMS_IOU_THRESHOLD", "SCORE_THRESHOLD", "trackable_model"]

POSITION_DIRECTIONS = 60  # of the tiny model's 96 classifier channels
LOGIT_SPREAD = 4.0  # wider saturates many scores at 1.0, and NMS then keeps an arbitrary one of equals
PEOPLE_FRACTION = 0.05
BOX_CELLS = 4
# The request parameters the model is made for: a person is an anchor above 0.5 that NMS keeps.
SCORE_THRESHOLD = 0.5
NMS_IOU_THRESHOLD = 0.3


def trackable_model(calibration: np.ndarray, *, size: str = "tiny") -> torch.nn.Module:
    """A ``random:<size>`` RTMO made as the module says, calibrated on ``calibration``: a network-input frame
    (uint8 BGR, input side x input side, e.g. the letterbox of a video's first frame)."""
    model, _ = load_model(f"random:{size}")
    side = model.config.input_size
    if calibration.shape != (side, side, 3) or calibration.dtype != np.uint8:
        raise ValueError(
            f"calibration: got {calibration.dtype} {calibration.shape}; accepted: uint8 ({side}, {side}, 3), "
            "a network-input frame"
        )
    head = model.head.head_module
    stride16, stride32 = head.out_cls
    blank = _classifier_features(model, np.full_like(calibration, PAD_VALUE))
    directions = torch.linalg.svd(blank - blank.mean(dim=1, keepdim=True), full_matrices=False)[0]
    directions = directions[:, :POSITION_DIRECTIONS]
    weights = stride16.weight.detach().double().reshape(-1)
    weights = weights - directions @ (directions.T @ weights)
    logits = weights @ _classifier_features(model, calibration)
    scale = LOGIT_SPREAD / float(logits.std())
    threshold = float(torch.quantile(logits, 1.0 - PEOPLE_FRACTION))
    with torch.no_grad():
        stride16.weight.copy_((weights * scale).reshape(stride16.weight.shape).float())
        stride16.bias.fill_(-threshold * scale)
        stride32.weight.zero_()
        stride32.bias.fill_(-100.0)
        head.out_bbox[0].bias[2:].add_(math.log(BOX_CELLS))  # (w, h) = exp(delta) * stride
    return model.eval()


def _classifier_features(model: torch.nn.Module, frame: np.ndarray) -> torch.Tensor:
    """The stride-16 classifier's input features for one network-input frame, (channels, anchors) float64."""
    captured: list[torch.Tensor] = []
    hook = model.head.head_module.out_cls[0].register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0]))
    try:
        with torch.no_grad():
            model(torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float())
    finally:
        hook.remove()
    return captured[0][0].flatten(1).double()
