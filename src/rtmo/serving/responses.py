"""The per-request response loop every Python-backend adapter shares; no Triton import (the stub passes its module).

A request's bad input becomes that request's INVALID_ARG response (the message names the input and what is accepted);
anything unexpected is logged and answered INTERNAL without a traceback. Either way the other requests of the same
dynamic batch get their normal results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rtmo.errors import InvalidInputError

__all__ = ["respond_each"]


def respond_each(requests: Sequence[Any], run: Callable[[Any], list[Any]], *, step: str, pb_utils: Any) -> list[Any]:
    """One ``InferenceResponse`` per request, in order.

    Args:
        requests: the ``execute`` call's requests.
        run: turns one request into its output ``pb_utils.Tensor`` list; raises ``InvalidInputError`` for bad input.
        step: the model's name, used in the INTERNAL message and the log.
        pb_utils: the ``triton_python_backend_utils`` module the stub provides.
    """
    responses = []
    for request in requests:
        try:
            tensors = run(request)
        except InvalidInputError as error:
            responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)))
        except Exception as error:  # noqa: BLE001 - logged here, never sent to the client
            pb_utils.Logger.log_error(f"{step} failed: {error!r}")
            responses.append(pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"{step}: internal error; see the server log", pb_utils.TritonError.INTERNAL)))
        else:
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
    return responses
