"""Configuration and bookkeeping shared by :class:`Client` and :class:`AsyncClient` (no I/O here)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tritonclient.utils import InferenceServerException

from rtmo_client._core import RetryPolicy, request_parameters, retry_policy
from rtmo_client._shm import SERVER_FLAG_HINT, FramePool
from rtmo_client.errors import (
    ModelNotReadyError,
    RTMOClientError,
    SharedMemoryError,
    UnavailableError,
    from_triton_error,
    status_name,
)
from rtmo_client.images import Channels, Payload, to_payload
from rtmo_client.results import ModelInfo
from rtmo_client.transport import CertificateSource, tls_credentials

LOGGER = logging.getLogger("rtmo_client")

DEFAULT_URL = "localhost:8001"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 3
READY_MODELS = ("rtmo", "rtmo_frames")


class BaseClient:
    """Options, the keypoint-name cache and error translation of both clients."""

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
            tls_credentials(root_certificates=root_certificates, private_key=private_key, certificate_chain=certificate_chain)
            if ssl else None
        )
        self.infos: dict[str, ModelInfo] = {}
        self.pool = FramePool() if shared_memory else None
        self.closed = False

    def deadline(self, timeout_s: float | None) -> float | None:
        return self.timeout_s if timeout_s is None else timeout_s

    def check_open(self) -> None:
        if self.closed:
            raise RTMOClientError("this client is closed; create a new one")

    def should_retry(self, error: RTMOClientError, retry: int, *, idempotent: bool) -> bool:
        """Whether to try again: UNAVAILABLE only, idempotent calls only, within the retry budget."""
        if not (idempotent and isinstance(error, UnavailableError) and retry < self.retry.max_retries):
            return False
        LOGGER.info("%s is unavailable (%s); retry %d of %d", self.url, error.message, retry + 1, self.retry.max_retries)
        if self.pool is not None:
            self.pool.mark_unregistered()  # a restarted server forgot our regions
        return True

    def poll_timeout_s(self, deadline_s: float) -> float:
        """Deadline of one readiness call made while waiting until ``deadline_s`` (a ``time.monotonic`` value)."""
        remaining_s = deadline_s - time.monotonic()
        return max(0.05, min(remaining_s, self.timeout_s or remaining_s))

    @staticmethod
    def unready_reason(error: InferenceServerException) -> str:
        """Why a readiness call failed, when waiting should go on (unreachable or slow); other errors are raised."""
        mapped = from_triton_error(error)
        if not isinstance(mapped, UnavailableError) and mapped.status != "DEADLINE_EXCEEDED":
            raise mapped from error
        return mapped.message

    def not_ready_error(self, timeout_s: float, reason: str, *, unreachable: bool) -> RTMOClientError:
        """What ``wait_until_ready`` raises when ``timeout_s`` has passed."""
        if unreachable:
            return UnavailableError(f"{self.url} did not answer within {timeout_s} s: {reason}", status="UNAVAILABLE")
        return ModelNotReadyError(f"{self.url} was not ready within {timeout_s} s: {reason}")

    @staticmethod
    def payloads(images: Sequence[object], channels: Channels | None) -> list[Payload]:
        return [to_payload(image, channels=channels, name=f"images[{index}]") for index, image in enumerate(images)]

    @staticmethod
    def parameters(
        score_threshold: float | None, nms_iou_threshold: float | None, max_people: int | None, pose_nms: bool | None
    ) -> dict[str, Any] | None:
        return request_parameters(
            score_threshold=score_threshold, nms_iou_threshold=nms_iou_threshold, max_people=max_people, pose_nms=pose_nms
        )


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
    return SharedMemoryError(f"the server refused shared memory region {region_name!r}: {mapped.message} ({SERVER_FLAG_HINT})", status=status)
