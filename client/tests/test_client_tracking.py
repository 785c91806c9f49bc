"""Client.track / AsyncClient.track against a fake server that keeps sequences as Triton's sequence batcher does."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fake_triton import FakeAsyncTransport, FakeResult, FakeTransport, error, outputs_for

from rtmo_client import AsyncClient, Client, InvalidInputError, RTMOClientError, TrackedPerson, TracksLostError
from rtmo_client.cli import _common, main
from rtmo_client.draw_tracks import draw_tracks, track_color
from rtmo_contract import TRACK_MODEL, TrackingParameters


@dataclass
class SequenceServer(FakeTransport):
    """Answers rtmo_track like the server: refuses a frame of an unknown sequence without START (as Triton's
    sequence batcher does) and of another size; each sequence numbers its two people from 1 + 10 * restarts."""

    live: dict[int, tuple[int, ...]] = field(default_factory=dict)
    flags: list[tuple[int, bool, bool]] = field(default_factory=list)
    started: dict[int, int] = field(default_factory=dict)

    def infer(self, model_name: str, inputs: list[Any], **kwargs: Any) -> FakeResult:
        self._fail_first("infer")
        request = self.decode(model_name, inputs, **kwargs)
        self.requests.append(request)
        sequence, start, end = kwargs["sequence_id"], kwargs["sequence_start"], kwargs["sequence_end"]
        self.flags.append((sequence, start, end))
        assert model_name == TRACK_MODEL and request.shape[0] == 1
        if start:
            self.live[sequence] = request.array.shape
            self.started[sequence] = self.started.get(sequence, -1) + 1
        if sequence not in self.live:
            raise error("INVALID_ARGUMENT", f"inference request for sequence {sequence} must specify the START flag")
        if self.live[sequence] != request.array.shape:
            raise error("INVALID_ARGUMENT", "frame of another size")
        if end:
            del self.live[sequence]
        outputs = outputs_for([3], image_sizes=[(request.shape[2], request.shape[1])])
        first = 1 + 10 * self.started[sequence]
        outputs["track_ids"] = np.array([[first, first + 1, -1]], np.int64)
        outputs["track_ages"] = np.array([[4, 0, -1]], np.int32)
        return FakeResult(outputs)


def frames(count: int, shape: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    return [np.full((*shape, 3), i, np.uint8) for i in range(count)]


def test_track_sends_one_sequence_with_start_and_end_and_decodes_tracks() -> None:
    server = SequenceServer()
    with Client(transport=server) as client:
        results = list(
            client.track(frames(3), stream_id=42, channels="bgr", tracking=TrackingParameters(track_lost_frames=5))
        )
    assert server.flags == [(42, True, False), (42, False, False), (42, False, True)]
    assert [r.frame_index for r in results] == [0, 1, 2] and {r.stream_id for r in results} == {42}
    people = results[1].people
    assert all(isinstance(p, TrackedPerson) for p in people)
    assert [p.track_id for p in people] == [1, 2, None] and [p.track_age for p in people] == [4, 0, None]
    assert people[0]["nose"].x == people[0].keypoints[0, 0]
    assert server.requests[0].parameters["track_lost_frames"] == 5 and not any(r.restarted for r in results)
    rows = results[0].to_mot_rows()
    assert [row[:2] for row in rows] == [[1, 1], [1, 2]] and rows[0][4] == pytest.approx(50)
    assert results[0].people[0].to_dict()["track_id"] == 1


def test_a_fresh_stream_id_per_call_and_interleaved_streams_do_not_mix() -> None:
    server = SequenceServer()
    with Client(transport=server) as client:
        a, b = client.track(frames(3), channels="bgr"), client.track(frames(3, (32, 32)), channels="bgr")
        got = [next(a), next(b), next(a), next(b), next(a), next(b)]
    assert got[0].stream_id != got[1].stream_id
    assert [r.stream_id for r in got[::2]] == [got[0].stream_id] * 3 and [r.frame_index for r in got[1::2]] == [0, 1, 2]
    assert server.live == {}  # both ended


def test_server_restart_mid_stream_raises_tracks_lost_never_renumbers() -> None:
    server = SequenceServer()
    with Client(transport=server, retries=0) as client:
        stream = client.track(frames(4), stream_id=7, channels="bgr")
        assert next(stream).frame_index == 0
        server.live.clear()  # the server restarted: it forgot the sequence
        with pytest.raises(
            TracksLostError, match="stream 7: the server lost this stream's tracks at frame 1"
        ) as caught:
            next(stream)
    assert caught.value.stream_id == 7 and caught.value.frame_index == 1 and caught.value.status == "INVALID_ARGUMENT"


def test_server_restart_after_unavailable_retries_then_reports_lost_tracks() -> None:
    server = SequenceServer()
    with Client(transport=server, retries=2) as client:
        stream = client.track(frames(3), channels="bgr")
        next(stream)
        server.live.clear()
        server.failures.append(error("UNAVAILABLE", "connection refused"))
        with pytest.raises(TracksLostError):
            next(stream)


def test_restart_on_loss_restarts_the_sequence_and_marks_the_result() -> None:
    server = SequenceServer()
    with Client(transport=server) as client:
        stream = client.track(frames(4), stream_id=9, channels="bgr", restart_on_loss=True)
        first = next(stream)
        server.live.clear()
        rest = list(stream)
    assert [r.restarted for r in (first, *rest)] == [False, True, False, False]
    assert rest[0].people[0].track_id == 11  # a fresh numbering, flagged, not silently continued
    # Refused on the stream without a status, asked again as a unary call (its status), restarted on the stream.
    assert server.flags[1:4] == [(9, False, False), (9, False, False), (9, True, False)]
    assert [s.sent for s in server.streams] == [5]


def test_a_frame_of_another_size_is_invalid_input_not_lost_tracks() -> None:
    server = SequenceServer()
    with Client(transport=server) as client:
        stream = client.track([*frames(2), *frames(1, (32, 32))], channels="bgr")
        next(stream), next(stream)
        with pytest.raises(InvalidInputError, match="frame of another size") as caught:
            next(stream)
    assert not isinstance(caught.value, TracksLostError)


def test_track_refuses_bad_stream_ids_and_encoded_images() -> None:
    with Client(transport=SequenceServer()) as client:
        with pytest.raises(ValueError, match="stream_id=0; accepted: an integer 1..2"):
            client.track(frames(1), stream_id=0)
        with pytest.raises(InvalidInputError, match=r"frames\[0\]: an encoded image"):
            next(client.track([b"\xff\xd8 not decoded here"]))


def test_async_track_runs_streams_concurrently_each_in_order() -> None:
    server = SequenceServer()

    async def main() -> list[list[Any]]:
        async with AsyncClient(transport=FakeAsyncTransport(server, delay_s=lambda r: 0.001)) as client:

            async def one(stream_id: int) -> list[Any]:
                return [r async for r in client.track(frames(4), stream_id=stream_id, channels="bgr")]

            return await asyncio.gather(one(1), one(2))

    first, second = asyncio.run(main())
    assert [r.frame_index for r in first] == [0, 1, 2, 3] and {r.stream_id for r in second} == {2}
    for stream_id in (1, 2):
        flags = [(s, e) for sid, s, e in server.flags if sid == stream_id]
        assert flags == [(True, False), (False, False), (False, False), (False, True)]


def test_video_track_draws_each_id_in_its_colour_and_writes_mot_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = SequenceServer()
    monkeypatch.setattr(_common, "Client", lambda url, **options: Client(url, transport=server, **options))
    source, out, rows = tmp_path / "in.mp4", tmp_path / "out.mp4", tmp_path / "tracks" / "mot.txt"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (256, 192))
    for _ in range(4):
        writer.write(np.zeros((192, 256, 3), np.uint8))
    writer.release()
    argv = ["video", str(source), "--out", str(out), "--track", "--json", str(rows), "--no-progress"]
    assert main([*argv, "--score-threshold", "0.2"]) == 0
    assert [flags[1:] for flags in server.flags] == [(True, False), (False, False), (False, False), (False, True)]
    assert server.requests[0].parameters == {"score_threshold": 0.2}
    lines = rows.read_text().splitlines()
    assert lines[:2] == ["1,1,0,1,50,79,0.90,-1,-1,-1", "1,2,10,11,50,79,0.80,-1,-1,-1"] and len(lines) == 8
    capture = cv2.VideoCapture(str(out))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 4


def test_draw_tracks_gives_each_id_its_own_stable_colour() -> None:
    server = SequenceServer()
    with Client(transport=server) as client:
        (result,) = client.track(frames(1, (192, 256)), channels="bgr")
    drawn = draw_tracks(np.zeros((192, 256, 3), np.uint8), result)
    # Boxes: track 1 at x 0..50, track 2 at x 10..60, the untracked person at 20..70 (y 21..100).
    assert tuple(drawn[60, 70]) == (160, 160, 160)
    assert tuple(drawn[60, 60]) == track_color(2) and tuple(drawn[60, 50]) == track_color(1)
    assert track_color(1) != track_color(2) and track_color(7) == track_color(7)


def test_video_json_needs_track(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["video", str(tmp_path / "in.mp4"), "--out", str(tmp_path / "o.mp4"), "--json", "x.txt"]) == 1
    assert "--json: writes tracks; add --track" in capsys.readouterr().err


def test_a_tracked_video_stays_on_the_server_holding_its_tracks() -> None:
    """Sequence state lives on one server: every frame of a video goes to one endpoint, videos take turns, and a
    server that goes away mid-video means lost tracks (the next server never saw the START), not new ids."""
    from rtmo_client import RetryPolicy

    servers = [SequenceServer() for _ in range(3)]
    no_wait = RetryPolicy(max_retries=3, initial_backoff_s=0.0, max_backoff_s=0.0)
    with Client(["a:8001", "b:8001", "c:8001"], transport=servers, retries=no_wait) as client:
        client.model_info(TRACK_MODEL)  # on a; the first video goes to b
        assert len(list(client.track(frames(5), stream_id=1, channels="bgr"))) == 5
        assert len(list(client.track(frames(3), stream_id=2, channels="bgr"))) == 3
        assert [len(s.flags) for s in servers] == [0, 5, 3]
        video = client.track(frames(4), stream_id=3, channels="bgr")  # pinned to a
        next(video)
        servers[0].failures = [error("UNAVAILABLE", "a is gone")]
        with pytest.raises(TracksLostError, match="stream 3"):
            next(video)
    assert servers[1].flags[-1] == (3, False, False)  # the retry went to b, which refused a sequence it never saw


def test_every_frame_of_a_video_goes_over_one_stream_closed_after_end() -> None:
    server = SequenceServer()
    with Client(transport=server) as client:
        a, b = (
            client.track(frames(3), stream_id=1, channels="bgr"),
            client.track(frames(2), stream_id=2, channels="bgr"),
        )
        next(a), next(b)
        assert [s.closed for s in server.streams] == [False, False]  # each video its own stream, open while it runs
        list(a), list(b)
    assert [s.sent for s in server.streams] == [3, 2] and all(s.closed for s in server.streams)
    assert [request.shape[0] for request in server.requests] == [1] * 5  # one frame a request, nothing else sent


def test_an_early_break_ends_the_sequence_with_its_last_frame_and_closes_the_stream() -> None:
    server = SequenceServer()
    with Client(transport=server) as client:
        for result in client.track(frames(5), stream_id=5, channels="bgr"):
            if result.frame_index == 1:
                break
        assert server.live == {} and server.streams[0].closed  # freed at once, not after the idle timeout
        assert server.flags == [(5, True, False), (5, False, False), (5, False, True)]
        assert np.array_equal(server.requests[2].array, server.requests[1].array)  # END carried the last frame again
        again = list(client.track(frames(2), stream_id=5, channels="bgr"))  # the same id starts cleanly
    assert [r.frame_index for r in again] == [0, 1] and server.flags[3:] == [(5, True, False), (5, False, True)]


def test_a_refused_frame_ends_the_sequence_it_leaves_behind() -> None:
    server = SequenceServer()
    with Client(transport=server) as client:
        stream = client.track([*frames(2), *frames(1, (32, 32)), *frames(1)], stream_id=3, channels="bgr")
        next(stream), next(stream)
        with pytest.raises(InvalidInputError):
            next(stream)
    # The refused frame left its stream open; END went on it with the last frame the server tracked.
    assert server.flags[-1] == (3, False, True) and server.live == {} and len(server.flags) == 5
    assert [s.sent for s in server.streams] == [4] and all(s.closed for s in server.streams)


def test_lost_tracks_are_not_ended_again_and_a_restart_goes_on_over_the_same_stream() -> None:
    server = SequenceServer()
    with Client(transport=server, retries=0) as client:
        strict = client.track(frames(3), stream_id=1, channels="bgr")
        forgiving = client.track(frames(3), stream_id=2, channels="bgr", restart_on_loss=True)
        next(strict), next(forgiving)
        server.live.clear()
        with pytest.raises(TracksLostError):
            next(strict)
        assert [r.restarted for r in forgiving] == [True, False]
    # Frame 1 went on the stream, then as a unary call for its status; no END for a sequence the server lost.
    assert [f for f in server.flags if f[0] == 1] == [(1, True, False), (1, False, False), (1, False, False)]
    assert [s.sent for s in server.streams] == [2, 4] and all(s.closed for s in server.streams)


def test_closing_the_client_closes_the_streams_of_unfinished_videos() -> None:
    server = SequenceServer()
    client = Client(transport=server)
    video = client.track(frames(4), channels="bgr")
    next(video)
    client.close()
    assert server.streams[0].closed
    with pytest.raises(RTMOClientError, match="this client is closed"):
        next(video)
    assert len(server.flags) == 1  # nothing sent after the close


def test_async_early_close_ends_the_sequence_and_streams_stay_apart() -> None:
    server = SequenceServer()

    async def main() -> None:
        async with AsyncClient(transport=FakeAsyncTransport(server, delay_s=lambda r: 0.001)) as client:
            video = client.track(frames(5), stream_id=8, channels="bgr")
            async with contextlib.aclosing(video):
                async for result in video:
                    if result.frame_index == 1:
                        break

    asyncio.run(main())
    assert server.flags == [(8, True, False), (8, False, False), (8, False, True)] and server.live == {}
    assert len(server.streams) == 1 and server.streams[0].closed
