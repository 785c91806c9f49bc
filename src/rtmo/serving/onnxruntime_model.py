"""The CPU target's stand-in for Triton's TensorRT backend: a Python-backend model running ONNX Runtime.

``engine`` and ``keypoints`` (``configs/cpu.pbtxt``) both serve their ``1/<onnx_file>`` this way. The requests of a
dynamic batch are concatenated along the batch dimension into one ONNX Runtime call and split again, so the call
uses every intra-op thread once rather than once per request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from rtmo.runtime.triton import config_parameters, keep_freed_memory

__all__ = ["OnnxRuntimeModel"]


class OnnxRuntimeModel:
    """Base of the CPU adapters (``model.py``), which set ``pb_utils`` to the stub's module."""

    pb_utils: Any = None

    def initialize(self, args: dict[str, str]) -> None:
        keep_freed_memory()  # the batch's concatenated inputs are megabytes per request
        config = json.loads(args["model_config"])
        parameters = config_parameters(config)
        path = Path(args["model_repository"]) / args["model_version"] / parameters.get("onnx_file", "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        # Idle ONNX Runtime threads spin for a while after each run; with the engine and the keypoints model taking
        # turns on the same cores, each one's spinning starves the other.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        pb_utils = self.pb_utils
        inputs = [
            {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
            for request in requests
        ]
        feed = {name: np.concatenate([own[name] for own in inputs]) for name in self.input_names}
        outputs = self.session.run(self.output_names, feed)
        responses, start = [], 0
        for own in inputs:
            stop = start + len(own[self.input_names[0]])
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(value[start:stop]))
                for name, value in zip(self.output_names, outputs)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = stop
        return responses
