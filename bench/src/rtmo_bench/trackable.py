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

:func:`trackable_video` is the video it was measured on (``VIDEO``: the photo on a plain wall, 16-pixel steps,
frames 1.5 times the input), and :data:`TRACKING` the tracker's parameters for it: the defaults, but no OKS in the
similarity, as a random keypoint decoder's keypoints are not tied to the picture. :func:`track_video` runs it
through a server, for tests/test_tracking_video.py and ``python -m rtmo_bench.tracking``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from rtmo.build.export import load_model
from rtmo.runtime.preprocess import PAD_VALUE, letterbox
from rtmo_bench.synthetic_video import SyntheticVideo, synthetic_video
from rtmo_contract import TrackingParameters

__all__ = [
    "DETECTION",
    "TRACKING",
    "VIDEO",
    "calibration_frame",
    "track_video",
    "trackable_model",
    "trackable_video",
]

POSITION_DIRECTIONS = 60  # of the tiny model's 96 classifier channels
LOGIT_SPREAD = 4.0  # wider saturates many scores at 1.0, and NMS then keeps an arbitrary one of equals
PEOPLE_FRACTION = 0.05
BOX_CELLS = 4
NMS_IOU_THRESHOLD = 0.3
# The request parameters the model is made for: a person is an anchor above 0.5 that NMS keeps.
DETECTION = {"score_threshold": 0.5, "nms_iou_threshold": NMS_IOU_THRESHOLD}
TRACKING = TrackingParameters(track_oks_weight=0.0)
VIDEO = {"step_px": 16, "wall_px": 24, "scale": 1.5}  # network pixels, but scale
INPUT_SIDE = 416  # of the tiny model the video is made for


def trackable_video(photo: np.ndarray, *, frames: int = 30) -> SyntheticVideo:
    """The ``VIDEO`` pan over ``photo`` (uint8 BGR)."""
    return synthetic_video(photo, frames=frames, side=INPUT_SIDE, **VIDEO)


def calibration_frame(video: SyntheticVideo) -> np.ndarray:
    """The video's first frame as the network sees it (letterboxed to the input side)."""
    return letterbox(video.frames[0], (INPUT_SIDE, INPUT_SIDE))[0]


def track_video(client: Any, video: SyntheticVideo) -> tuple[np.ndarray, list[tuple[np.ndarray, list[int | None]]]]:
    """Frame 0's people (``client.estimate``: detections, not tracks, so the ground truth owes nothing to the
    tracker) and every frame's ``(boxes, track ids)`` from ``client.track``, an ``rtmo_client.Client``'s."""
    truth = _boxes(client.estimate(video.frames[0], channels="bgr", **DETECTION).people)
    results = list(client.track(video.frames, channels="bgr", tracking=TRACKING, **DETECTION))
    if [r.frame_index for r in results] != list(range(len(video.frames))):
        raise RuntimeError(f"track_video: frames came back as {[r.frame_index for r in results]}")
    return truth, [(_boxes(r.people), [p.track_id for p in r.people]) for r in results]


def _boxes(people: Any) -> np.ndarray:
    return np.array([p.box for p in people], np.float64).reshape(-1, 4)


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
