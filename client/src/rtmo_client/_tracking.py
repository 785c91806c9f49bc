"""The non-I/O half of ``track``, shared by both clients: one stream's sequence flags, its requests, and how a
lost sequence is told apart from a bad frame.

Frames go one at a time (the next after the previous answer): the ensemble's stateless steps could finish two
frames of a video out of order, and the tracker must see them in order. Many videos at once keep the server busy.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from rtmo_client._base import BaseClient
from rtmo_client._effects import Operation, call
from rtmo_client.endpoints import Pin
from rtmo_client.errors import InvalidInputError, ServerError
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
    """One video's sequence: its id, the next frame's position, and the frame size it started with."""

    stream_id: int
    restart_on_loss: bool
    frame_index: int = 0
    started_at: int = 0  # frame index of the sequence's START (moves on a restart)
    shape: tuple[int, ...] | None = None

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
    try:
        result = yield from _send(base, stream, frame, last=last, parameters=parameters, timeout_s=timeout_s, pin=pin)
    except InvalidInputError as error:
        lost = stream.frame_index > stream.started_at and frame.array.shape == stream.shape
        if not lost:
            raise
        if not stream.restart_on_loss:
            raise TracksLostError(
                f"stream {stream.stream_id}: the server lost this stream's tracks at frame {stream.frame_index} "
                f"({error.message}); track again, or pass restart_on_loss=True to restart it with fresh ids",
                status=error.status,
                stream_id=stream.stream_id,
                frame_index=stream.frame_index,
            ) from error
        stream.started_at, restarted = stream.frame_index, True
        result = yield from _send(base, stream, frame, last=last, parameters=parameters, timeout_s=timeout_s, pin=pin)
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


def _send(
    base: BaseClient,
    stream: TrackStream,
    frame: Frame,
    *,
    last: bool,
    parameters: dict[str, Any] | None,
    timeout_s: float | None,
    pin: Pin,
) -> Operation[InferResultLike]:
    deadline = base.deadline(timeout_s)
    start = stream.frame_index == stream.started_at

    def attempt(endpoint: int) -> Operation[InferResultLike]:
        result: InferResultLike = yield from call(
            "infer",
            TRACK_MODEL,
            [frame_input([frame])],
            endpoint=endpoint,
            client_timeout=deadline,
            headers=base.headers,
            parameters=parameters,
            sequence_id=stream.stream_id,
            sequence_start=start,
            sequence_end=last,
        )
        return result

    # UNAVAILABLE is retried like any inference: a restarted server then refuses the frame (no START), which
    # track_frame reports as lost tracks rather than renumbering.
    return (yield from base._retried(attempt, pin))


def _row(result: InferResultLike, name: str) -> Any:
    array = result.as_numpy(name)
    if array is None:
        raise ServerError(f"the server's response has no output {name!r}; is {TRACK_MODEL} an rtmo tracking ensemble?")
    return array.reshape(array.shape[0], -1)[0]
