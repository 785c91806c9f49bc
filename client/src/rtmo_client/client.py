"""The blocking client: :class:`Client`, which performs :class:`rtmo_client._base.BaseClient`'s operations."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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
from rtmo_client._streaming import OrderedWindow, batches, validate_options
from rtmo_client._tracking import (
    TrackStream,
    finish_track,
    new_stream_id,
    track_frame,
    tracking_request_parameters,
    with_last,
)
from rtmo_client.endpoints import Pin
from rtmo_client.images import Channels, ImageInput, Payload, to_payload
from rtmo_client.results import ModelInfo, PoseResult, ServerInfo
from rtmo_client.tracking import TrackedResult
from rtmo_client.transport import CertificateSource, SyncTransport, grpc_transport
from rtmo_client.wire import RetryPolicy
from rtmo_contract import IMAGE_MODEL, TrackingParameters

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
    readiness, metadata) are retried with backoff when the server is UNAVAILABLE or the model NOT_FOUND (being
    reloaded); nothing else is retried.
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
        transport: SyncTransport | Sequence[SyncTransport] | None = None,
    ) -> None:
        """Connect lazily to ``url``; nothing is sent until the first call.

        Args:
            url: gRPC ``host:port`` of the server; a list of them, taken in turn per request; or
                ``dns:///host:port``, spread round-robin over every address the name resolves to (a Kubernetes
                headless Service). A retry after UNAVAILABLE goes to another endpoint (see
                :mod:`rtmo_client.endpoints`).
            timeout_s: Default deadline of every call, per attempt (None: wait forever).
            ssl: Use TLS.
            root_certificates: PEM (bytes or file path) of the CA that signed the server's certificate; None uses
                the system's roots. Needs ``ssl=True``, as do the next two.
            private_key: PEM of the client's key, for servers that require client certificates.
            certificate_chain: PEM of the client's certificate chain.
            headers: gRPC metadata sent with every call (e.g. an authorization token).
            retries: Retries on UNAVAILABLE and NOT_FOUND for idempotent calls: a count (default backoff) or a
                :class:`RetryPolicy`.
            shared_memory: Send numpy frames through system shared memory instead of the request body (client
                and server on one host; Triton >= 2.69 needs ``--allow-client-shm=true``).
            transport: A ready transport, or one per endpoint of ``url``, to use instead of new gRPC channels (tests
                pass fake ones).

        Raises:
            ValueError: a non-positive timeout, certificates without ``ssl=True``, an empty or mixed ``url`` list,
                shared memory with several endpoints, or not one ``transport`` per endpoint.
            OSError: a certificate file cannot be read.
        """
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
        self._transports: Sequence[SyncTransport] = given_transports(transport, self._base.targets) or [
            grpc_transport(endpoint, credentials=credentials) for endpoint in self._base.targets.urls
        ]
        self._own_channels = transport is None

    @property
    def url(self) -> str:
        """The server's ``host:port`` (the endpoints, comma separated, when there are several)."""
        return self._base.url

    # -- calls --------------------------------------------------------------------------------------------------

    def _drive(self, operation: Operation[T], transports: Sequence[SyncTransport] | None = None) -> T:
        """Perform the effects of ``operation`` on ``transports`` (default: the client's), blocking."""
        steps = Steps(operation)
        for effect in steps:
            with steps.outcome():
                steps.result = effect.perform(self._transports if transports is None else transports, time.sleep)
        return steps.value

    def server_info(self, *, timeout_s: float | None = None) -> ServerInfo:
        """The server's name, version and extensions."""
        return self._drive(self._base.server_info(timeout_s))

    def model_info(self, model: str = IMAGE_MODEL, *, timeout_s: float | None = None) -> ModelInfo:
        """Keypoint names, skeleton, input size and checkpoint provenance, read from the model's configuration.

        Raises:
            ModelNotReadyError: the server has no such model.
        """
        return self._drive(self._base.model_info(model, timeout_s))

    def wait_until_ready(self, timeout_s: float = 60.0, *, models: Sequence[str] = READY_MODELS) -> None:
        """Block until the server is ready and ``models`` are loaded, polling.

        Raises:
            UnavailableError: the server could not be reached within ``timeout_s``.
            ModelNotReadyError: the server answered but a model was not ready within ``timeout_s``.
        """
        self._drive(self._base.wait_until_ready(timeout_s, models))

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
        parameters = self._base.parameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        return self._drive(self._base.estimate(image, channels, parameters, timeout_s))

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
        parameters = self._base.parameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        return self._drive(self._base.estimate_batch(images, channels, parameters, timeout_s))

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

        All the requests of a stream go to one endpoint (one connection; with ``dns:///``, one of the addresses the
        name resolves to when the stream starts), and move to another only when it fails.

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
        self,
        payloads: Iterator[Payload],
        parameters: dict[str, Any] | None,
        timeout_s: float | None,
        *,
        max_in_flight: int,
        batch_size: int,
    ) -> Iterator[PoseResult]:
        window: OrderedWindow[Future[list[PoseResult]]] = OrderedWindow(max_in_flight)
        transports, pin = self._stream_endpoints()
        try:
            with ThreadPoolExecutor(max_in_flight, thread_name_prefix="rtmo-client-stream") as pool:
                try:
                    for run in batches(payloads, batch_size):
                        yield from _make_room(window)
                        request = self._base.run(run, parameters, timeout_s, pin)
                        window.pending.append(pool.submit(self._drive, request, transports))
                    while window.pending:
                        yield from window.pending.popleft().result()
                finally:
                    for future in window.pending:
                        future.cancel()
        finally:
            if transports is not self._transports:
                self._drive(close_all(len(transports)), transports)

    def _stream_endpoints(self) -> tuple[Sequence[SyncTransport], Pin]:
        """The transports of one stream and its pin: the client's, or for ``dns:///`` one channel per address."""
        targets = self._base.targets
        if not (targets.dns and self._own_channels):
            return self._transports, self._base.balancer.next()
        addresses, host = stream_addresses(targets)
        credentials = self._base.credentials
        transports = [grpc_transport(a, credentials=credentials, tls_target_name=host) for a in addresses]
        return transports, self._base.stream_pin(len(transports))

    def track(
        self,
        frames: Iterable[ImageInput],
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
    ) -> Iterator[TrackedResult]:
        """The people of a video's frames with their track ids, in order (the ``rtmo_track`` model).

        The frames form one sequence on the server (correlation id ``stream_id``; START and END set here), all sent
        over one bidirectional gRPC stream, one at a time (the next after the previous answer: the server could
        reorder two in flight), and read lazily, one frame ahead (to mark the last one END). Several ``track``
        iterators may run at once, from threads or interleaved, each with its own stream and tracks. An iterator
        closed before its end (a ``break``, an error) sends its last frame again with END, so the server frees the
        sequence at once, and closes its stream; :meth:`close` closes the streams of unfinished ones. An error
        stops the stream.

        Args:
            frames: numpy ``uint8`` ``(H, W, 3)`` frames of one size (see :func:`rtmo_client.video_frames`).
            stream_id: The sequence's correlation id, 1..2**63-1; a fresh random one by default.
            channels: ``"bgr"`` or ``"rgb"``, as for :meth:`estimate`.
            tracking: Association thresholds (``rtmo_contract.TrackingParameters``); server defaults by default.
            restart_on_loss: If the server loses the stream (restart, idle timeout), restart it at that frame with
                fresh ids and ``restarted=True`` on that result, instead of raising :class:`TracksLostError`.
            score_threshold: See :meth:`estimate`, as are the next arguments.
            nms_iou_threshold: See :meth:`estimate`.
            max_people: See :meth:`estimate`.
            pose_nms: See :meth:`estimate`.
            timeout_s: See :meth:`estimate`.

        Raises:
            ValueError: a bad ``stream_id`` (at once, before iterating).
            TracksLostError: the server lost the stream's tracks mid-stream (without ``restart_on_loss``).
            InvalidInputError: a frame or parameter was refused (a frame of another size included).
        """
        stream = TrackStream(new_stream_id(stream_id), restart_on_loss)
        detection = self._base.parameters(score_threshold, nms_iou_threshold, max_people, pose_nms)
        parameters = tracking_request_parameters(detection, tracking)
        return self._track(stream, frames, channels, parameters, timeout_s)

    def _track(
        self,
        stream: TrackStream,
        frames: Iterable[ImageInput],
        channels: Channels | None,
        parameters: dict[str, Any] | None,
        timeout_s: float | None,
    ) -> Iterator[TrackedResult]:
        transports, pin = self._stream_endpoints()  # one server holds the sequence's tracks
        try:
            for image, last in with_last(frames):
                frame = stream.frame(image, channels)
                operation = track_frame(
                    self._base, stream, frame, last=last, parameters=parameters, timeout_s=timeout_s, pin=pin
                )
                yield self._drive(operation, transports)
        finally:
            try:
                self._drive(finish_track(self._base, stream, parameters=parameters, timeout_s=timeout_s), transports)
            finally:
                if transports is not self._transports:
                    self._drive(close_all(len(transports)), transports)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Unregister shared memory and close the channel; idempotent."""
        self._drive(self._base.close())

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _make_room(window: OrderedWindow[Future[list[PoseResult]]]) -> Iterator[PoseResult]:
    """Yield the results that are in order until another request may be sent (see :class:`OrderedWindow`)."""
    yield from window.answered()
    while unanswered := window.blocking():
        wait(unanswered, return_when=FIRST_COMPLETED)
        yield from window.answered()
