"""One exception tree for the SDK, mapped from gRPC status codes (never from message text).

::

    RTMOClientError                  base; ``.status`` is the gRPC status name ("INVALID_ARGUMENT") or None
    ├── InvalidInputError            INVALID_ARGUMENT, or refused by the client before sending (also a ValueError)
    ├── UnavailableError             UNAVAILABLE: server down, restarting or unreachable (retried for idempotent calls)
    ├── DeadlineExceededError        DEADLINE_EXCEEDED: the call ran past its timeout (also a TimeoutError)
    ├── ModelNotReadyError           NOT_FOUND / a model that is not loaded or not ready (retried: a model being
    │                                reloaded after a crash answers NOT_FOUND "has no available versions")
    ├── SharedMemoryError            a system shared memory region could not be created or registered
    └── ServerError                  INTERNAL, UNKNOWN and every other failure status
"""

from __future__ import annotations

from tritonclient.utils import InferenceServerException

__all__ = [
    "DeadlineExceededError",
    "InvalidInputError",
    "ModelNotReadyError",
    "RTMOClientError",
    "ServerError",
    "SharedMemoryError",
    "UnavailableError",
    "from_triton_error",
]


class RTMOClientError(Exception):
    """Base of every error the SDK raises.

    Attributes:
        message: The server's message unchanged (or the client's own).
        status: gRPC status code name such as ``"INVALID_ARGUMENT"``, or None when the client raised it itself.
    """

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class InvalidInputError(RTMOClientError, ValueError):
    """The request was refused: a bad image, frame or parameter. The server's message names the input."""


class UnavailableError(RTMOClientError):
    """The server could not be reached (down, restarting, wrong address, TLS mismatch)."""


class DeadlineExceededError(RTMOClientError, TimeoutError):
    """The call did not finish within its timeout."""


class ModelNotReadyError(RTMOClientError):
    """The model is unknown to the server, or not loaded and ready."""


class SharedMemoryError(RTMOClientError):
    """A system shared memory region could not be created, registered or used."""


class ServerError(RTMOClientError):
    """The server failed (INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED, ...); its log has the details."""


_BY_STATUS: dict[str, type[RTMOClientError]] = {
    "INVALID_ARGUMENT": InvalidInputError,
    "OUT_OF_RANGE": InvalidInputError,
    "UNAVAILABLE": UnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "NOT_FOUND": ModelNotReadyError,
}


def status_name(error: InferenceServerException) -> str | None:
    """The gRPC status name of a tritonclient error ("StatusCode.UNAVAILABLE" -> "UNAVAILABLE"), or None."""
    status = error.status()
    if not status:
        return None
    return str(status).rsplit(".", 1)[-1]


def from_triton_error(error: InferenceServerException) -> RTMOClientError:
    """Translate a tritonclient error into our tree by its status code; the message is kept intact.

    Args:
        error: What ``tritonclient.grpc`` raised.

    Returns:
        The matching :class:`RTMOClientError` subclass instance (not raised). A tritonclient error without a status
        (raised by tritonclient itself, before any call) becomes the base class.
    """
    status = status_name(error)
    message = error.message() or str(error)
    if status is None:
        return RTMOClientError(message)
    return _BY_STATUS.get(status, ServerError)(message, status=status)
