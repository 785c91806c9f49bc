"""Triton adapter: one frame's people -> the same people with track ids (rtmo.runtime.tracking.Sequences).

Sequence batching (Oldest) hands this instance the next frame of several sequences at once; each request is one
frame of one sequence, tracked with that sequence's own state, in the order Triton received them.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

# The stub's embedded interpreter ignores PYTHONPATH; honour it, ahead of an installed rtmo (a source checkout's
# server must run that checkout's code).
sys.path[:0] = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]

from rtmo.runtime.tracking import SEQUENCE_END, SEQUENCE_START, Sequences, people_in_row, track_tensors
from rtmo.runtime.triton import config_parameters, limit_blas_threads, respond_each
from rtmo_contract import PEOPLE, parse_tracking_parameters


class TritonPythonModel:
    def initialize(self, args):
        limit_blas_threads(1)  # the engine's threads own the cores
        config = json.loads(args["model_config"])
        sigmas = np.asarray(json.loads(config_parameters(config)["keypoint_sigmas"]), dtype=np.float64)
        idle_us = int(config["sequence_batching"]["max_sequence_idle_microseconds"])
        self.sequences = Sequences(sigmas=sigmas, idle_s=idle_us / 1e6)
        self.output_names = [output["name"] for output in config["output"]]

    def execute(self, requests):
        return respond_each(requests, self._track, step="tracker", pb_utils=pb_utils)

    def _track(self, request):
        parameters = parse_tracking_parameters(request.parameters())
        tensors = {t.name: pb_utils.get_input_tensor_by_name(request, t.name).as_numpy() for t in PEOPLE}
        assignments, rows = [], len(tensors["num_people"])
        for row in range(rows):
            people, image_size = people_in_row(tensors, row)
            assignments.append(
                self.sequences.track(
                    request.correlation_id(),
                    flags=_row_flags(request.flags(), row, rows),
                    people=people,
                    image_size=image_size,
                    parameters=parameters,
                )
            )
        outputs = {**tensors, **track_tensors(assignments, width=tensors["box_scores"].shape[1])}
        return [pb_utils.Tensor(name, outputs[name]) for name in self.output_names]


def _row_flags(flags, row, rows):
    """A request of several frames (where the batcher lets one through): START belongs to its first, END to its last."""
    start, end = flags & SEQUENCE_START if row == 0 else 0, flags & SEQUENCE_END if row == rows - 1 else 0
    return start | end
