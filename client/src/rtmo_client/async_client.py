"""The asyncio client: :class:`AsyncClient`, the same methods as :class:`rtmo_client.Client`, awaitable."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from tritonclient.utils import InferenceServerException

from rtmo_client._base import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, DEFAULT_URL, READY_MODELS, BaseClient, registration_error
from rtmo_client._core import (
    FRAME_MODEL,
    IMAGE_MODEL,
    Batcher,
    InferResultLike,
    RetryPolicy,
    build_inputs,
    decode_result,
    model_for,
    parse_model_info,
    parse_server_info,
    validate_options,
)
from rtmo_client._shm import Region, batch_bytes, frame_input_in
from rtmo_client.errors import UnavailableError, from_triton_error
from rtmo_client.images import Channels, Frame, ImageInput, Payload, to_payload
from rtmo_client.results import ModelInfo, PoseResult, ServerInfo
from rtmo_client.transport import AsyncTransport, CertificateSource, async_grpc_transport

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
        url: str = DEFAULT_URL,
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        ssl: bool = False,
        root_certificates: CertificateSource | None = None,
        private_key: CertificateSource | None = None,
        certificate_chain: CertificateSource | None = None,
        headers: Mapping[str, str] | None = None,
        retries: int | RetryPolicy = DEFAULT_RETRIES,
        shared_memory: bool = False,
        transport: AsyncTransport | None = None,
    ) -> None:
        """See :meth:`rtmo_client.Client.__init__`."""
        self._base = BaseClient(
            url, timeout_s=timeout_s, ssl=ssl, root_certificates=root_certificates, private_key=private_key,
            certificate_chain=certificate_chain, headers=headers, retries=retries, shared_memory=shared_memory,
        )
        self._transport = transport if transport is not None else async_grpc_transport(url, credentials=self._base.credentials)

    @property
    def url(self) -> str:
        """The server's ``host:port``."""
        return self._base.url

    # -- calls --------------------------------------------------------------------------------------------------

    async def _call(self, attempt: Callable[[], Awaitable[T]], *, idempotent: bool = True) -> T:
        retry = 0
        while True:
            try:
                return await attempt()
            except InferenceServerException as error:
                mapped = from_triton_error(error)
                if not self._base.should_retry(mapped, retry, idempotent=idempotent):
                    raise mapped from error
            await asyncio.sleep(self._base.retry.backoff_s(retry))
            retry += 1

    async def server_info(self, *, timeout_s: float | None = None) -> ServerInfo:
        """See :meth:`rtmo_client.Client.server_info`."""
        self._base.check_open()
        deadline = self._base.deadline(timeout_s)
        metadata = await self._call(
            lambda: self._transport.get_server_metadata(headers=self._base.headers, as_json=True, client_timeout=deadline)
        )
        return parse_server_info(metadata)

    async def model_info(self, model: str = IMAGE_MODEL, *, timeout_s: float | None = None) -> ModelInfo:
        """See :meth:`rtmo_client.Client.model_info`."""
        self._base.check_open()
        deadline = self._base.deadline(timeout_s)
        config = await self._call(
            lambda: self._transport.get_model_config(model, headers=self._base.headers, as_json=True, client_timeout=deadline)
        )
        info = parse_model_info(config)
        self._base.infos[model] = info
        return info

    async def _info_for(self, model: str, timeout_s: float | None) -> ModelInfo:
        info = self._base.infos.get(model)
        return info if info is not None else await self.model_info(model, timeout_s=timeout_s)

    async def wait_until_ready(self, timeout_s: float = 60.0, *, models: Sequence[str] = READY_MODELS) -> None:
        """See :meth:`rtmo_client.Client.wait_until_ready`."""
        self._base.check_open()
        deadline_s = time.monotonic() + timeout_s
        pause_s, reason = 0.05, "no answer yet"
        while True:
            try:
                per_call = self._base.poll_timeout_s(deadline_s)
                if await self._transport.is_server_ready(headers=self._base.headers, client_timeout=per_call):
                    waiting = [
                        m for m in models if not await self._transport.is_model_ready(m, headers=self._base.headers, client_timeout=per_call)
                    ]
                    if not waiting:
                        return
                    reason = f"models not ready: {waiting}"
                else:
                    reason = "server not ready"
                unreachable = False
            except InferenceServerException as error:
                reason, unreachable = self._base.unready_reason(error), True
            if time.monotonic() + pause_s > deadline_s:
                raise self._base.not_ready_error(timeout_s, reason, unreachable=unreachable)
            await asyncio.sleep(pause_s)
            pause_s = min(0.5, pause_s * 2)

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
        payload = to_payload(image, channels=channels)
        parameters = self._base.parameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        return (await self._run([payload], parameters, timeout_s))[0]

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
        payloads = self._base.payloads(images, channels)
        parameters = self._base.parameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        return await self._run(payloads, parameters, timeout_s)

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
        pending: deque[asyncio.Task[list[PoseResult]]] = deque()
        batcher = Batcher(batch_size)
        try:
            index = 0
            async for image in _aiter(images):
                run = batcher.add(to_payload(image, channels=channels, name=f"images[{index}]"))
                index += 1
                if run is not None:
                    async for result in _make_room(pending, max_in_flight):
                        yield result
                    pending.append(asyncio.ensure_future(self._run(run, parameters, timeout_s)))
            if (run := batcher.flush()) is not None:
                async for result in _make_room(pending, max_in_flight):
                    yield result
                pending.append(asyncio.ensure_future(self._run(run, parameters, timeout_s)))
            while pending:
                for result in await pending.popleft():
                    yield result
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def _run(self, payloads: Sequence[Payload], parameters: dict[str, Any] | None, timeout_s: float | None) -> list[PoseResult]:
        self._base.check_open()
        model = model_for(payloads)
        deadline = self._base.deadline(timeout_s)
        info = await self._info_for(model, timeout_s)
        if self._base.pool is not None and model == FRAME_MODEL:
            frames = [p for p in payloads if isinstance(p, Frame)]
            result = await self._call(lambda: self._infer_shared(frames, parameters, deadline))
        else:
            _, inputs = build_inputs(payloads)
            result = await self._call(
                lambda: self._transport.infer(model, inputs, client_timeout=deadline, headers=self._base.headers, parameters=parameters)
            )
        return decode_result(result, payloads, info)

    async def _infer_shared(self, frames: Sequence[Frame], parameters: dict[str, Any] | None, deadline: float | None) -> InferResultLike:
        pool = self._base.pool
        assert pool is not None  # noqa: S101 - only called with a pool
        region, stale = pool.checkout(batch_bytes(frames))
        try:
            if stale is not None:
                await self._drop_region(stale)
            if not region.registered:
                await self._register(region)
            inputs = [frame_input_in(region, frames)]
            return await self._transport.infer(FRAME_MODEL, inputs, client_timeout=deadline, headers=self._base.headers, parameters=parameters)
        finally:
            pool.release(region)

    async def _register(self, region: Region) -> None:
        try:
            await self._transport.register_system_shared_memory(region.name, region.key, region.byte_size, headers=self._base.headers)
        except InferenceServerException as error:
            problem = registration_error(error, region.name)
            if isinstance(problem, UnavailableError):
                raise
            if problem is not None:
                raise problem from error
        region.registered = True

    async def _drop_region(self, region: Region) -> None:
        try:
            await self._transport.unregister_system_shared_memory(region.name, headers=self._base.headers)
        except InferenceServerException:
            pass  # the server may have restarted or be gone; the local region goes either way
        assert self._base.pool is not None  # noqa: S101
        self._base.pool.destroy(region)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Unregister shared memory and close the channel; idempotent."""
        if self._base.closed:
            return
        self._base.closed = True
        if self._base.pool is not None:
            for region in self._base.pool.regions():
                await self._drop_region(region)
        await self._transport.close()

    async def aclose(self) -> None:
        """The same as :meth:`close` (the httpx name)."""
        await self.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


async def _aiter(images: Iterable[ImageInput] | AsyncIterable[ImageInput]) -> AsyncIterator[ImageInput]:
    if isinstance(images, AsyncIterable):
        async for image in images:
            yield image
    else:
        for image in images:
            yield image


async def _make_room(pending: deque[asyncio.Task[list[PoseResult]]], max_in_flight: int) -> AsyncIterator[PoseResult]:
    """Yield finished results at the head of ``pending`` until another request may be sent (see ``client._make_room``)."""
    while True:
        while pending and pending[0].done():
            for result in pending.popleft().result():
                yield result
        unanswered = [task for task in pending if not task.done()]
        if len(unanswered) < max_in_flight and len(pending) < 2 * max_in_flight:
            return
        await asyncio.wait(unanswered, return_when=asyncio.FIRST_COMPLETED)
