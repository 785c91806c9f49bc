"""What every Triton Python-backend adapter shares; no Triton import (each stub passes its ``pb_utils``).

- :func:`respond_each` and :func:`respond_together`: one response per request. A request's bad input becomes that
  request's INVALID_ARG response (the message names the input and what is accepted); anything unexpected is logged
  and answered INTERNAL without a traceback. Either way the other requests of the same dynamic batch get their normal
  results.
- :func:`limit_blas_threads`: on a CPU server the engine's ONNX Runtime threads own the cores; a stub whose OpenBLAS
  spins up its own threads competes with them, and busy-waiting BLAS threads on a loaded machine made the DCC decode
  of 80 people take 94 ms (median, 212 ms worst) instead of 44 ms single-threaded.
- :func:`keep_freed_memory`: glibc returns the top of the heap to the kernel when a large block is freed and maps
  blocks above its threshold afresh each time, so every request's megabyte-sized arrays (a 640×640 canvas, a decoded
  photo) cost ``brk``/``mmap`` calls and page faults on fresh zeroed pages: a py-spy profile of the preprocess stub
  under load spent 21% of its samples in ``free`` → ``sbrk``. Keeping freed memory for reuse removes that.
- :func:`pack_people`: one request's per-row ``Poses`` as the ``rtmo_contract.PEOPLE`` tensors.
- :func:`config_parameters`: a model config's ``parameters`` as plain strings.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from rtmo.runtime.postprocess import Poses
from rtmo_contract import PEOPLE, InvalidRequestError

__all__ = [
    "config_parameters",
    "keep_freed_memory",
    "limit_blas_threads",
    "pack_people",
    "respond_each",
    "respond_together",
]


def respond_each(requests: Sequence[Any], run: Callable[[Any], list[Any]], *, step: str, pb_utils: Any) -> list[Any]:
    """One ``InferenceResponse`` per request, in order.

    Args:
        requests: the ``execute`` call's requests.
        run: turns one request into its output ``pb_utils.Tensor`` list; raises
            ``rtmo_contract.InvalidRequestError`` (or ``rtmo.errors.InvalidInputError``, a subclass) for bad input.
        step: the model's name, used in the INTERNAL message and the log.
        pb_utils: the ``triton_python_backend_utils`` module the stub provides.
    """
    return respond_together(requests, run, lambda outputs: outputs, step=step, pb_utils=pb_utils)


def respond_together(
    requests: Sequence[Any],
    parse: Callable[[Any], Any],
    run: Callable[[list[Any]], list[list[Any]]],
    *,
    step: str,
    pb_utils: Any,
) -> list[Any]:
    """One response per request, with one ``run`` over all the requests that parsed: for work that batches.

    Args:
        requests: the ``execute`` call's requests.
        parse: one request -> what ``run`` needs of it; raises ``InvalidRequestError`` for bad input (that request
            alone is answered INVALID_ARG).
        run: the parsed requests -> each one's output ``pb_utils.Tensor`` list, in order. If it fails, every parsed
            request is answered INTERNAL (the failure is logged, not sent).
        step: the model's name, used in the INTERNAL message and the log.
        pb_utils: the ``triton_python_backend_utils`` module the stub provides.
    """
    parsed: dict[int, Any] = {}
    responses: list[Any] = [None] * len(requests)
    for index, request in enumerate(requests):
        try:
            parsed[index] = parse(request)
        except InvalidRequestError as error:
            responses[index] = _error(pb_utils, str(error), pb_utils.TritonError.INVALID_ARG)
        except Exception as error:  # noqa: BLE001 - logged here, never sent to the client
            pb_utils.Logger.log_error(f"{step} failed: {error!r}")
            responses[index] = _error(pb_utils, f"{step}: internal error; see the server log")
    if parsed:
        try:
            outputs = run(list(parsed.values()))
        except Exception as error:  # noqa: BLE001 - logged here, never sent to the client
            pb_utils.Logger.log_error(f"{step} failed: {error!r}")
            outputs = None
        for position, index in enumerate(parsed):
            responses[index] = (
                _error(pb_utils, f"{step}: internal error; see the server log")
                if outputs is None
                else pb_utils.InferenceResponse(output_tensors=outputs[position])
            )
    return responses


def _error(pb_utils: Any, message: str, code: Any = None) -> Any:
    code = pb_utils.TritonError.INTERNAL if code is None else code
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


def limit_blas_threads(threads: int = 1) -> None:
    """Limit every BLAS library loaded in this process (NumPy's OpenBLAS) to ``threads``, for the process's lifetime."""
    threadpool_limits(limits=threads, user_api="blas")


# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(*, largest_block_mib: int = 32) -> bool:
    """Make glibc's malloc keep freed memory in this process for reuse, for the process's lifetime.

    Blocks up to ``largest_block_mib`` come from the heap instead of their own ``mmap``, and the heap is never
    trimmed, so a stub's resident memory stays at its peak (one dynamic batch's arrays). Returns False where the C
    library has no ``mallopt`` (not glibc): nothing changes there.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    largest = largest_block_mib * 1024 * 1024
    # M_MMAP_THRESHOLD accepts at most 32 MiB on 64-bit glibc (HEAP_MAX/2); M_TRIM_THRESHOLD any size.
    return bool(mallopt(_M_MMAP_THRESHOLD, largest)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def config_parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """The ``parameters`` of a model config (as the stub's ``json.loads(args["model_config"])`` gives it)."""
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def pack_people(poses: Sequence[Poses], image_sizes: np.ndarray, *, num_keypoints: int) -> dict[str, np.ndarray]:
    """Stack one request's per-row results, zero-padded to the largest number of people among its rows.

    Args:
        poses: one ``Poses`` per batch row.
        image_sizes: (B, 2) width and height of each row's image.
        num_keypoints: J, used for the shape of empty results.

    Returns:
        The ``rtmo_contract.PEOPLE`` tensors by name, with a leading batch dimension B and N = the most people.
    """
    rows = len(poses)
    sizes = {"N": max((len(p) for p in poses), default=0), "J": num_keypoints}
    dtypes = {"FP32": np.float32, "INT32": np.int32, "BOOL": np.bool_}
    out = {
        t.name: np.zeros((rows, *[sizes["N"] if d == -1 else d for d in t.resolve(sizes)]), dtypes[t.data_type])
        for t in PEOPLE
    }
    for row, pose in enumerate(poses):
        n = len(pose)
        out["boxes"][row, :n] = pose.boxes
        out["box_scores"][row, :n] = pose.box_scores
        out["keypoints"][row, :n] = pose.keypoints
        out["keypoint_scores"][row, :n] = pose.keypoint_scores
        out["num_people"][row, 0] = n
        out["truncated"][row, 0] = pose.truncated
    out["image_size"][:] = image_sizes
    return out
