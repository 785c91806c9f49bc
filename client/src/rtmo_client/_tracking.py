"""The non-I/O half of ``track``, shared by both clients: one video's sequence flags, its requests over its gRPC
stream, and how a lost sequence is told apart from a bad frame.

Every frame of a video goes over one bidirectional gRPC stream (``Call("open_stream")``, then ``StreamCall`` send
and receive), opened at the first frame on the endpoint that holds the sequence and closed after END, when a call
fails (a refused frame leaves it open, see :mod:`rtmo_client.grpc_stream`) or when the caller stops early. The
stream saves one RPC's setup per frame; it does not send ahead. Frames go one at a time, the next after the
previous answer: Triton runs an ensemble's steps independently (preprocess has several instances), so two frames
of one video in flight could reach the tracker out of order, and the tracker must see them in order. Many videos
at once keep the server busy instead.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from tritonclient.utils import InferenceServerException

from rtmo_client._base import LOGGER, BaseClient, close_stream
from rtmo_client._effects import Operation, call, stream_call
from rtmo_client.endpoints import Pin
from rtmo_client.errors import InvalidInputError, RTMOClientError, ServerError, status_name
from rtmo_client.grpc_stream import StreamRefusal
from rtmo_client.images import Channels, Frame, to_payload
from rtmo_client.tracking import TrackedPerson, TrackedResult, TracksLostError
from rtmo_client.wire import InferResultLike, decode_result, frame_input
from rtmo_contract import TRACK_MODEL, TrackingParameters

T = TypeVar("T")

_MAX_STREAM_ID = 2**63 - 1  # Triton correlation ids are uint64; stay within int64 for every client


def new_stream_id(stream_id: int | None) -> int:
    """``stream_id`` checked, or a fresh random one.

    Raises:
        ValueError: not an integer in 1..2**63-1.
    """
    if stream_id is None:
        return random.randint(1, _MAX_STREAM_ID)
    if isinstance(stream_id, bool) or not isinstance(stream_id, int) or not 1 <= stream_id <= _MAX_STREAM_ID:
        raise ValueError(f"stream_id={stream_id!r}; accepted: an integer 1..2**63-1, or None for a fresh one")
    return stream_id


def tracking_request_parameters(
    detection: Mapping[str, Any] | None, tracking: TrackingParameters | None
) -> dict[str, Any] | None:
    """The request parameters of a tracked stream: the detection ones given, and every field of ``tracking``."""
    parameters = dict(detection or {})
    if tracking is not None:
        parameters.update({f.name: getattr(tracking, f.name) for f in fields(tracking)})
    return parameters or None


def with_last(items: Iterable[T]) -> Iterator[tuple[T, bool]]:
    """Each item and whether it is the last one (read one ahead, so the last frame can carry END)."""
    iterator = iter(items)
    sentinel = object()
    current: Any = next(iterator, sentinel)
    while current is not sentinel:
        following: Any = next(iterator, sentinel)
        yield current, following is sentinel
        current = following


@dataclass
class TrackStream:
    """One video's sequence: its id, the next frame's position, the frame size it started with, and its gRPC
    stream."""

    stream_id: int
    restart_on_loss: bool
    frame_index: int = 0
    started_at: int = 0  # frame index of the sequence's START (moves on a restart)
    shape: tuple[int, ...] | None = None
    channel: Any = None  # the open gRPC stream (None: one is opened for the next frame)
    channel_endpoint: int = 0
    accepted: Frame | None = None  # the last frame the server tracked while its sequence is live (for END)

    def frame(self, image: object, channels: Channels | None) -> Frame:
        payload = to_payload(image, channels=channels, name=f"frames[{self.frame_index}]")
        if not isinstance(payload, Frame):
            raise InvalidInputError(
                f"frames[{self.frame_index}]: an encoded image; track takes numpy uint8 (H, W, 3) frames "
                "(rtmo_client.video_frames reads a video as such)"
            )
        return payload


def track_frame(
    base: BaseClient,
    stream: TrackStream,
    frame: Frame,
    *,
    last: bool,
    parameters: dict[str, Any] | None,
    timeout_s: float | None,
    pin: Pin,
) -> Operation[TrackedResult]:
    """Send one frame of ``stream`` and decode its people with their tracks.

    ``pin``: the stream's endpoint. Every frame of a sequence goes to the server that holds its tracks; a retry after
    UNAVAILABLE moves the pin to the next server, which does not know the sequence and refuses the frame (no START):
    that is reported as lost tracks (or restarts the sequence there), never as silent renumbering.

    Raises:
        TracksLostError: the server refused a later frame of the same size as the first (it no longer knows the
            sequence: restarted or idled out), and ``restart_on_loss`` is off.
        InvalidInputError: the frame or a parameter was refused (another frame size within the stream included).
    """
    base.check_open()
    info = base.infos.get(TRACK_MODEL)
    if info is None:
        info = yield from base.model_info(TRACK_MODEL, timeout_s)
    restarted = False
    start = stream.frame_index == stream.started_at
    try:
        result = yield from _exchange(
            base, stream, frame, start=start, end=last, parameters=parameters, pin=pin, timeout_s=timeout_s
        )
    except InvalidInputError as error:
        lost = stream.frame_index > stream.started_at and frame.array.shape == stream.shape
        if not lost:
            raise
        stream.accepted = None  # the server holds nothing to END
        if not stream.restart_on_loss:
            raise TracksLostError(
                f"stream {stream.stream_id}: the server lost this stream's tracks at frame {stream.frame_index} "
                f"({error.message}); track again, or pass restart_on_loss=True to restart it with fresh ids",
                status=error.status,
                stream_id=stream.stream_id,
                frame_index=stream.frame_index,
            ) from error
        stream.started_at, restarted = stream.frame_index, True
        result = yield from _exchange(
            base, stream, frame, start=True, end=last, parameters=parameters, pin=pin, timeout_s=timeout_s
        )
    stream.accepted = None if last else frame
    if stream.shape is None:
        stream.shape = frame.array.shape
    decoded = decode_result(result, [frame], info)[0]
    ids = _row(result, "track_ids")
    ages = _row(result, "track_ages")
    people = [
        TrackedPerson(
            box=p.box,
            score=p.score,
            keypoints=p.keypoints,
            keypoint_scores=p.keypoint_scores,
            keypoint_names=p.keypoint_names,
            track_id=int(ids[i]) if ids[i] >= 0 else None,
            track_age=int(ages[i]) if ids[i] >= 0 else None,
        )
        for i, p in enumerate(decoded.people)
    ]
    tracked = TrackedResult(
        people=people,
        image_size=decoded.image_size,
        truncated=decoded.truncated,
        stream_id=stream.stream_id,
        frame_index=stream.frame_index,
        restarted=restarted,
    )
    stream.frame_index += 1
    return tracked


def finish_track(
    base: BaseClient, stream: TrackStream, *, parameters: dict[str, Any] | None, timeout_s: float | None
) -> Operation[None]:
    """After a video's last frame, an error, or a caller that stopped early: END its sequence if the server still
    holds it, then close its stream.

    END needs a frame, so the last one the server tracked goes again with END (its answer dropped): the server frees
    the sequence now rather than after its idle timeout. One attempt, on the stream's endpoint; a failure is only
    logged (this runs while another error may be on its way up).
    """
    frame, stream.accepted = stream.accepted, None
    try:
        if frame is not None and not base.closed:
            try:
                yield from _attempt(
                    base,
                    stream,
                    frame,
                    start=False,
                    end=True,
                    parameters=parameters,
                    deadline=base.deadline(timeout_s),
                    endpoint=stream.channel_endpoint,
                )
            except (InferenceServerException, RTMOClientError) as error:
                LOGGER.info(
                    "stream %d: ending its sequence failed (%s); the server frees it when idle", stream.stream_id, error
                )
    finally:
        yield from _close_channel(base, stream)


def _exchange(
    base: BaseClient,
    stream: TrackStream,
    frame: Frame,
    *,
    start: bool,
    end: bool,
    parameters: dict[str, Any] | None,
    pin: Pin,
    timeout_s: float | None,
) -> Operation[InferResultLike]:
    """One frame over the stream and its answer, retried after UNAVAILABLE like any inference: on a new stream to the
    next endpoint, which refuses the frame (no START) unless it starts the sequence; track_frame reports that as
    lost tracks rather than renumbering."""
    deadline = base.deadline(timeout_s)

    def attempt(endpoint: int) -> Operation[InferResultLike]:
        return _attempt(
            base, stream, frame, start=start, end=end, parameters=parameters, deadline=deadline, endpoint=endpoint
        )

    return (yield from base._retried(attempt, pin))


def _attempt(
    base: BaseClient,
    stream: TrackStream,
    frame: Frame,
    *,
    start: bool,
    end: bool,
    parameters: dict[str, Any] | None,
    deadline: float | None,
    endpoint: int,
) -> Operation[InferResultLike]:
    channel = yield from _open_channel(base, stream, endpoint)
    request = (TRACK_MODEL, [frame_input([frame])])
    flags = {"sequence_id": stream.stream_id, "sequence_start": start, "sequence_end": end}
    try:
        yield from stream_call(channel, "send", *request, parameters=parameters, **flags)
        result: InferResultLike = yield from stream_call(channel, "receive", timeout_s=deadline)
    except StreamRefusal as refusal:
        # Refused on the stream without a status (the stream goes on): the same request as a unary call gives the
        # status (INVALID_ARGUMENT for a bad frame or an unknown sequence); the stream's message stays the one that
        # says what was wrong (a refused END frame has ended its sequence, so the unary call's may not).
        try:
            result = yield from call(
                "infer",
                *request,
                endpoint=endpoint,
                client_timeout=deadline,
                headers=base.headers,
                parameters=parameters,
                **flags,
            )
        except InferenceServerException as unary:
            if status_name(unary) == "UNAVAILABLE":
                raise  # the server went away meanwhile: that is the error now
            raise InferenceServerException(msg=refusal.message(), status=unary.status()) from unary
    except GeneratorExit:
        raise
    except BaseException:
        # The call failed (and after a timeout a late answer must not pass for the next frame's): a new stream.
        yield from _close_channel(base, stream)
        base.check_open()  # Client.close() ended it: say that
        raise
    if end:
        yield from _close_channel(base, stream)
    return result


def _open_channel(base: BaseClient, stream: TrackStream, endpoint: int) -> Operation[Any]:
    """The stream's open gRPC stream to ``endpoint``, opening one (and closing one to another endpoint) if needed."""
    if stream.channel is not None and stream.channel_endpoint != endpoint:
        yield from _close_channel(base, stream)
    if stream.channel is None:
        channel = yield from call("open_stream", endpoint=endpoint, headers=base.headers)
        if not base.keep_stream(channel):  # the client was closed meanwhile
            yield from close_stream(channel)
            base.check_open()
        stream.channel, stream.channel_endpoint = channel, endpoint
    return stream.channel


def _close_channel(base: BaseClient, stream: TrackStream) -> Operation[None]:
    channel, stream.channel = stream.channel, None
    if channel is not None:
        base.forget_stream(channel)
        yield from close_stream(channel)


def _row(result: InferResultLike, name: str) -> Any:
    array = result.as_numpy(name)
    if array is None:
        raise ServerError(f"the server's response has no output {name!r}; is {TRACK_MODEL} an rtmo tracking ensemble?")
    return array.reshape(array.shape[0], -1)[0]
