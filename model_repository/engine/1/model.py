"""Triton adapter (CPU variant, selected by configs/cpu.pbtxt): run 1/model.onnx with ONNX Runtime.

All requests of a dynamic batch are concatenated into one ONNX Runtime call and split again by rows.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        path = Path(args["model_repository"]) / args["model_version"] / parameters.get("onnx_file", "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.output_names = [output["name"] for output in config["output"]]
        self.input_name = config["input"][0]["name"]

    def execute(self, requests):
        batches = [pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy() for request in requests]
        outputs = self.session.run(self.output_names, {self.input_name: np.concatenate(batches)})
        responses, start = [], 0
        for batch in batches:
            stop = start + len(batch)
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(value[start:stop]))
                for name, value in zip(self.output_names, outputs)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = stop
        return responses
