"""The RTMO network (``RTMO``) and its end-to-end ``predict``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from rtmo.backbone import CSPDarknet
from rtmo.candidates import CandidateNet, to_numpy
from rtmo.config import RTMOConfig
from rtmo.head import HeadOutputs, RTMOHead
from rtmo.keypoint_decoder import KeypointDecoder
from rtmo.neck import HybridEncoder
from rtmo.runtime.postprocess import Candidates, Poses, people
from rtmo.runtime.preprocess import letterbox
from rtmo_contract import RENAMED_PARAMETERS, RequestParameters

__all__ = ["RTMO"]


class RTMO(nn.Module):
    """RTMO one-stage multi-person pose estimator, MMPose-compatible.

    Args:
        config: model configuration (random weights; ``rtmo.checkpoint`` loads trained ones, and the YOLOX backbone
            MMPose's training starts from).
    """

    def __init__(self, config: RTMOConfig | None = None) -> None:
        super().__init__()
        self.config = config or RTMOConfig()
        w, d = self.config.widen_factor, self.config.deepen_factor
        self.backbone = CSPDarknet(widen_factor=w, deepen_factor=d)
        in_channels = tuple(info.channels for info in self.backbone.feature_info)
        self.neck = HybridEncoder(in_channels, self.config.projector_channels, widen_factor=w, deepen_factor=d)
        self.head = RTMOHead(self.config)
        self.eval()

    def forward(self, x: torch.Tensor) -> HeadOutputs:
        """Raw head outputs per level for float32 (B, 3, H, W) BGR 0–255 input.

        Returns:
            ``(cls_scores, bbox_preds, kpt_vis, pose_feats)``, each a list over strides (16, 32) of
            (B, 1|4|K|C, H/s, W/s) tensors, as MMPose's ``RTMOHead.forward`` in eval mode.
        """
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x: expected a torch.Tensor (B, 3, H, W) float32 BGR 0-255, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"x: expected shape (B, 3, H, W) with 3 BGR channels, got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"x: expected a floating-point tensor (float32, BGR 0-255), got {x.dtype}")
        if x.shape[2] % 32 or x.shape[3] % 32 or x.shape[0] == 0:
            raise ValueError(f"x: batch must be >= 1 and H, W multiples of 32, got {tuple(x.shape)}")
        return self.head(self.neck(self.backbone(x)))

    def keypoint_decoder(self) -> KeypointDecoder:
        """The DCC's inference path on its own (``rtmo.keypoint_decoder``), sharing this model's weights."""
        return KeypointDecoder(self.head.dcc, bbox_padding=self.config.bbox_padding).eval()

    @torch.inference_mode()
    def predict(
        self,
        images: Sequence[np.ndarray],
        *,
        score_threshold: float = RequestParameters.score_threshold,
        nms_iou_threshold: float = RequestParameters.nms_iou_threshold,
        max_people: int | None = None,
        pose_nms: bool = False,
        **renamed: object,
    ) -> list[Poses]:
        """Detect people and their keypoints, as MMPose's ``inference_bottomup``.

        The options are the request parameters of the served ensembles (``rtmo_contract.RequestParameters``), with
        the same names, defaults and ranges.

        Args:
            images: uint8 HxWx3 BGR arrays of any sizes.
            score_threshold: keep detections scoring above this (0 <= value < 1).
            nms_iou_threshold: NMS IoU threshold (0 < value <= 1).
            max_people: keep at most this many people per image, best first.
            pose_nms: also run MMPose's nearby-joints pose NMS.
            renamed: refused; only there to name the new option of an old one (``score_thr``, ``nms_thr``).

        Returns:
            One ``Poses`` per image, in original image pixels.

        Raises:
            ValueError: an image is not a non-empty uint8 HxWx3 array, or an option is out of range.
            TypeError: an unknown or renamed option.
        """
        if renamed:
            raise TypeError(
                "; ".join(
                    f"{key}: renamed to {RENAMED_PARAMETERS[key]}"
                    if key in RENAMED_PARAMETERS
                    else f"{key}: unknown option"
                    for key in sorted(renamed)
                )
            )
        parameters = RequestParameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        if isinstance(images, np.ndarray):
            raise ValueError(
                "images: expected a list of uint8 HxWx3 BGR arrays, got a single numpy array; wrap it in a list"
            )
        images = list(images)
        if not images:
            return []
        size = (self.config.input_size, self.config.input_size)
        boxed = [letterbox(image, size, name=f"images[{index}]") for index, image in enumerate(images)]
        batch = torch.from_numpy(np.stack([canvas for canvas, _ in boxed]))
        net = CandidateNet(self, top_k=10**9).eval()
        outputs = to_numpy(net(batch))
        images_candidates = [
            (Candidates(*(o[i] for o in outputs)), boxed[i][1], parameters) for i in range(len(images))
        ]
        return people(images_candidates, self.keypoint_decoder().decode_numpy, num_anchors=net.top_k)
