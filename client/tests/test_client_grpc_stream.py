"""rtmo_client.grpc_stream over fake tritonclient connections: answers in order, errors with their gRPC status."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from tritonclient.utils import InferenceServerException

from rtmo_client.errors import DeadlineExceededError, UnavailableError, from_triton_error
from rtmo_client.grpc_stream import AsyncGrpcStream, GrpcStream, StreamRefusal


class Connection:
    """A ``tritonclient.grpc.InferenceServerClient`` stand-in: the test answers through the stream's callback."""

    def __init__(self) -> None:
        self.callback: Callable[..., None] | None = None
        self.headers: dict[str, str] = {}
        self.sent: list[dict[str, Any]] = []
        self.broken = False
        self.calls: list[str] = []

    def start_stream(self, callback: Callable[..., None], headers: dict[str, str]) -> None:
        self.callback, self.headers = callback, headers

    def async_stream_infer(self, model_name: str, inputs: list[Any], **kwargs: Any) -> None:
        if self.broken:
            raise InferenceServerException(msg="The stream is no longer in valid state")
        self.sent.append({"model_name": model_name, **kwargs})

    def stop_stream(self, cancel_requests: bool = False) -> None:
        self.calls.append(f"stop_stream:{cancel_requests}")

    def close(self) -> None:
        self.calls.append("close")


def status_of(error: InferenceServerException) -> type:
    return type(from_triton_error(error))


def test_answers_come_back_in_order_and_errors_keep_their_status() -> None:
    connection = Connection()
    stream = GrpcStream(connection, headers={"authorization": "Bearer t"})
    assert connection.headers == {"authorization": "Bearer t"}
    stream.send("rtmo_track", [], sequence_id=7, sequence_start=True)
    assert connection.sent == [
        {
            "model_name": "rtmo_track",
            "parameters": None,
            "sequence_id": 7,
            "sequence_start": True,
            "sequence_end": False,
        }
    ]
    assert connection.callback is not None
    connection.callback(result="first", error=None)
    connection.callback(result="second", error=None)
    assert [stream.receive(timeout_s=1), stream.receive(timeout_s=1)] == ["first", "second"]
    with pytest.raises(InferenceServerException) as late:
        stream.receive(timeout_s=0.01)
    assert status_of(late.value) is DeadlineExceededError
    # Triton's in-stream refusal has no status: a StreamRefusal, and the stream goes on.
    connection.callback(result=None, error=InferenceServerException(msg="must specify the START flag"))
    connection.callback(result="third", error=None)
    with pytest.raises(StreamRefusal, match="must specify the START flag"):
        stream.receive(timeout_s=1)
    assert stream.receive(timeout_s=1) == "third"
    gone = InferenceServerException(msg="Socket closed", status="StatusCode.UNAVAILABLE")
    connection.callback(result=None, error=gone)
    with pytest.raises(InferenceServerException) as caught:
        stream.receive(timeout_s=1)
    assert status_of(caught.value) is UnavailableError and not isinstance(caught.value, StreamRefusal)
    stream.close()
    stream.close()
    assert connection.calls == ["stop_stream:False", "close"]  # ended (never cancelled) and closed once


def test_a_stream_closed_with_a_request_unanswered_finishes_in_the_background() -> None:
    connection = Connection()
    stream = GrpcStream(connection, headers=None)
    stream.send("rtmo_track", [])
    with pytest.raises(InferenceServerException):
        stream.receive(timeout_s=0.01)
    stopped = threading.Event()
    connection.stop_stream = lambda cancel_requests=False: stopped.wait(5) or None  # type: ignore[method-assign]
    stream.close()  # returns while the server still owes its answer
    assert connection.calls == []
    stopped.set()
    for _ in range(100):
        if connection.calls:
            break
        time.sleep(0.01)
    assert connection.calls == ["close"]


def test_a_request_on_a_broken_stream_raises_the_error_that_broke_it() -> None:
    connection = Connection()
    stream = GrpcStream(connection, headers=None)
    assert connection.callback is not None
    connection.callback(result=None, error=InferenceServerException(msg="gone", status="StatusCode.UNAVAILABLE"))
    connection.broken = True
    with pytest.raises(InferenceServerException, match="gone") as caught:
        stream.send("rtmo_track", [])
    assert status_of(caught.value) is UnavailableError


class AioConnection:
    """A ``tritonclient.grpc.aio`` client stand-in whose stream answers each request with ``answer(request)``."""

    def __init__(self, answer: Callable[[dict[str, Any]], Any]) -> None:
        self.answer = answer
        self.headers: dict[str, str] | None = {}
        self.cancelled = False

    def stream_infer(self, requests: AsyncIterator[dict[str, Any]], headers: dict[str, str] | None) -> Any:
        self.headers = headers
        connection = self

        class Answers:
            def __aiter__(self) -> Answers:
                return self

            async def __anext__(self) -> Any:
                request = await anext(requests)  # StopAsyncIteration when the requests end
                return connection.answer(request)

            def cancel(self) -> bool:
                connection.cancelled = True
                return True

        return Answers()


def test_the_async_stream_answers_in_order_and_maps_call_errors() -> None:
    def answer(request: dict[str, Any]) -> Any:
        if request["sequence_id"] == 3:
            return None, InferenceServerException(msg="bad frame")  # in-band, as Triton refuses in a stream
        if request["sequence_id"] == 4:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, None, None, details="Socket closed")
        return f"frame of {request['sequence_id']}", None

    async def main() -> None:
        connection = AioConnection(answer)
        stream = AsyncGrpcStream(connection, headers=None)
        assert connection.headers is None
        await stream.send("rtmo_track", [], sequence_id=1)
        await stream.send("rtmo_track", [], sequence_id=2)
        assert [await stream.receive(), await stream.receive()] == ["frame of 1", "frame of 2"]
        await stream.send("rtmo_track", [], sequence_id=3)
        with pytest.raises(StreamRefusal, match="bad frame"):
            await stream.receive()
        await stream.send("rtmo_track", [], sequence_id=4)
        with pytest.raises(InferenceServerException, match="Socket closed") as caught:
            await stream.receive()
        assert status_of(caught.value) is UnavailableError
        with pytest.raises(InferenceServerException) as late:
            await stream.receive(timeout_s=0.01)  # nothing sent: no answer comes
        assert status_of(late.value) is DeadlineExceededError
        await stream.close()  # the requests end, so does the stream; a cancel would risk Triton 2.51's race
        assert not connection.cancelled
        with pytest.raises(InferenceServerException, match="closed"):
            await stream.send("rtmo_track", [])

    asyncio.run(main())
