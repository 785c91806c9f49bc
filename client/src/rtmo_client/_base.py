"""Everything :class:`Client` and :class:`AsyncClient` do, written once as operations that yield their I/O.

Each public operation of :class:`BaseClient` is a generator of :mod:`rtmo_client._effects` (transport calls and
sleeps): retries, error mapping, deadlines, readiness polling, the model-info cache, request building, decoding,
shared memory registration and closing live here, and a client only performs the effects, blocking or awaiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from tritonclient.utils import InferenceServerException

from rtmo_client._effects import Operation, Sleep, call
from rtmo_client._shm import SERVER_FLAG_HINT, FramePool, Region, batch_bytes, frame_input_in
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


class BaseClient:
    """Options, the keypoint-name cache, the shared memory regions and the operations of both clients."""

    def __init__(
        self,
        url: str,
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
        self.url = url
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

    def _should_retry(self, error: RTMOClientError, retry: int) -> bool:
        """Whether to try again: UNAVAILABLE and NOT_FOUND, within the retry budget.

        NOT_FOUND is what a model being reloaded answers ("has no available versions": the server heals a crashed
        stub by unloading and loading its model), so it is as transient as a restarting server.
        """
        if not (isinstance(error, (UnavailableError, ModelNotReadyError)) and retry < self.retry.max_retries):
            return False
        LOGGER.info(
            "%s is unavailable (%s); retry %d of %d", self.url, error.message, retry + 1, self.retry.max_retries
        )
        if self.pool is not None and isinstance(error, UnavailableError):
            self.pool.mark_unregistered()  # a restarted server forgot our regions
        return True

    def _retried(self, attempt: Callable[[], Operation[T]]) -> Operation[T]:
        """Run ``attempt``, translating tritonclient errors and retrying UNAVAILABLE and NOT_FOUND with backoff.

        Only idempotent calls go through here (reads and inference); closing is never retried.
        """
        retry = 0
        while True:
            try:
                return (yield from attempt())
            except InferenceServerException as error:
                mapped = from_triton_error(error)
                if not self._should_retry(mapped, retry):
                    raise mapped from error
            yield Sleep(self.retry.backoff_s(retry))
            retry += 1

    # -- metadata and readiness ---------------------------------------------------------------------------------

    def server_info(self, timeout_s: float | None) -> Operation[ServerInfo]:
        self.check_open()
        deadline = self.deadline(timeout_s)
        metadata = yield from self._retried(
            lambda: call("get_server_metadata", headers=self.headers, as_json=True, client_timeout=deadline)
        )
        return parse_server_info(metadata)

    def model_info(self, model: str, timeout_s: float | None) -> Operation[ModelInfo]:
        self.check_open()
        deadline = self.deadline(timeout_s)
        config = yield from self._retried(
            lambda: call("get_model_config", model, headers=self.headers, as_json=True, client_timeout=deadline)
        )
        info = parse_model_info(config)
        self.infos[model] = info
        return info

    def wait_until_ready(self, timeout_s: float, models: Sequence[str]) -> Operation[None]:
        """Poll readiness with growing pauses until ``models`` are ready or ``timeout_s`` has passed."""
        self.check_open()
        deadline_s = time.monotonic() + timeout_s
        pause_s = 0.05
        while True:
            try:
                unready = yield from self._unready(models, self._poll_timeout_s(deadline_s))
                if unready is None:
                    return
                reason, unreachable = unready, False
            except InferenceServerException as error:
                reason, unreachable = self._unready_reason(error), True
            if time.monotonic() + pause_s > deadline_s:
                raise self._not_ready_error(timeout_s, reason, unreachable=unreachable)
            yield Sleep(pause_s)
            pause_s = min(0.5, pause_s * 2)

    def _unready(self, models: Sequence[str], timeout_s: float) -> Operation[str | None]:
        """Why the server or one of ``models`` is not ready yet, or None when all are."""
        if not (yield from call("is_server_ready", headers=self.headers, client_timeout=timeout_s)):
            return "server not ready"
        waiting = []
        for model in models:
            if not (yield from call("is_model_ready", model, headers=self.headers, client_timeout=timeout_s)):
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
        self, payloads: Sequence[Payload], parameters: dict[str, Any] | None, timeout_s: float | None
    ) -> Operation[list[PoseResult]]:
        """One request for ``payloads``, retried as a whole; ``model_info`` first if its keypoint names are unknown."""
        self.check_open()
        model = model_for(payloads)
        deadline = self.deadline(timeout_s)
        info = self.infos.get(model)
        if info is None:
            info = yield from self.model_info(model, timeout_s)
        if self.pool is not None and model == FRAME_MODEL:
            frames = [p for p in payloads if isinstance(p, Frame)]
            result = yield from self._retried(lambda: self._infer_shared(frames, parameters, deadline))
        else:
            inputs = inputs_for(model, payloads)
            result = yield from self._retried(
                lambda: call(
                    "infer", model, inputs, client_timeout=deadline, headers=self.headers, parameters=parameters
                )
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

    def close(self) -> Operation[None]:
        """Unregister and remove the shared memory regions, then close the transport; only the first call does."""
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
        try:
            if self.pool is not None:
                for region in self.pool.regions():
                    yield from self._drop_region(region)
        finally:
            yield from call("close")


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
