"""Triton adapter: top-K candidates per row -> people in image pixels (rtmo.processing.postprocess)."""

import json
import os
import sys
from pathlib import Path

import triton_python_backend_utils as pb_utils

try:
    import rtmo  # noqa: F401
except ModuleNotFoundError:  # the stub's embedded interpreter ignores PYTHONPATH; honour it for source checkouts
    sys.path[:0] = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]

from rtmo.pose_nms import nearby_joints_nms
from rtmo.processing import DCCWeights, Letterbox, postprocess
from rtmo.serving.requests import pack_poses, parse_parameters, select
from rtmo.serving.responses import respond_each
from rtmo.serving.threads import limit_blas_threads

CANDIDATES = ("scores", "boxes", "keypoint_visibility", "pose_vectors", "priors")
POSE_NMS_MAX_PEOPLE = 30  # MMPose's nearby_joints_nms max_dets


class TritonPythonModel:
    def initialize(self, args):
        limit_blas_threads(1)  # the engine's threads own the cores
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.dcc = DCCWeights.load(Path(args["model_repository"]) / args["model_version"] / "dcc.npz")
        self.num_anchors = int(parameters.get("num_anchors", "0")) or None
        self.num_keypoints = self.dcc.num_keypoints
        self.output_names = [output["name"] for output in config["output"]]
        self.logger = pb_utils.Logger

    def execute(self, requests):
        return respond_each(requests, self._run, step="postprocess", pb_utils=pb_utils)

    def _run(self, request):
        params = parse_parameters(request.parameters())
        inputs = [pb_utils.get_input_tensor_by_name(request, f"candidate_{name}").as_numpy() for name in CANDIDATES]
        boxes = pb_utils.get_input_tensor_by_name(request, "letterbox").as_numpy()
        results = []
        for row in range(len(boxes)):
            poses = postprocess(
                *(values[row] for values in inputs), dcc=self.dcc, box=Letterbox.from_array(boxes[row]),
                score_thr=params.score_threshold, nms_thr=params.nms_iou_threshold,
                max_people=None if params.pose_nms else params.max_people, num_anchors=self.num_anchors,
            )
            if params.pose_nms and len(poses):
                keep = nearby_joints_nms(poses.keypoints, poses.bbox_scores,
                                         num_nearby_joints_thr=self.num_keypoints // 3, max_dets=POSE_NMS_MAX_PEOPLE)
                poses = select(poses, keep[: params.max_people])
            if poses.truncated:
                self.logger.log_warn(
                    f"all {len(inputs[0][row])} candidates passed score_threshold {params.score_threshold}: "
                    "people beyond the engine's top_k may be missing; raise the threshold or re-export with a larger top_k")
            results.append(poses)
        outputs = pack_poses(results, num_keypoints=self.num_keypoints)
        return [pb_utils.Tensor(name, outputs[name]) for name in self.output_names]
