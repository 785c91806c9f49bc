"""The asyncio client: :class:`AsyncClient`, the same methods as :class:`rtmo_client.Client`, awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from rtmo_client._base import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    READY_MODELS,
    BaseClient,
    close_all,
    given_transports,
    stream_addresses,
)
from rtmo_client._effects import Operation, Steps
from rtmo_client._streaming import Batcher, OrderedWindow, validate_options
from rtmo_client._tracking import (
    TrackStream,
    finish_track,
    new_stream_id,
    track_frame,
    tracking_request_parameters,
)
from rtmo_client.endpoints import Pin
from rtmo_client.images import Channels, ImageInput, Payload, to_payload
from rtmo_client.results import ModelInfo, PoseResult, ServerInfo
from rtmo_client.tracking import TrackedResult
from rtmo_client.transport import AsyncTransport, CertificateSource, async_grpc_transport
from rtmo_client.wire import RetryPolicy
from rtmo_contract import IMAGE_MODEL, TrackingParameters

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """Pose estimation over gRPC with asyncio; see :class:`rtmo_client.Client` for every argument.

    Example:
        >>> async with rtmo_client.AsyncClient("localhost:8001") as client:
        ...     result = await client.estimate("photo.jpg")
        ...     async for result in client.stream(paths, max_in_flight=8):
        ...         ...

    The gRPC channel belongs to the event loop it was created in: create the client inside the loop that uses it.
    """

    def __init__(
        self,
        url: str | Sequence[str] = DEFAULT_URL,
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        ssl: bool = False,
        root_certificates: CertificateSource | None = None,
        private_key: CertificateSource | None = None,
        certificate_chain: CertificateSource | None = None,
        headers: Mapping[str, str] | None = None,
        retries: int | RetryPolicy = DEFAULT_RETRIES,
        shared_memory: bool = False,
        transport: AsyncTransport | Sequence[AsyncTransport] | None = None,
    ) -> None:
        """See :meth:`rtmo_client.Client.__init__`."""
        self._base = BaseClient(
            url,
            timeout_s=timeout_s,
            ssl=ssl,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
            headers=headers,
            retries=retries,
            shared_memory=shared_memory,
        )
        credentials = self._base.credentials
        self._transports: Sequence[AsyncTransport] = given_transports(transport, self._base.targets) or [
            async_grpc_transport(endpoint, credentials=credentials) for endpoint in self._base.targets.urls
        ]
        self._own_channels = transport is None

    @property
    def url(self) -> str:
        """The server's ``host:port`` (the endpoints, comma separated, when there are several)."""
        return self._base.url

    # -- calls --------------------------------------------------------------------------------------------------

    async def _drive(self, operation: Operation[T], transports: Sequence[AsyncTransport] | None = None) -> T:
        """Perform the effects of ``operation`` on ``transports`` (default: the client's), awaiting each."""
        on = self._transports if transports is None else transports
        steps = Steps(operation)
        for effect in steps:
            with steps.outcome():
                steps.result = await effect.perform(on, asyncio.sleep)
        return steps.value

    async def server_info(self, *, timeout_s: float | None = None) -> ServerInfo:
        """See :meth:`rtmo_client.Client.server_info`."""
        return await self._drive(self._base.server_info(timeout_s))

    async def model_info(self, model: str = IMAGE_MODEL, *, timeout_s: float | None = None) -> ModelInfo:
        """See :meth:`rtmo_client.Client.model_info`."""
        return await self._drive(self._base.model_info(model, timeout_s))

    async def wait_until_ready(self, timeout_s: float = 60.0, *, models: Sequence[str] = READY_MODELS) -> None:
        """See :meth:`rtmo_client.Client.wait_until_ready`."""
        await self._drive(self._base.wait_until_ready(timeout_s, models))

    # -- inference ----------------------------------------------------------------------------------------------

    async def estimate(
        self,
        image: ImageInput,
        *,
        channels: Channels | None = None,
        score_threshold: float | None = None,
        nms_iou_threshold: float | None = None,
        max_people: int | None = None,
        pose_nms: bool | None = None,
        timeout_s: float | None = None,
    ) -> PoseResult:
        """See :meth:`rtmo_client.Client.estimate`."""
        parameters = self._base.parameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        return await self._drive(self._base.estimate(image, channels, parameters, timeout_s))

    async def estimate_batch(
        self,
        images: Sequence[ImageInput],
        *,
        channels: Channels | None = None,
        score_threshold: float | None = None,
        nms_iou_threshold: float | None = None,
        max_people: int | None = None,
        pose_nms: bool | None = None,
        timeout_s: float | None = None,
    ) -> list[PoseResult]:
        """See :meth:`rtmo_client.Client.estimate_batch`."""
        parameters = self._base.parameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        return await self._drive(self._base.estimate_batch(images, channels, parameters, timeout_s))

    def stream(
        self,
        images: Iterable[ImageInput] | AsyncIterable[ImageInput],
        *,
        max_in_flight: int = 4,
        batch_size: int = 1,
        channels: Channels | None = None,
        score_threshold: float | None = None,
        nms_iou_threshold: float | None = None,
        max_people: int | None = None,
        pose_nms: bool | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[PoseResult]:
        """See :meth:`rtmo_client.Client.stream`; ``images`` may also be an async iterable. Use with ``async for``."""
        validate_options(max_in_flight=max_in_flight, batch_size=batch_size)
        parameters = self._base.parameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        return self._stream(images, channels, parameters, timeout_s, max_in_flight=max_in_flight, batch_size=batch_size)

    async def _stream(
        self,
        images: Iterable[ImageInput] | AsyncIterable[ImageInput],
        channels: Channels | None,
        parameters: dict[str, Any] | None,
        timeout_s: float | None,
        *,
        max_in_flight: int,
        batch_size: int,
    ) -> AsyncIterator[PoseResult]:
        window: OrderedWindow[asyncio.Task[list[PoseResult]]] = OrderedWindow(max_in_flight)
        transports, pin = self._stream_endpoints()
        try:
            async for run in _batches(images, channels, batch_size):
                async for result in _make_room(window):
                    yield result
                request = self._base.run(run, parameters, timeout_s, pin)
                window.pending.append(asyncio.ensure_future(self._drive(request, transports)))
            while window.pending:
                for result in await window.pending.popleft():
                    yield result
        finally:
            for task in window.pending:
                task.cancel()
            if window.pending:
                await asyncio.gather(*window.pending, return_exceptions=True)
            if transports is not self._transports:
                await self._drive(close_all(len(transports)), transports)

    def _stream_endpoints(self) -> tuple[Sequence[AsyncTransport], Pin]:
        """See :meth:`rtmo_client.Client._stream_endpoints`."""
        targets = self._base.targets
        if not (targets.dns and self._own_channels):
            return self._transports, self._base.balancer.next()
        addresses, host = stream_addresses(targets)
        credentials = self._base.credentials
        transports = [async_grpc_transport(a, credentials=credentials, tls_target_name=host) for a in addresses]
        return transports, self._base.stream_pin(len(transports))

    def track(
        self,
        frames: Iterable[ImageInput] | AsyncIterable[ImageInput],
        *,
        stream_id: int | None = None,
        channels: Channels | None = None,
        tracking: TrackingParameters | None = None,
        restart_on_loss: bool = False,
        score_threshold: float | None = None,
        nms_iou_threshold: float | None = None,
        max_people: int | None = None,
        pose_nms: bool | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[TrackedResult]:
        """See :meth:`rtmo_client.Client.track`; ``frames`` may also be an async iterable. Use with ``async for``;
        several videos at once: one ``track`` per video, e.g. in ``asyncio.gather``. To END the sequence at once
        after a ``break``, iterate inside ``contextlib.aclosing(...)`` (otherwise that waits until the event loop
        finalizes the iterator)."""
        stream = TrackStream(new_stream_id(stream_id), restart_on_loss)
        detection = self._base.parameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        parameters = tracking_request_parameters(detection, tracking)
        return self._track(stream, frames, channels, parameters, timeout_s)

    async def _track(
        self,
        stream: TrackStream,
        frames: Iterable[ImageInput] | AsyncIterable[ImageInput],
        channels: Channels | None,
        parameters: dict[str, Any] | None,
        timeout_s: float | None,
    ) -> AsyncIterator[TrackedResult]:
        transports, pin = self._stream_endpoints()  # one server holds the sequence's tracks
        try:
            async for image, last in _with_last(_aiter(frames)):
                frame = stream.frame(image, channels)
                operation = track_frame(
                    self._base, stream, frame, last=last, parameters=parameters, timeout_s=timeout_s, pin=pin
                )
                yield await self._drive(operation, transports)
        finally:
            try:
                finish = finish_track(self._base, stream, parameters=parameters, timeout_s=timeout_s)
                await self._drive(finish, transports)
            finally:
                if transports is not self._transports:
                    await self._drive(close_all(len(transports)), transports)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Unregister shared memory and close the channel; idempotent."""
        await self._drive(self._base.close())

    async def aclose(self) -> None:
        """The same as :meth:`close` (the httpx name)."""
        await self.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def _batches(
    images: Iterable[ImageInput] | AsyncIterable[ImageInput], channels: Channels | None, batch_size: int
) -> AsyncIterator[list[Payload]]:
    """``rtmo_client._streaming.batches`` of images read from a plain or an async iterable."""
    batcher = Batcher(batch_size)
    index = 0
    async for image in _aiter(images):
        if (run := batcher.add(to_payload(image, channels=channels, name=f"images[{index}]"))) is not None:
            yield run
        index += 1
    if (run := batcher.flush()) is not None:
        yield run


async def _aiter(images: Iterable[ImageInput] | AsyncIterable[ImageInput]) -> AsyncIterator[ImageInput]:
    if isinstance(images, AsyncIterable):
        async for image in images:
            yield image
    else:
        for image in images:
            yield image


async def _with_last(items: AsyncIterator[ImageInput]) -> AsyncIterator[tuple[ImageInput, bool]]:
    """``rtmo_client._tracking.with_last`` for an async iterator."""
    try:
        current = await anext(items)
    except StopAsyncIteration:
        return
    while True:
        try:
            following = await anext(items)
        except StopAsyncIteration:
            yield current, True
            return
        yield current, False
        current = following


async def _make_room(window: OrderedWindow[asyncio.Task[list[PoseResult]]]) -> AsyncIterator[PoseResult]:
    """Yield the results that are in order until another request may be sent (see :class:`OrderedWindow`)."""
    for result in window.answered():
        yield result
    while unanswered := window.blocking():
        await asyncio.wait(unanswered, return_when=asyncio.FIRST_COMPLETED)
        for result in window.answered():
            yield result
