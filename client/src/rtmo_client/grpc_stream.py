"""One bidirectional gRPC inference stream (Triton's ``ModelStreamInfer``), blocking or asyncio.

A tracked video sends all its frames over one such stream: one RPC set up once instead of one per frame. Both
classes send requests, take their answers in order and close. An answer is a result, a :class:`StreamRefusal`, or
a ``tritonclient`` :class:`~tritonclient.utils.InferenceServerException` with the gRPC status that ended the call
(UNAVAILABLE when the server went away), mapped like any unary error (``rtmo_client.errors``).

Triton answers a request it refuses inside a stream with a bare message and no status, and the stream goes on: a
:class:`StreamRefusal`. The SDK then sends that one request again as a unary call to learn its status (a refused
request changed nothing on the server). Triton's ``triton_grpc_error`` header would give the status on the stream
instead, but Triton 2.51's server crashed (SIGSEGV) in our tests after a few dozen streams it had ended that way
from concurrent clients, so a bad frame could take the server down; it is not used.

Closing never cancels the call: it ends the requests (a half-close) and lets the server finish the stream. Triton
2.51's gRPC server can crash on a client's cancellation racing the end of a call (server issues #7368, #8034,
fixed in later releases). A stream closed with a request still unanswered (after a timeout) finishes in the
background.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from rtmo_client.wire import InferResultLike

__all__ = ["AsyncGrpcStream", "GrpcStream", "StreamRefusal"]

_Answer = tuple[InferResultLike | None, InferenceServerException | None]


class StreamRefusal(InferenceServerException):  # type: ignore[misc]  # tritonclient is untyped
    """The server refused one request on the stream without saying its status; the stream goes on."""


def _in_band(error: InferenceServerException | None) -> InferenceServerException | None:
    """A stream's answer error, a status-less one (Triton's in-stream error message) as a :class:`StreamRefusal`."""
    if error is None or error.status() is not None:
        return error
    return StreamRefusal(msg=error.message())


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
        self._unanswered = 0
        connection.start_stream(self._on_answer, headers=headers)

    def _on_answer(self, result: InferResultLike | None, error: InferenceServerException | None) -> None:
        self._answers.put((result, _in_band(error)))  # called on tritonclient's stream thread

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
            self._unanswered += 1
            self._connection.async_stream_infer(
                model_name,
                inputs,
                parameters=parameters,
                sequence_id=sequence_id,
                sequence_start=sequence_start,
                sequence_end=sequence_end,
            )
        except InferenceServerException as refused:
            self._unanswered -= 1
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
        self._unanswered -= 1
        if error is not None:
            raise error
        assert result is not None  # noqa: S101 - tritonclient gives a result or an error
        return result

    def close(self) -> None:
        """End the requests, wait for the server to end the stream, close the connection; idempotent, and safe from
        another thread. With a request unanswered, that happens on a thread of its own."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._unanswered > 0:
            threading.Thread(target=self._finish, name="rtmo-client-stream-close", daemon=True).start()
        else:
            self._finish()

    def _finish(self) -> None:
        try:
            self._connection.stop_stream(cancel_requests=False)  # returns once the server has ended the stream
        finally:
            self._connection.close()


class AsyncGrpcStream:
    """A stream on an asyncio ``connection`` (which may carry many streams at once, and which it leaves open)."""

    def __init__(self, connection: grpcaio.InferenceServerClient, *, headers: Mapping[str, str] | None) -> None:
        self._requests: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._answers = connection.stream_infer(self._request_items(), headers=headers)
        self._reading: asyncio.Task[_Answer] | None = None  # kept across a timeout, never cancelled
        self._closed = False
        self._unanswered = 0

    async def _request_items(self) -> AsyncIterator[dict[str, Any]]:
        while (request := await self._requests.get()) is not None:
            yield request

    async def _next_answer(self) -> _Answer:
        try:
            answer: _Answer = await anext(self._answers)
        except StopAsyncIteration:
            raise _ended_early() from None
        except grpc.aio.AioRpcError as failed:  # tritonclient.grpc.aio passes the call's own errors through
            raise InferenceServerException(msg=failed.details(), status=str(failed.code())) from failed
        return answer

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
        self._unanswered += 1
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
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._next_answer())
        done, _ = await asyncio.wait({self._reading}, timeout=timeout_s)
        if not done:
            raise _no_answer(timeout_s)  # the read goes on (cancelling it would cancel the call)
        reading, self._reading = self._reading, None
        self._unanswered -= 1
        result, error = reading.result()
        if (refusal := _in_band(error)) is not None:
            raise refusal
        assert result is not None  # noqa: S101 - tritonclient gives a result or an error
        return result

    async def close(self) -> None:
        """End the requests and wait for the server to end the stream; idempotent. With a request unanswered, the
        stream finishes in a background task."""
        if self._closed:
            return
        self._closed = True
        self._requests.put_nowait(None)
        if self._unanswered > 0:
            task = asyncio.ensure_future(self._finish())
            _finishing.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(_finishing.discard)
        else:
            await self._finish()

    async def _finish(self) -> None:
        """Read until the server ends the stream (its end, or the error it ended with)."""
        with contextlib.suppress(InferenceServerException):
            if self._reading is not None:
                await self._reading
            while True:
                await self._next_answer()


_finishing: set[asyncio.Task[None]] = set()
