"""Triton adapter: one encoded image (input ``image``) or raw BGR frame (input ``frame``) per row -> letterbox."""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

try:
    import rtmo  # noqa: F401
except ModuleNotFoundError:  # the stub's embedded interpreter ignores PYTHONPATH; honour it for source checkouts
    sys.path[:0] = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]

from rtmo.errors import InvalidInputError
from rtmo.processing import letterbox
from rtmo.serving.decode import DEFAULT_MAX_PIXELS, decode_image, validate_frame
from rtmo.serving.requests import parse_parameters
from rtmo.serving.responses import respond_each
from rtmo.serving.threads import limit_blas_threads


class TritonPythonModel:
    def initialize(self, args):
        limit_blas_threads(1)  # the engine's threads own the cores
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        size = int(parameters.get("input_size", "640"))
        self.input_size = (size, size)
        self.max_pixels = int(parameters.get("max_image_pixels", DEFAULT_MAX_PIXELS))

    def execute(self, requests):
        return respond_each(requests, self._run, step="preprocess", pb_utils=pb_utils)

    def _run(self, request):
        parse_parameters(request.parameters())  # refuse bad parameters before the engine runs
        image = pb_utils.get_input_tensor_by_name(request, "image")
        frame = pb_utils.get_input_tensor_by_name(request, "frame")
        if (image is None) == (frame is None):
            raise InvalidInputError("image, frame: send exactly one of them")
        if image is not None:
            rows = image.as_numpy()
            pictures = [decode_image(_as_bytes(row), max_pixels=self.max_pixels, name="image") for row in rows.reshape(len(rows), -1)[:, 0]]
        else:
            pictures = [validate_frame(row, max_pixels=self.max_pixels) for row in frame.as_numpy()]
        boxed = [letterbox(picture, self.input_size) for picture in pictures]
        return [
            pb_utils.Tensor("images", np.stack([canvas for canvas, _ in boxed])),
            pb_utils.Tensor("letterbox", np.stack([box.as_array() for _, box in boxed])),
        ]


def _as_bytes(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise InvalidInputError(f"image: got {type(value).__name__}; accepted: BYTES holding an encoded image")
