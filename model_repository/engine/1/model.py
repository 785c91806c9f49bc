"""Triton adapter (CPU variant, selected by configs/cpu.pbtxt) of engine and keypoints (whose 1/model.py links here):
1/model.onnx with ONNX Runtime.

See rtmo.serving.onnxruntime_model: a dynamic batch's requests go through one ONNX Runtime call.
"""

import os
import sys

import triton_python_backend_utils as pb_utils

try:
    import rtmo  # noqa: F401
except ModuleNotFoundError:  # the stub's embedded interpreter ignores PYTHONPATH; honour it for source checkouts
    sys.path[:0] = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]

from rtmo.serving.onnxruntime_model import OnnxRuntimeModel


class TritonPythonModel(OnnxRuntimeModel):
    pb_utils = pb_utils
