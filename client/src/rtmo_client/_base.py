"""Everything :class:`Client` and :class:`AsyncClient` do, written once as operations that yield their I/O.

Each public operation of :class:`BaseClient` is a generator of :mod:`rtmo_client._effects` (transport calls and
sleeps): retries, error mapping, deadlines, readiness polling, the model-info cache, request building, decoding,
shared memory registration and closing live here, and a client only performs the effects, blocking or awaiting.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from tritonclient.utils import InferenceServerException

from rtmo_client._effects import Operation, Sleep, call, stream_call
from rtmo_client._shm import SERVER_FLAG_HINT, FramePool, Region, batch_bytes, frame_input_in
from rtmo_client.endpoints import Pin, RoundRobin, Targets, resolve_addresses
from rtmo_client.errors import (
    ModelNotReadyError,
    RTMOClientError,
    SharedMemoryError,
    UnavailableError,
    from_triton_error,
    status_name,
)
from rtmo_client.images import Channels, Frame, Payload, to_payload
from rtmo_client.results import ModelInfo, PoseResult, ServerInfo
from rtmo_client.transport import CertificateSource, tls_credentials
from rtmo_client.wire import (
    InferResultLike,
    RetryPolicy,
    decode_result,
    inputs_for,
    model_for,
    parse_model_info,
    parse_server_info,
    request_parameters,
    retry_policy,
)
from rtmo_contract import ENSEMBLES, FRAME_MODEL

LOGGER = logging.getLogger("rtmo_client")

DEFAULT_URL = "localhost:8001"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 3
READY_MODELS = ENSEMBLES

T = TypeVar("T")
TransportT = TypeVar("TransportT")


class BaseClient:
    """Options, the keypoint-name cache, the shared memory regions and the operations of both clients."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        timeout_s: float | None,
        ssl: bool,
        root_certificates: CertificateSource | None,
        private_key: CertificateSource | None,
        certificate_chain: CertificateSource | None,
        headers: Mapping[str, str] | None,
        retries: int | RetryPolicy,
        shared_memory: bool,
    ) -> None:
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s={timeout_s}; accepted: a positive number of seconds, or None for no limit")
        if not ssl and any(pem is not None for pem in (root_certificates, private_key, certificate_chain)):
            raise ValueError("root_certificates, private_key and certificate_chain need ssl=True")
        self.targets = Targets.parse(url)
        if shared_memory and (len(self.targets.urls) > 1 or self.targets.dns):
            raise ValueError(
                f"shared_memory=True with url={url!r}; shared memory needs the one server on this host: give one "
                "'host:port'"
            )
        self.url = str(self.targets)
        self.balancer = RoundRobin(len(self.targets.urls))
        self._stream_turns = itertools.count()  # which address of a dns:/// target the next stream is pinned to
        self.timeout_s = timeout_s
        self.headers = dict(headers) if headers else None
        self.retry = retry_policy(retries)
        self.credentials = (
            tls_credentials(
                root_certificates=root_certificates, private_key=private_key, certificate_chain=certificate_chain
            )
            if ssl
            else None
        )
        self.infos: dict[str, ModelInfo] = {}
        self.pool = FramePool() if shared_memory else None
        self.closed = False
        # Client is shared between threads; AsyncClient holds it across no await, so the loop never blocks on it.
        self._close_lock = threading.Lock()
        self._open_streams: list[Any] = []  # the gRPC streams of tracked videos, closed with the client

    # -- helpers ------------------------------------------------------------------------------------------------

    def deadline(self, timeout_s: float | None) -> float | None:
        return self.timeout_s if timeout_s is None else timeout_s

    def check_open(self) -> None:
        if self.closed:
            raise RTMOClientError("this client is closed; create a new one")

    @staticmethod
    def parameters(
        score_threshold: float | None, nms_iou_threshold: float | None, max_people: int | None, pose_nms: bool | None
    ) -> dict[str, Any] | None:
        return request_parameters(
            score_threshold=score_threshold,
            nms_iou_threshold=nms_iou_threshold,
            max_people=max_people,
            pose_nms=pose_nms,
        )

    def _should_retry(self, error: RTMOClientError, retry: int, endpoint: int) -> bool:
        """Whether to try again: UNAVAILABLE and NOT_FOUND, within the retry budget.

        NOT_FOUND is what a model being reloaded answers ("has no available versions": the server heals a crashed
        stub by unloading and loading its model), so it is as transient as a restarting server.
        """
        if not (isinstance(error, (UnavailableError, ModelNotReadyError)) and retry < self.retry.max_retries):
            return False
        LOGGER.info(
            "%s is unavailable (%s); retry %d of %d",
            self.endpoint_url(endpoint),
            error.message,
            retry + 1,
            self.retry.max_retries,
        )
        if self.pool is not None and isinstance(error, UnavailableError):
            self.pool.mark_unregistered()  # a restarted server forgot our regions
        return True

    def stream_pin(self, count: int) -> Pin:
        """The pin of a stream over its own ``count`` addresses of a ``dns:///`` target, streams taking turns."""
        return Pin(next(self._stream_turns) % count, count)

    def endpoint_url(self, endpoint: int) -> str:
        """The URL of endpoint number ``endpoint`` (a stream on a ``dns:///`` target has its own list)."""
        urls = self.targets.urls
        return urls[endpoint] if endpoint < len(urls) else f"{self.url} (address {endpoint})"

    def _retried(self, attempt: Callable[[int], Operation[T]], pin: Pin | None = None) -> Operation[T]:
        """Run ``attempt(endpoint)``, translating tritonclient errors, retrying UNAVAILABLE and NOT_FOUND with backoff.

        The first attempt goes to ``pin``'s endpoint (default: the next in turn), each retry to the next endpoint.
        Only idempotent calls go through here (reads and inference); closing is never retried.
        """
        pin = pin if pin is not None else self.balancer.next()
        endpoint = pin.endpoint
        retry = 0
        while True:
            try:
                return (yield from attempt(endpoint))
            except InferenceServerException as error:
                mapped = from_triton_error(error)
                if not self._should_retry(mapped, retry, endpoint):
                    raise mapped from error
            endpoint = pin.move_from(endpoint)
            yield Sleep(self.retry.backoff_s(retry))
            retry += 1

    # -- metadata and readiness ---------------------------------------------------------------------------------

    def server_info(self, timeout_s: float | None) -> Operation[ServerInfo]:
        self.check_open()
        deadline = self.deadline(timeout_s)
        metadata = yield from self._retried(
            lambda endpoint: call(
                "get_server_metadata", endpoint=endpoint, headers=self.headers, as_json=True, client_timeout=deadline
            )
        )
        return parse_server_info(metadata)

    def model_info(self, model: str, timeout_s: float | None) -> Operation[ModelInfo]:
        self.check_open()
        deadline = self.deadline(timeout_s)
        config = yield from self._retried(
            lambda endpoint: call(
                "get_model_config",
                model,
                endpoint=endpoint,
                headers=self.headers,
                as_json=True,
                client_timeout=deadline,
            )
        )
        info = parse_model_info(config)
        self.infos[model] = info
        return info

    def wait_until_ready(self, timeout_s: float, models: Sequence[str]) -> Operation[None]:
        """Poll readiness with growing pauses until every endpoint has ``models`` ready, or ``timeout_s`` has passed."""
        self.check_open()
        deadline_s = time.monotonic() + timeout_s
        pause_s = 0.05
        waiting = list(range(len(self.targets.urls)))  # endpoints not seen ready yet
        while True:
            try:
                unready = None
                while waiting and unready is None:
                    unready = yield from self._unready(models, self._poll_timeout_s(deadline_s), waiting[0])
                    if unready is None:
                        waiting.pop(0)
                if unready is None:
                    return
                reason, unreachable = unready, False
            except InferenceServerException as error:
                reason, unreachable = self._unready_reason(error), True
            if time.monotonic() + pause_s > deadline_s:
                reason = f"{self.endpoint_url(waiting[0])}: {reason}" if len(self.targets.urls) > 1 else reason
                raise self._not_ready_error(timeout_s, reason, unreachable=unreachable)
            yield Sleep(pause_s)
            pause_s = min(0.5, pause_s * 2)

    def _unready(self, models: Sequence[str], timeout_s: float, endpoint: int) -> Operation[str | None]:
        """Why the server at ``endpoint`` or one of its ``models`` is not ready yet, or None when all are."""
        if not (yield from call("is_server_ready", endpoint=endpoint, headers=self.headers, client_timeout=timeout_s)):
            return "server not ready"
        waiting = []
        for model in models:
            if not (
                yield from call(
                    "is_model_ready", model, endpoint=endpoint, headers=self.headers, client_timeout=timeout_s
                )
            ):
                waiting.append(model)
        return f"models not ready: {waiting}" if waiting else None

    def _poll_timeout_s(self, deadline_s: float) -> float:
        """Deadline of one readiness call made while waiting until ``deadline_s`` (a ``time.monotonic`` value)."""
        remaining_s = deadline_s - time.monotonic()
        return max(0.05, min(remaining_s, self.timeout_s or remaining_s))

    @staticmethod
    def _unready_reason(error: InferenceServerException) -> str:
        """Why a readiness call failed, when waiting should go on (unreachable or slow); other errors are raised."""
        mapped = from_triton_error(error)
        if not isinstance(mapped, UnavailableError) and mapped.status != "DEADLINE_EXCEEDED":
            raise mapped from error
        return mapped.message

    def _not_ready_error(self, timeout_s: float, reason: str, *, unreachable: bool) -> RTMOClientError:
        """What ``wait_until_ready`` raises when ``timeout_s`` has passed."""
        if unreachable:
            return UnavailableError(f"{self.url} did not answer within {timeout_s} s: {reason}", status="UNAVAILABLE")
        return ModelNotReadyError(f"{self.url} was not ready within {timeout_s} s: {reason}")

    # -- inference ----------------------------------------------------------------------------------------------

    def estimate(
        self, image: object, channels: Channels | None, parameters: dict[str, Any] | None, timeout_s: float | None
    ) -> Operation[PoseResult]:
        results = yield from self.run([to_payload(image, channels=channels)], parameters, timeout_s)
        return results[0]

    def estimate_batch(
        self,
        images: Sequence[object],
        channels: Channels | None,
        parameters: dict[str, Any] | None,
        timeout_s: float | None,
    ) -> Operation[list[PoseResult]]:
        payloads = [to_payload(image, channels=channels, name=f"images[{index}]") for index, image in enumerate(images)]
        return (yield from self.run(payloads, parameters, timeout_s))

    def run(
        self,
        payloads: Sequence[Payload],
        parameters: dict[str, Any] | None,
        timeout_s: float | None,
        pin: Pin | None = None,
    ) -> Operation[list[PoseResult]]:
        """One request for ``payloads``, retried as a whole; ``model_info`` first if its keypoint names are unknown.

        ``pin``: the endpoint of a stream (default: the next in turn).
        """
        self.check_open()
        model = model_for(payloads)
        deadline = self.deadline(timeout_s)
        info = self.infos.get(model)
        if info is None:
            info = yield from self.model_info(model, timeout_s)
        if self.pool is not None and model == FRAME_MODEL:
            frames = [p for p in payloads if isinstance(p, Frame)]
            result = yield from self._retried(lambda _: self._infer_shared(frames, parameters, deadline))
        else:
            inputs = inputs_for(model, payloads)
            result = yield from self._retried(
                lambda endpoint: call(
                    "infer",
                    model,
                    inputs,
                    endpoint=endpoint,
                    client_timeout=deadline,
                    headers=self.headers,
                    parameters=parameters,
                ),
                pin,
            )
        return decode_result(result, payloads, info)

    def _infer_shared(
        self, frames: Sequence[Frame], parameters: dict[str, Any] | None, deadline: float | None
    ) -> Operation[InferResultLike]:
        pool = self.pool
        assert pool is not None  # noqa: S101 - only called with a pool
        region, stale = pool.checkout(batch_bytes(frames))
        try:
            if stale is not None:
                yield from self._drop_region(stale)
            if not region.registered:
                yield from self._register(region)
            inputs = [frame_input_in(region, frames)]
            result: InferResultLike = yield from call(
                "infer", FRAME_MODEL, inputs, client_timeout=deadline, headers=self.headers, parameters=parameters
            )
            return result
        finally:
            pool.release(region)

    def _register(self, region: Region) -> Operation[None]:
        try:
            yield from call(
                "register_system_shared_memory", region.name, region.key, region.byte_size, headers=self.headers
            )
        except InferenceServerException as error:
            problem = registration_error(error, region.name)
            if isinstance(problem, UnavailableError):
                raise  # the caller's retry loop handles it
            if problem is not None:
                raise problem from error
        region.registered = True

    def _drop_region(self, region: Region) -> Operation[None]:
        try:
            yield from call("unregister_system_shared_memory", region.name, headers=self.headers)
        except InferenceServerException:
            pass  # the server may have restarted or be gone; the local region goes either way
        assert self.pool is not None  # noqa: S101
        self.pool.destroy(region)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def keep_stream(self, stream: Any) -> bool:
        """Remember an open stream, to close it with the client; False (not kept) if the client is closed."""
        with self._close_lock:
            if self.closed:
                return False
            self._open_streams.append(stream)
            return True

    def forget_stream(self, stream: Any) -> None:
        """A stream that was closed on its own."""
        with self._close_lock:
            if stream in self._open_streams:
                self._open_streams.remove(stream)

    def close(self) -> Operation[None]:
        """Close the open streams, unregister and remove the shared memory regions, then close the transport; only
        the first call does."""
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
            streams, self._open_streams = self._open_streams, []
        try:
            for stream in streams:
                yield from close_stream(stream)
            if self.pool is not None:
                for region in self.pool.regions():
                    yield from self._drop_region(region)
        finally:
            yield from close_all(len(self.targets.urls))


def close_stream(stream: Any) -> Operation[None]:
    """Close an open stream; a broken one may fail to, which changes nothing (it is gone either way)."""
    try:
        yield from stream_call(stream, "close")
    except Exception as error:  # best effort: the stream is dropped whatever happens
        LOGGER.debug("closing a stream failed: %s", error)


def close_all(count: int, endpoint: int = 0) -> Operation[None]:
    """Close the transports of endpoints ``endpoint`` to ``count - 1``, each even when an earlier one fails."""
    if endpoint < count:
        try:
            yield from call("close", endpoint=endpoint)
        finally:
            yield from close_all(count, endpoint + 1)


def registration_error(error: InferenceServerException, region_name: str) -> RTMOClientError | None:
    """How a failed shared memory registration surfaces: None if already registered, else an error to raise.

    UNAVAILABLE stays an :class:`UnavailableError` (so the whole request is retried); anything else becomes a
    :class:`SharedMemoryError` carrying the server's message and the hint about ``--allow-client-shm``.
    """
    status = status_name(error)
    if status == "ALREADY_EXISTS":
        return None
    mapped = from_triton_error(error)
    if isinstance(mapped, UnavailableError):
        return mapped
    return SharedMemoryError(
        f"the server refused shared memory region {region_name!r}: {mapped.message} ({SERVER_FLAG_HINT})", status=status
    )


def given_transports(transport: TransportT | Sequence[TransportT] | None, targets: Targets) -> list[TransportT] | None:
    """The transports a caller passed (one, or one per endpoint of ``targets``), or None to make gRPC channels.

    Raises:
        ValueError: not one transport per endpoint.
    """
    if transport is None:
        return None
    transports: list[TransportT] = list(transport) if isinstance(transport, (list, tuple)) else [transport]  # type: ignore[list-item]
    if len(transports) != len(targets.urls):
        raise ValueError(
            f"transport: {len(transports)} given for {len(targets.urls)} endpoint(s) ({targets}); accepted: one per "
            "endpoint"
        )
    return transports


def stream_addresses(targets: Targets) -> tuple[list[str], str]:
    """The addresses a stream on the ``dns:///`` target may pin to, and the host name (for TLS).

    Raises:
        UnavailableError: the name does not resolve, or to no address.
    """
    target = targets.urls[0]
    try:
        addresses = resolve_addresses(target)
    except OSError as error:
        raise UnavailableError(f"{target} does not resolve: {error}", status="UNAVAILABLE") from error
    if not addresses:
        raise UnavailableError(f"{target} resolves to no address", status="UNAVAILABLE")
    host = target.removeprefix("dns:///").rpartition(":")[0].strip("[]")
    return addresses, host
