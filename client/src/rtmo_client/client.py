"""The blocking client: :class:`Client`."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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
from rtmo_client.transport import CertificateSource, SyncTransport, grpc_transport

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """Pose estimation over gRPC against the ``rtmo`` / ``rtmo_frames`` ensembles; thread-safe.

    Example:
        >>> with rtmo_client.Client("localhost:8001") as client:
        ...     result = client.estimate("photo.jpg")
        ...     for person in result.people:
        ...         print(person.score, person["left_wrist"])

    Every call takes an optional ``timeout_s`` overriding the client's. Calls that only read (inference,
    readiness, metadata) are retried with backoff when the server is UNAVAILABLE; nothing else is retried.
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
        transport: SyncTransport | None = None,
    ) -> None:
        """Connect lazily to ``url``; nothing is sent until the first call.

        Args:
            url: gRPC ``host:port`` of the server.
            timeout_s: Default deadline of every call, per attempt (None: wait forever).
            ssl: Use TLS.
            root_certificates: PEM (bytes or file path) of the CA that signed the server's certificate; None uses
                the system's roots. Needs ``ssl=True``, as do the next two.
            private_key: PEM of the client's key, for servers that require client certificates.
            certificate_chain: PEM of the client's certificate chain.
            headers: gRPC metadata sent with every call (e.g. an authorization token).
            retries: Retries on UNAVAILABLE for idempotent calls: a count (default backoff) or a :class:`RetryPolicy`.
            shared_memory: Send numpy frames through system shared memory instead of the request body (client
                and server on one host; Triton >= 2.69 needs ``--allow-client-shm=true``).
            transport: A ready transport to use instead of a new gRPC channel (tests pass a fake one).

        Raises:
            ValueError: a non-positive timeout, or certificates without ``ssl=True``.
            OSError: a certificate file cannot be read.
        """
        self._base = BaseClient(
            url, timeout_s=timeout_s, ssl=ssl, root_certificates=root_certificates, private_key=private_key,
            certificate_chain=certificate_chain, headers=headers, retries=retries, shared_memory=shared_memory,
        )
        self._transport = transport if transport is not None else grpc_transport(url, credentials=self._base.credentials)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The server's ``host:port``."""
        return self._base.url

    # -- calls --------------------------------------------------------------------------------------------------

    def _call(self, attempt: Callable[[], T], *, idempotent: bool = True) -> T:
        """Run ``attempt``, translating tritonclient errors and retrying UNAVAILABLE for idempotent calls."""
        retry = 0
        while True:
            try:
                return attempt()
            except InferenceServerException as error:
                mapped = from_triton_error(error)
                if not self._base.should_retry(mapped, retry, idempotent=idempotent):
                    raise mapped from error
            time.sleep(self._base.retry.backoff_s(retry))
            retry += 1

    def server_info(self, *, timeout_s: float | None = None) -> ServerInfo:
        """The server's name, version and extensions."""
        self._base.check_open()
        deadline = self._base.deadline(timeout_s)
        metadata = self._call(lambda: self._transport.get_server_metadata(headers=self._base.headers, as_json=True, client_timeout=deadline))
        return parse_server_info(metadata)

    def model_info(self, model: str = IMAGE_MODEL, *, timeout_s: float | None = None) -> ModelInfo:
        """Keypoint names, skeleton, input size and checkpoint provenance, read from the model's configuration.

        Raises:
            ModelNotReadyError: the server has no such model.
        """
        self._base.check_open()
        deadline = self._base.deadline(timeout_s)
        config = self._call(lambda: self._transport.get_model_config(model, headers=self._base.headers, as_json=True, client_timeout=deadline))
        info = parse_model_info(config)
        self._base.infos[model] = info
        return info

    def _info_for(self, model: str, timeout_s: float | None) -> ModelInfo:
        info = self._base.infos.get(model)
        return info if info is not None else self.model_info(model, timeout_s=timeout_s)

    def wait_until_ready(self, timeout_s: float = 60.0, *, models: Sequence[str] = READY_MODELS) -> None:
        """Block until the server is ready and ``models`` are loaded, polling.

        Raises:
            UnavailableError: the server could not be reached within ``timeout_s``.
            ModelNotReadyError: the server answered but a model was not ready within ``timeout_s``.
        """
        self._base.check_open()
        deadline_s = time.monotonic() + timeout_s
        pause_s, reason = 0.05, "no answer yet"
        while True:
            try:
                per_call = self._base.poll_timeout_s(deadline_s)
                if self._transport.is_server_ready(headers=self._base.headers, client_timeout=per_call):
                    waiting = [m for m in models if not self._transport.is_model_ready(m, headers=self._base.headers, client_timeout=per_call)]
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
            time.sleep(pause_s)
            pause_s = min(0.5, pause_s * 2)

    # -- inference ----------------------------------------------------------------------------------------------

    def estimate(
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
        """The people in one image.

        Args:
            image: A path, encoded JPEG/PNG/BMP bytes, or a numpy ``uint8`` ``(H, W, 3)`` frame.
            channels: ``"bgr"`` or ``"rgb"``: the channel order of a numpy frame (required for frames).
            score_threshold: Keep people scoring above this (server default 0.1; 0 <= v < 1).
            nms_iou_threshold: Box NMS IoU threshold (server default 0.65; 0 < v <= 1).
            max_people: At most this many people, best first (>= 1).
            pose_nms: Also run MMPose's pose NMS.
            timeout_s: Deadline of this call per attempt (default: the client's).

        Returns:
            The people found, best first, with the image size.

        Raises:
            InvalidInputError: the image or a parameter was refused (the server's message names which and why).
            UnavailableError: the server was unreachable, retries included.
            DeadlineExceededError: no answer within the timeout.
            ServerError: the server failed.
        """
        payload = to_payload(image, channels=channels)
        parameters = self._base.parameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        return self._run([payload], parameters, timeout_s)[0]

    def estimate_batch(
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
        """The people in several images, sent as one request (at most the server's ``max_batch_size`` rows).

        All images must be encoded (paths, bytes) or all frames of one shape. Arguments as :meth:`estimate`.

        Returns:
            One result per image, in order.
        """
        payloads = self._base.payloads(images, channels)
        parameters = self._base.parameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        return self._run(payloads, parameters, timeout_s)

    def stream(
        self,
        images: Iterable[ImageInput],
        *,
        max_in_flight: int = 4,
        batch_size: int = 1,
        channels: Channels | None = None,
        score_threshold: float | None = None,
        nms_iou_threshold: float | None = None,
        max_people: int | None = None,
        pose_nms: bool | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[PoseResult]:
        """Results for many images (a video, a camera, a directory), in input order, with bounded requests in flight.

        ``images`` is read lazily: at most ``max_in_flight`` requests of ``batch_size`` images await an answer, and
        at most ``2 * max_in_flight`` answered ones wait for an earlier, slower one; past that the next image is
        read only when the caller takes a result, so a slow consumer slows the reading (back-pressure). See
        :mod:`rtmo_client.sources` for video, camera and directory iterators. An error stops the stream at the
        image that caused it, after the results before it.

        Args:
            images: Images as :meth:`estimate` takes them.
            max_in_flight: Most requests awaiting an answer at once.
            batch_size: Consecutive compatible images per request (frames of one shape, or encoded files).
            channels: Channel order of numpy frames.
            score_threshold: See :meth:`estimate`, as are the next arguments.
            nms_iou_threshold: See :meth:`estimate`.
            max_people: See :meth:`estimate`.
            pose_nms: See :meth:`estimate`.
            timeout_s: See :meth:`estimate`.

        Raises:
            ValueError: ``max_in_flight`` or ``batch_size`` below 1 (raised at once, before iterating).
        """
        validate_options(max_in_flight=max_in_flight, batch_size=batch_size)
        parameters = self._base.parameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        payloads = (to_payload(image, channels=channels, name=f"images[{i}]") for i, image in enumerate(images))
        return self._stream(payloads, parameters, timeout_s, max_in_flight=max_in_flight, batch_size=batch_size)

    def _stream(
        self, payloads: Iterator[Payload], parameters: dict[str, Any] | None, timeout_s: float | None, *, max_in_flight: int, batch_size: int
    ) -> Iterator[PoseResult]:
        pending: deque[Future[list[PoseResult]]] = deque()
        batcher = Batcher(batch_size)
        with ThreadPoolExecutor(max_in_flight, thread_name_prefix="rtmo-client-stream") as pool:
            try:
                for payload in payloads:
                    if (run := batcher.add(payload)) is not None:
                        yield from _make_room(pending, max_in_flight)
                        pending.append(pool.submit(self._run, run, parameters, timeout_s))
                if (run := batcher.flush()) is not None:
                    yield from _make_room(pending, max_in_flight)
                    pending.append(pool.submit(self._run, run, parameters, timeout_s))
                while pending:
                    yield from pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def _run(self, payloads: Sequence[Payload], parameters: dict[str, Any] | None, timeout_s: float | None) -> list[PoseResult]:
        self._base.check_open()
        model = model_for(payloads)
        deadline = self._base.deadline(timeout_s)
        info = self._info_for(model, timeout_s)
        if self._base.pool is not None and model == FRAME_MODEL:
            frames = [p for p in payloads if isinstance(p, Frame)]
            result = self._call(lambda: self._infer_shared(frames, parameters, deadline))
        else:
            _, inputs = build_inputs(payloads)
            result = self._call(
                lambda: self._transport.infer(model, inputs, client_timeout=deadline, headers=self._base.headers, parameters=parameters)
            )
        return decode_result(result, payloads, info)

    def _infer_shared(self, frames: Sequence[Frame], parameters: dict[str, Any] | None, deadline: float | None) -> InferResultLike:
        pool = self._base.pool
        assert pool is not None  # noqa: S101 - only called with a pool
        region, stale = pool.checkout(batch_bytes(frames))
        try:
            if stale is not None:
                self._drop_region(stale)
            if not region.registered:
                self._register(region)
            inputs = [frame_input_in(region, frames)]
            return self._transport.infer(FRAME_MODEL, inputs, client_timeout=deadline, headers=self._base.headers, parameters=parameters)
        finally:
            pool.release(region)

    def _register(self, region: Region) -> None:
        try:
            self._transport.register_system_shared_memory(region.name, region.key, region.byte_size, headers=self._base.headers)
        except InferenceServerException as error:
            problem = registration_error(error, region.name)
            if isinstance(problem, UnavailableError):
                raise  # the caller's retry loop handles it
            if problem is not None:
                raise problem from error
        region.registered = True

    def _drop_region(self, region: Region) -> None:
        try:
            self._transport.unregister_system_shared_memory(region.name, headers=self._base.headers)
        except InferenceServerException:
            pass  # the server may have restarted or be gone; the local region goes either way
        assert self._base.pool is not None  # noqa: S101
        self._base.pool.destroy(region)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Unregister shared memory and close the channel; idempotent."""
        with self._lock:
            if self._base.closed:
                return
            self._base.closed = True
        if self._base.pool is not None:
            for region in self._base.pool.regions():
                self._drop_region(region)
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _make_room(pending: deque[Future[list[PoseResult]]], max_in_flight: int) -> Iterator[PoseResult]:
    """Yield finished results at the head of ``pending`` until another request may be sent.

    A request may go when fewer than ``max_in_flight`` are unanswered and fewer than ``2 * max_in_flight`` results
    are held: answers that overtook a slower earlier request wait in order without stalling the others.
    """
    while True:
        while pending and pending[0].done():
            yield from pending.popleft().result()
        unanswered = [future for future in pending if not future.done()]
        if len(unanswered) < max_in_flight and len(pending) < 2 * max_in_flight:
            return
        wait(unanswered, return_when=FIRST_COMPLETED)
