"""One bidirectional gRPC inference stream (Triton's ``ModelStreamInfer``), blocking or asyncio, with statuses.

A tracked video sends all its frames over one such stream: one RPC set up once instead of one per frame. Both
classes send requests, take their answers in order and close; what the stream answers is a result or a
``tritonclient`` :class:`~tritonclient.utils.InferenceServerException` carrying its gRPC status, so the SDK maps
stream errors by status exactly as it maps unary ones (``rtmo_client.errors``).

Triton reports a refused request inside a stream as a bare message, without a status; the ``triton_grpc_error``
header (Triton >= 24.09) makes it end the stream with the request's gRPC status instead (INVALID_ARGUMENT for a bad
frame or a sequence it does not know). So an error always ends a stream; the caller opens a new one to go on.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from rtmo_client.wire import InferResultLike

__all__ = ["AsyncGrpcStream", "GrpcStream", "STATUS_HEADERS"]

# Ask Triton for gRPC status codes on stream errors (it then closes the stream after the error).
STATUS_HEADERS = {"triton_grpc_error": "true"}

_Answer = tuple[InferResultLike | None, InferenceServerException | None]


def _no_answer(timeout_s: float | None) -> InferenceServerException:
    return InferenceServerException(
        msg=f"no answer on the stream within {timeout_s} s", status="StatusCode.DEADLINE_EXCEEDED"
    )


def _ended_early() -> InferenceServerException:
    # Only a server going away ends a stream with requests unanswered: retried like any unreachable server.
    return InferenceServerException(
        msg="the server ended the stream before answering (shutting down?)", status="StatusCode.UNAVAILABLE"
    )


class GrpcStream:
    """A stream on ``connection``, which it owns and closes (a ``tritonclient.grpc`` client has one stream at most)."""

    def __init__(self, connection: grpcclient.InferenceServerClient, *, headers: Mapping[str, str] | None) -> None:
        self._connection = connection
        self._answers: queue.SimpleQueue[_Answer] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        connection.start_stream(self._on_answer, headers={**(headers or {}), **STATUS_HEADERS})

    def _on_answer(self, result: InferResultLike | None, error: InferenceServerException | None) -> None:
        self._answers.put((result, error))  # called on tritonclient's stream thread

    def send(
        self,
        model_name: str,
        inputs: list[Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        sequence_id: int = 0,
        sequence_start: bool = False,
        sequence_end: bool = False,
    ) -> None:
        """Queue one request on the stream."""
        try:
            self._connection.async_stream_infer(
                model_name,
                inputs,
                parameters=parameters,
                sequence_id=sequence_id,
                sequence_start=sequence_start,
                sequence_end=sequence_end,
            )
        except InferenceServerException as refused:
            # A broken stream refuses new requests without a status; the error that broke it has one.
            try:
                _, reported = self._answers.get_nowait()
            except queue.Empty:
                reported = None
            raise (reported or refused) from None

    def receive(self, *, timeout_s: float | None = None) -> InferResultLike:
        """The answer to the oldest unanswered request, or the error the stream reported for it.

        Raises:
            InferenceServerException: the stream's error (with its status), or DEADLINE_EXCEEDED after ``timeout_s``.
        """
        try:
            result, error = self._answers.get(timeout=timeout_s)
        except queue.Empty:
            raise _no_answer(timeout_s) from None
        if error is not None:
            raise error
        assert result is not None  # noqa: S101 - tritonclient gives a result or an error
        return result

    def close(self) -> None:
        """Cancel the stream and close its connection; idempotent, and safe from another thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._connection.stop_stream(cancel_requests=True)
        finally:
            self._connection.close()


class AsyncGrpcStream:
    """A stream on an asyncio ``connection`` (which may carry many streams at once, and which it leaves open)."""

    def __init__(self, connection: grpcaio.InferenceServerClient, *, headers: Mapping[str, str] | None) -> None:
        self._requests: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._answers = connection.stream_infer(self._request_items(), headers={**(headers or {}), **STATUS_HEADERS})
        self._closed = False

    async def _request_items(self) -> AsyncIterator[dict[str, Any]]:
        while (request := await self._requests.get()) is not None:
            yield request

    async def send(
        self,
        model_name: str,
        inputs: list[Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        sequence_id: int = 0,
        sequence_start: bool = False,
        sequence_end: bool = False,
    ) -> None:
        """See :meth:`GrpcStream.send`."""
        if self._closed:
            raise InferenceServerException(msg="the stream is closed", status="StatusCode.CANCELLED")
        self._requests.put_nowait(
            {
                "model_name": model_name,
                "inputs": inputs,
                "parameters": parameters,
                "sequence_id": sequence_id,
                "sequence_start": sequence_start,
                "sequence_end": sequence_end,
            }
        )

    async def receive(self, *, timeout_s: float | None = None) -> InferResultLike:
        """See :meth:`GrpcStream.receive`."""
        try:
            result, error = await asyncio.wait_for(anext(self._answers), timeout_s)
        except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
            raise _no_answer(timeout_s) from None
        except StopAsyncIteration:
            raise _ended_early() from None
        except grpc.aio.AioRpcError as failed:  # tritonclient.grpc.aio passes the call's own errors through
            raise InferenceServerException(msg=failed.details(), status=str(failed.code())) from failed
        if error is not None:
            raise error
        answer: InferResultLike = result
        return answer

    async def close(self) -> None:
        """End the requests and cancel the call; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._requests.put_nowait(None)
        self._answers.cancel()
