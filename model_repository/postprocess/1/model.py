"""Triton adapter: top-K candidates per row -> people in image pixels (rtmo.runtime.postprocess.people).

The survivors of NMS in every row of every request of the dynamic batch get their keypoints from one call to the
``keypoints`` model (Triton BLS): the DCC runs in a compiled runtime (ONNX Runtime on CPU, TensorRT FP32 on GPU) with
people batched across requests, and only the cheap parts (score filter, NMS on <= K boxes, packing) stay in Python.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

# The stub's embedded interpreter ignores PYTHONPATH; honour it, ahead of an installed rtmo (a source checkout's
# server must run that checkout's code).
sys.path[:0] = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]

from rtmo.runtime.postprocess import Candidates, people
from rtmo.runtime.preprocess import Letterbox
from rtmo.runtime.triton import config_parameters, keep_freed_memory, limit_blas_threads, pack_people, respond_together
from rtmo_contract import (
    CANDIDATE_PREFIX,
    CANDIDATES,
    DECODER_INPUTS,
    DECODER_OUTPUT,
    KEYPOINTS,
    LETTERBOX,
    parse_parameters,
)


class TritonPythonModel:
    def initialize(self, args):
        limit_blas_threads(1)  # the engine's threads own the cores
        keep_freed_memory()  # no brk/mmap and page faults for each request's large arrays
        config = json.loads(args["model_config"])
        parameters = config_parameters(config)
        self.num_anchors = int(parameters.get("num_anchors", "0")) or None
        self.num_keypoints = int(parameters["num_keypoints"])
        self.max_people_per_call = int(parameters["keypoints_max_batch_size"])
        self.output_names = [output["name"] for output in config["output"]]
        self.logger = pb_utils.Logger

    def execute(self, requests):
        return respond_together(requests, self._parse, self._run, step="postprocess", pb_utils=pb_utils)

    def _parse(self, request):
        params = parse_parameters(request.parameters())
        inputs = [pb_utils.get_input_tensor_by_name(request, CANDIDATE_PREFIX + t.name).as_numpy() for t in CANDIDATES]
        boxes = pb_utils.get_input_tensor_by_name(request, LETTERBOX.name).as_numpy()
        return [
            (Candidates(*(values[row] for values in inputs)), Letterbox.from_array(boxes[row]), params)
            for row in range(len(boxes))
        ]

    def _run(self, parsed):
        images = [image for rows in parsed for image in rows]
        results = people(images, self._decode, num_anchors=self.num_anchors)
        outputs, start = [], 0
        for rows in parsed:
            own = results[start : start + len(rows)]
            start += len(rows)
            for poses, (candidates, _, params) in zip(own, rows):
                if poses.truncated:
                    self.logger.log_warn(
                        f"all {len(candidates.scores)} candidates passed score_threshold {params.score_threshold}: "
                        "people beyond the engine's top_k may be missing; raise the threshold or re-export with a "
                        "larger top_k"
                    )
            sizes = np.array([box.image_size for _, box, _ in rows], dtype=np.int32).reshape(-1, 2)
            packed = pack_people(own, sizes, num_keypoints=self.num_keypoints)
            outputs.append([pb_utils.Tensor(name, packed[name]) for name in self.output_names])
        return outputs

    def _decode(self, pose_vectors, boxes, priors):
        chunks = []
        for start in range(0, len(boxes), self.max_people_per_call):
            arrays = [a[start : start + self.max_people_per_call] for a in (pose_vectors, boxes, priors)]
            request = pb_utils.InferenceRequest(
                model_name=KEYPOINTS,
                inputs=[
                    pb_utils.Tensor(t.name, np.ascontiguousarray(a, np.float32)) for t, a in zip(DECODER_INPUTS, arrays)
                ],
                requested_output_names=[DECODER_OUTPUT.name],
            )
            response = request.exec()
            if response.has_error():
                raise RuntimeError(f"{KEYPOINTS} model: {response.error().message()}")
            chunks.append(pb_utils.get_output_tensor_by_name(response, DECODER_OUTPUT.name).as_numpy())
        return np.concatenate(chunks)
