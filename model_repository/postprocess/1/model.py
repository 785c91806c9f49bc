"""Triton adapter: top-K candidates per row -> people in image pixels (rtmo.runtime.postprocess.people)."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

try:
    import rtmo  # noqa: F401
except ModuleNotFoundError:  # the stub's embedded interpreter ignores PYTHONPATH; honour it for source checkouts
    sys.path[:0] = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]

from rtmo.runtime.dcc import DCCWeights
from rtmo.runtime.postprocess import Candidates, people
from rtmo.runtime.preprocess import Letterbox
from rtmo.runtime.triton import config_parameters, limit_blas_threads, pack_people, respond_each
from rtmo_contract import CANDIDATE_PREFIX, CANDIDATES, LETTERBOX, parse_parameters


class TritonPythonModel:
    def initialize(self, args):
        limit_blas_threads(1)  # the engine's threads own the cores
        config = json.loads(args["model_config"])
        self.dcc = DCCWeights.load(Path(args["model_repository"]) / args["model_version"] / "dcc.npz")
        self.num_anchors = int(config_parameters(config).get("num_anchors", "0")) or None
        self.output_names = [output["name"] for output in config["output"]]
        self.logger = pb_utils.Logger

    def execute(self, requests):
        return respond_each(requests, self._run, step="postprocess", pb_utils=pb_utils)

    def _run(self, request):
        params = parse_parameters(request.parameters())
        inputs = [pb_utils.get_input_tensor_by_name(request, CANDIDATE_PREFIX + t.name).as_numpy() for t in CANDIDATES]
        letterboxes = [
            Letterbox.from_array(row) for row in pb_utils.get_input_tensor_by_name(request, LETTERBOX.name).as_numpy()
        ]
        results = []
        for row, box in enumerate(letterboxes):
            poses = people(
                Candidates(*(values[row] for values in inputs)),
                dcc=self.dcc,
                box=box,
                parameters=params,
                num_anchors=self.num_anchors,
            )
            if poses.truncated:
                self.logger.log_warn(
                    f"all {len(inputs[0][row])} candidates passed score_threshold {params.score_threshold}: "
                    "people beyond the engine's top_k may be missing; raise the threshold or re-export with a larger "
                    "top_k"
                )
            results.append(poses)
        sizes = np.array([box.image_size for box in letterboxes], dtype=np.int32).reshape(-1, 2)
        outputs = pack_people(results, sizes, num_keypoints=self.dcc.num_keypoints)
        return [pb_utils.Tensor(name, outputs[name]) for name in self.output_names]
