"""Tracking results and errors: :class:`TrackedResult`, whose people (:class:`TrackedPerson`) carry a ``track_id``.

``Client.track`` and ``AsyncClient.track`` send a video's frames to the ``rtmo_track`` model as one Triton
sequence (a correlation id per video, START on its first frame and END on its last) over one gRPC stream, one
frame at a time: the server keeps one tracker per sequence, so several videos tracked at once from one client
never mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtmo_client.errors import RTMOClientError
from rtmo_client.results import Person, PoseResult

__all__ = ["TrackedPerson", "TrackedResult", "TracksLostError"]


class TracksLostError(RTMOClientError):
    """The server no longer knows this stream (it restarted, or the stream idled out), so its tracks are lost.

    Continuing would renumber every person; track again (a new sequence), or pass ``restart_on_loss=True`` to have
    the stream restart by itself with results marked ``restarted``.

    Attributes:
        stream_id: The stream's correlation id.
        frame_index: The frame that found the tracks lost (0-based), not tracked.
    """

    def __init__(self, message: str, *, status: str | None, stream_id: int, frame_index: int) -> None:
        super().__init__(message, status=status)
        self.stream_id = stream_id
        self.frame_index = frame_index


@dataclass(eq=False, slots=True)
class TrackedPerson(Person):
    """A :class:`~rtmo_client.results.Person` with its track.

    Attributes:
        track_id: Stable for this person within the stream, never reused in it; None while the person is on no
            confirmed track (a new track is confirmed on its second frame, except on the stream's first frame).
        track_age: Frames since the track started (0 on its first frame); None with ``track_id``.
    """

    track_id: int | None = None
    track_age: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """:meth:`Person.to_dict` plus ``track_id`` and ``track_age``."""
        return {**Person.to_dict(self), "track_id": self.track_id, "track_age": self.track_age}


@dataclass(frozen=True, eq=False)
class TrackedResult(PoseResult):
    """The people of one frame of a tracked stream, best score first.

    Attributes:
        people: :class:`TrackedPerson` objects.
        stream_id: The stream's correlation id.
        frame_index: Position of the frame in the stream (0-based).
        restarted: The server had lost the stream and it was restarted at this frame (``restart_on_loss=True``):
            track ids count afresh from here.
    """

    people: list[TrackedPerson]  # type: ignore[assignment]  # PoseResult's people, each with its track
    stream_id: int = 0
    frame_index: int = 0
    restarted: bool = False

    def to_mot_rows(self) -> list[list[float]]:
        """MOTChallenge rows of the confirmed tracks: frame (1-based), id, left, top, width, height, score, -1 x3."""
        return [
            [self.frame_index + 1, p.track_id, p.box[0], p.box[1], p.box[2] - p.box[0], p.box[3] - p.box[1], p.score]
            + [-1, -1, -1]
            for p in self.people
            if p.track_id is not None
        ]
