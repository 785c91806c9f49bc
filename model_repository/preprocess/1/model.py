"""Triton adapter: one encoded image (input ``image``) or raw BGR frame (input ``frame``) per row -> letterbox."""

import json
import os
import sys

import triton_python_backend_utils as pb_utils

# The stub's embedded interpreter ignores PYTHONPATH; honour it, ahead of an installed rtmo (a source checkout's
# server must run that checkout's code).
sys.path[:0] = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]

from rtmo.errors import InvalidInputError
from rtmo.runtime.preprocess import DEFAULT_MAX_PIXELS, decode_image, letterbox_batch, validate_frame
from rtmo.runtime.triton import config_parameters, keep_freed_memory, limit_blas_threads, respond_each
from rtmo_contract import FRAME_INPUT, IMAGE_INPUT, LETTERBOX, LETTERBOXED_IMAGES, parse_parameters


class TritonPythonModel:
    def initialize(self, args):
        limit_blas_threads(1)  # the engine's threads own the cores
        keep_freed_memory()  # no brk/mmap and page faults for each request's large arrays
        parameters = config_parameters(json.loads(args["model_config"]))
        size = int(parameters.get("input_size", "640"))
        self.input_size = (size, size)
        self.max_pixels = int(parameters.get("max_image_pixels", DEFAULT_MAX_PIXELS))

    def execute(self, requests):
        return respond_each(requests, self._run, step="preprocess", pb_utils=pb_utils)

    def _run(self, request):
        parse_parameters(request.parameters())  # refuse bad parameters before the engine runs
        image = pb_utils.get_input_tensor_by_name(request, IMAGE_INPUT.name)
        frame = pb_utils.get_input_tensor_by_name(request, FRAME_INPUT.name)
        if (image is None) == (frame is None):
            raise InvalidInputError(f"{IMAGE_INPUT.name}, {FRAME_INPUT.name}: send exactly one of them")
        if image is not None:
            rows = image.as_numpy()
            pictures = [
                decode_image(_as_bytes(row), max_pixels=self.max_pixels, name=IMAGE_INPUT.name)
                for row in rows.reshape(len(rows), -1)[:, 0]
            ]
        else:
            pictures = [
                validate_frame(row, max_pixels=self.max_pixels, name=FRAME_INPUT.name) for row in frame.as_numpy()
            ]
        canvases, letterboxes = letterbox_batch(pictures, self.input_size)
        return [pb_utils.Tensor(LETTERBOXED_IMAGES.name, canvases), pb_utils.Tensor(LETTERBOX.name, letterboxes)]


def _as_bytes(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise InvalidInputError(f"{IMAGE_INPUT.name}: got {type(value).__name__}; accepted: BYTES holding an encoded image")
