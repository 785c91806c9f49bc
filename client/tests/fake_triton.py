"""A fake ``tritonclient.grpc`` transport for unit tests (no server): records requests, answers from a handler."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import Any

import cv2
import numpy as np
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

from rtmo_client.grpc_stream import StreamRefusal

KEYPOINT_NAMES = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
]
SKELETON = [[15, 13], [13, 11], [5, 6], [5, 7], [7, 9]]
J = len(KEYPOINT_NAMES)


def model_config(name: str = "rtmo", *, keypoint_names: list[str] = KEYPOINT_NAMES) -> dict[str, Any]:
    import json

    parameters = {
        "keypoint_names": json.dumps(keypoint_names),
        "skeleton": json.dumps(SKELETON),
        "input_size": "416",
        "checkpoint": "random:tiny-calibrated",
        "checkpoint_sha256": "random",
        "top_k": "256",
    }
    wrapped = {key: {"string_value": value} for key, value in parameters.items()}
    return {"config": {"name": name, "max_batch_size": 8, "parameters": wrapped}}


def error(status: str, message: str = "boom") -> InferenceServerException:
    return InferenceServerException(msg=message, status=f"StatusCode.{status}")


@dataclass
class Request:
    """One ``infer`` call as the server would see it."""

    model: str
    input_name: str
    datatype: str
    shape: list[int]
    rows: list[Any]  # bytes per row (BYTES), or None for frames
    array: np.ndarray | None  # the uint8 frame batch (from the body or the shared memory region)
    shm_region: str | None
    parameters: dict[str, Any] | None
    client_timeout: float | None
    headers: dict[str, str] | None


class FakeResult:
    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.outputs = outputs

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self.outputs.get(name)


def outputs_for(
    counts: list[int],
    *,
    truncated: list[bool] | None = None,
    seed: int = 0,
    image_sizes: list[tuple[int, int]] | None = None,
) -> dict[str, np.ndarray]:
    """Padded outputs as the ensemble returns them, with ``counts[row]`` people per row; values encode (row, person).

    ``image_sizes`` (width, height per row) become the ``image_size`` output; without them it is left out, as an
    older server would."""
    rows, n = len(counts), max(counts, default=0)
    boxes = np.zeros((rows, n, 4), np.float32)
    box_scores = np.zeros((rows, n), np.float32)
    keypoints = np.zeros((rows, n, J, 2), np.float32)
    keypoint_scores = np.zeros((rows, n, J), np.float32)
    for row, count in enumerate(counts):
        for i in range(count):
            base = 100.0 * row + 10.0 * i + seed
            boxes[row, i] = [base, base + 1, base + 50, base + 80]
            box_scores[row, i] = 0.9 - 0.1 * i
            keypoints[row, i, :, 0] = base + np.arange(J)
            keypoints[row, i, :, 1] = base + 2 * np.arange(J)
            keypoint_scores[row, i] = np.linspace(0.2, 0.95, J, dtype=np.float32)
    outputs = {
        "boxes": boxes,
        "box_scores": box_scores,
        "keypoints": keypoints,
        "keypoint_scores": keypoint_scores,
        "num_people": np.array(counts, np.int32).reshape(rows, 1),
        "truncated": np.array(truncated or [False] * rows).reshape(rows, 1),
    }
    if image_sizes is not None:
        outputs["image_size"] = np.array(image_sizes, np.int32).reshape(rows, 2)
    return outputs


def image_sizes(request: Request) -> list[tuple[int, int]]:
    """(width, height) of each row as the server decodes it (OpenCV, EXIF orientation applied)."""
    if request.array is not None:
        return [(int(request.array.shape[2]), int(request.array.shape[1]))] * request.shape[0]
    sizes = []
    for data in request.rows:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        sizes.append((0, 0) if image is None else (int(image.shape[1]), int(image.shape[0])))
    return sizes


def people_by_row_count(request: Request) -> FakeResult:
    """Default handler: row r of a request has r + 1 people."""
    return FakeResult(outputs_for([row + 1 for row in range(request.shape[0])], image_sizes=image_sizes(request)))


class FakeStream:
    """Implements :class:`rtmo_client.transport.SyncStream` on a fake transport: each request is answered by its
    ``infer`` when sent, in order. As Triton does, a refused request is answered in-band without a status (a
    :class:`StreamRefusal`) and the stream goes on; UNAVAILABLE and DEADLINE_EXCEEDED end the call."""

    def __init__(self, transport: FakeTransport, headers: dict[str, str] | None) -> None:
        self.transport = transport
        self.headers = headers
        self.answers: list[Any] = []
        self.sent = 0
        self.broken = False
        self.closed = False

    def send(self, model_name: str, inputs: list[Any], **kwargs: Any) -> None:
        if self.closed or self.broken:
            raise InferenceServerException(msg="The stream is no longer in valid state")
        self.sent += 1
        try:
            self.answers.append(self.transport.infer(model_name, inputs, **kwargs))
        except InferenceServerException as failed:
            if str(failed.status()).endswith(("UNAVAILABLE", "DEADLINE_EXCEEDED")):
                self.answers.append(failed)
                self.broken = True
            else:
                self.answers.append(StreamRefusal(msg=failed.message()))

    def receive(self, *, timeout_s: float | None = None) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeTransport:
    """Implements :class:`rtmo_client.transport.SyncTransport`; ``failures`` are raised by the next calls first."""

    handler: Callable[[Request], FakeResult] = people_by_row_count
    failures: list[InferenceServerException] = field(default_factory=list)
    ready_answers: list[Any] = field(default_factory=list)  # per is_server_ready poll: True/False or an exception
    requests: list[Request] = field(default_factory=list)
    registered: dict[str, tuple[str, int]] = field(default_factory=dict)
    register_error: InferenceServerException | None = None
    calls: list[str] = field(default_factory=list)
    streams: list[FakeStream] = field(default_factory=list)
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _fail_first(self, call: str) -> None:
        with self.lock:
            self.calls.append(call)
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure

    def decode(self, model: str, inputs: list[Any], **kwargs: Any) -> Request:
        (tensor,) = inputs
        content = tensor._get_content()
        parameters = tensor._get_tensor().parameters
        region = parameters["shared_memory_region"].string_param if "shared_memory_region" in parameters else None
        rows: list[Any] = []
        array = None
        if tensor.datatype() == "BYTES":
            rows = list(deserialize_bytes_tensor(content))
        elif region is not None:
            size = parameters["shared_memory_byte_size"].int64_param
            memory = shared_memory.SharedMemory(name=self.registered[region][0].lstrip("/"))
            try:
                array = np.frombuffer(bytes(memory.buf[:size]), np.uint8).reshape(tensor.shape())
            finally:
                memory.close()
        else:
            array = np.frombuffer(content, np.uint8).reshape(tensor.shape())
        return Request(
            model,
            tensor.name(),
            tensor.datatype(),
            list(tensor.shape()),
            rows,
            array,
            region,
            kwargs.get("parameters"),
            kwargs.get("client_timeout"),
            kwargs.get("headers"),
        )

    def infer(self, model_name: str, inputs: list[Any], **kwargs: Any) -> FakeResult:
        self._fail_first("infer")
        request = self.decode(model_name, inputs, **kwargs)
        with self.lock:
            self.requests.append(request)
        return self.handler(request)

    def is_server_ready(self, **kwargs: Any) -> bool:
        self.calls.append("is_server_ready")
        answer = self.ready_answers.pop(0) if self.ready_answers else True
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    def is_model_ready(self, model_name: str, **kwargs: Any) -> bool:
        self.calls.append(f"is_model_ready:{model_name}")
        return True

    def get_model_config(self, model_name: str, **kwargs: Any) -> dict[str, Any]:
        self._fail_first(f"get_model_config:{model_name}")
        return model_config(model_name)

    def get_server_metadata(self, **kwargs: Any) -> dict[str, Any]:
        self._fail_first("get_server_metadata")
        return {"name": "triton", "version": "2.51.0", "extensions": ["system_shared_memory"]}

    def register_system_shared_memory(self, name: str, key: str, byte_size: int, **kwargs: Any) -> None:
        self.calls.append(f"register:{name}")
        if self.register_error is not None:
            raise self.register_error
        self.registered[name] = (key, byte_size)

    def unregister_system_shared_memory(self, name: str = "", **kwargs: Any) -> None:
        self.calls.append(f"unregister:{name}")
        self.registered.pop(name, None)

    def open_stream(self, *, headers: dict[str, str] | None = None) -> FakeStream:
        self.calls.append("open_stream")
        stream = FakeStream(self, headers)
        self.streams.append(stream)
        return stream

    def close(self) -> None:
        self.closed = True


class FakeAsyncStream:
    """A :class:`FakeStream` behind awaitables, answering after the transport's ``delay_s``."""

    def __init__(self, transport: FakeAsyncTransport, stream: FakeStream) -> None:
        self.transport = transport
        self.stream = stream
        self.delays: list[float] = []

    async def send(self, model_name: str, inputs: list[Any], **kwargs: Any) -> None:
        if self.transport.delay_s is not None:
            self.delays.append(self.transport.delay_s(self.transport.sync.decode(model_name, inputs, **kwargs)))
        self.stream.send(model_name, inputs, **kwargs)

    async def receive(self, *, timeout_s: float | None = None) -> Any:
        if self.delays:
            await asyncio.sleep(self.delays.pop(0))
        return self.stream.receive(timeout_s=timeout_s)

    async def close(self) -> None:
        self.stream.close()


class FakeAsyncTransport:
    """The same fake behind awaitables (implements :class:`rtmo_client.transport.AsyncTransport`)."""

    def __init__(self, sync: FakeTransport | None = None, *, delay_s: Callable[[Request], float] | None = None) -> None:
        self.sync = sync or FakeTransport()
        self.delay_s = delay_s
        self.in_flight = 0
        self.max_in_flight = 0

    async def infer(self, model_name: str, inputs: list[Any], **kwargs: Any) -> FakeResult:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            request = self.sync.decode(model_name, inputs, **kwargs)
            if self.delay_s is not None:
                await asyncio.sleep(self.delay_s(request))
            return self.sync.infer(model_name, inputs, **kwargs)
        finally:
            self.in_flight -= 1

    async def is_server_ready(self, **kwargs: Any) -> bool:
        return self.sync.is_server_ready(**kwargs)

    async def is_model_ready(self, model_name: str, **kwargs: Any) -> bool:
        return self.sync.is_model_ready(model_name, **kwargs)

    async def get_model_config(self, model_name: str, **kwargs: Any) -> dict[str, Any]:
        return self.sync.get_model_config(model_name, **kwargs)

    async def get_server_metadata(self, **kwargs: Any) -> dict[str, Any]:
        return self.sync.get_server_metadata(**kwargs)

    async def register_system_shared_memory(self, name: str, key: str, byte_size: int, **kwargs: Any) -> None:
        self.sync.register_system_shared_memory(name, key, byte_size, **kwargs)

    async def unregister_system_shared_memory(self, name: str = "", **kwargs: Any) -> None:
        self.sync.unregister_system_shared_memory(name, **kwargs)

    async def open_stream(self, *, headers: dict[str, str] | None = None) -> FakeAsyncStream:
        return FakeAsyncStream(self, self.sync.open_stream(headers=headers))

    async def close(self) -> None:
        self.sync.close()
