"""Tracking end to end: rtmo_track on a real tritonserver, through the SDK and through raw tritonclient."""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import rtmo_client
from rtmo.keypoints import COCO_SIGMAS
from rtmo.runtime.tracking import Detections, Tracker
from rtmo.serving.cpu import cpu_server
from rtmo.serving.tritonserver import TritonServer, free_ports
from rtmo_bench.synthetic_video import identities, synthetic_video
from rtmo_client import InvalidInputError, TracksLostError
from rtmo_client.transport import AsyncGrpcTransport, GrpcTransport, channel_options
from rtmo_contract import TRACK_MODEL, TrackingParameters
from rtmo_serving import PHOTOS, build_cpu_repository

pytestmark = pytest.mark.integration

# The calibrated random-weight model's people score 0.1-0.35: some in each stage of the association.
DETECTION = {"score_threshold": 0.1}
TRACKING = TrackingParameters(track_high_threshold=0.2, track_new_threshold=0.25)


@pytest.fixture(scope="module")
def video() -> list[np.ndarray]:
    return synthetic_video(cv2.imread(str(PHOTOS / "000000196141.jpg")), frames=30).frames


def ids_of(results: list[rtmo_client.TrackedResult]) -> list[list[int | None]]:
    return [[person.track_id for person in result.people] for result in results]


def test_the_server_tracks_its_own_detections_as_the_tracker_does_over_a_panning_video(
    rtmo_server: TritonServer,
) -> None:
    """The served pipeline (sequence flags, one state per sequence, frames in order, parameters) gives exactly the
    ids of rtmo.runtime.tracking.Tracker run here on rtmo_frames' people of the same frames.

    The random-weight model cannot show that people keep their ids when the camera pans: its people are
    stride-sized anchor cells on a 32 px grid, so the 32 px shifts it is equivariant for move each onto its
    neighbour's place (tests/test_tracking.py checks association on synthetic people instead)."""
    clip = synthetic_video(cv2.imread(str(PHOTOS / "000000196141.jpg")), frames=30)
    with rtmo_client.Client(rtmo_server.urls.grpc, timeout_s=60) as client:
        detected = [client.estimate(frame, channels="bgr", **DETECTION) for frame in clip.frames]
        results = list(client.track(clip.frames, channels="bgr", tracking=TRACKING, **DETECTION))
    tracker = Tracker(sigmas=np.asarray(COCO_SIGMAS))
    expected = []
    for result in detected:
        people = Detections(
            boxes=np.array([p.box for p in result.people], np.float32).reshape(-1, 4),
            scores=np.array([p.score for p in result.people], np.float32),
            keypoints=np.array([p.keypoints for p in result.people], np.float32).reshape(-1, 17, 2),
            keypoint_scores=np.array([p.keypoint_scores for p in result.people], np.float32).reshape(-1, 17),
        )
        expected.append([None if i < 0 else i for i in tracker.update(people, TRACKING).track_ids.tolist()])
    assert [r.frame_index for r in results] == list(range(30)) and sum(len(r) for r in results) >= 30 * 4
    assert ids_of(results) == expected
    assert [[p.box for p in r.people] for r in results] == [[p.box for p in r.people] for r in detected]
    # The people found on frame 0 are found again in every frame where the shift carries them (equivariance).
    found = np.array([p.box for p in detected[0].people])
    inner = found[clip.inner(found)]
    seen = sum(
        int((identities(np.array([p.box for p in r.people]).reshape(-1, 4), shift, inner) >= 0).sum())
        for r, shift in zip(results, clip.shifts)
    )
    assert seen >= 0.9 * 30 * len(inner)


def test_interleaved_streams_get_the_ids_each_gets_alone(rtmo_server: TritonServer, video: list[np.ndarray]) -> None:
    other = synthetic_video(cv2.imread(str(PHOTOS / "000000040083.jpg")), frames=12).frames
    first = video[:12]
    with rtmo_client.Client(rtmo_server.urls.grpc, timeout_s=60) as client:
        alone_a = ids_of(list(client.track(first, channels="bgr", tracking=TRACKING, **DETECTION)))
        alone_b = ids_of(list(client.track(other, channels="bgr", tracking=TRACKING, **DETECTION)))
        a = client.track(first, channels="bgr", tracking=TRACKING, **DETECTION)
        b = client.track(other, channels="bgr", tracking=TRACKING, **DETECTION)
        together_a, together_b = [], []
        for _ in range(12):
            together_a.append(next(a))
            together_b.append(next(b))
        with ThreadPoolExecutor(2) as pool:  # each thread its video, at once, over one client
            threaded = list(
                pool.map(
                    lambda clip: ids_of(list(client.track(clip, channels="bgr", tracking=TRACKING, **DETECTION))),
                    [first, other],
                )
            )
    assert any(any(ids) for ids in alone_a) and any(any(ids) for ids in alone_b)
    assert ids_of(together_a) == alone_a and ids_of(together_b) == alone_b
    assert threaded == [alone_a, alone_b]


def test_async_streams_at_once_match_the_sync_ones(rtmo_server: TritonServer, video: list[np.ndarray]) -> None:
    with rtmo_client.Client(rtmo_server.urls.grpc, timeout_s=60) as client:
        alone = ids_of(list(client.track(video[:8], channels="bgr", tracking=TRACKING, **DETECTION)))

    async def both() -> list[list[rtmo_client.TrackedResult]]:
        async with rtmo_client.AsyncClient(rtmo_server.urls.grpc, timeout_s=60) as client:

            async def one() -> list[rtmo_client.TrackedResult]:
                return [r async for r in client.track(video[:8], channels="bgr", tracking=TRACKING, **DETECTION)]

            return list(await asyncio.gather(one(), one()))

    first, second = asyncio.run(both())
    assert ids_of(first) == alone and ids_of(second) == alone and first[0].stream_id != second[0].stream_id


class CountingTransport(GrpcTransport):
    """The real blocking transport, counting the streams it opens and its unary inference calls."""

    def __init__(self, url: str) -> None:
        super().__init__(url, creds=None, channel_args=channel_options())
        self.streams = 0
        self.unary = 0

    def open_stream(self, **options: Any) -> Any:
        self.streams += 1
        return super().open_stream(**options)

    def infer(self, *args: Any, **kwargs: Any) -> Any:
        self.unary += 1
        return super().infer(*args, **kwargs)


class AsyncCountingTransport(AsyncGrpcTransport):
    """The same for the asyncio transport."""

    def __init__(self, url: str) -> None:
        super().__init__(url, channel_args=channel_options())
        self.streams = 0
        self.unary = 0

    async def open_stream(self, **options: Any) -> Any:
        self.streams += 1
        return await super().open_stream(**options)

    async def infer(self, *args: Any, **kwargs: Any) -> Any:
        self.unary += 1
        return await super().infer(*args, **kwargs)


def tracked_frames(server: TritonServer, *, at_least: int = 0) -> int:
    """How many requests rtmo_track has answered successfully since the server started.

    Triton counts a request just after answering it: wait (5 s at most) for ``at_least``, then a little more, so
    that a request sent beyond those expected would be counted too."""
    with grpcclient.InferenceServerClient(server.urls.grpc) as connection:

        def count() -> int:
            stats = connection.get_inference_statistics(TRACK_MODEL, as_json=True)["model_stats"][0]
            return int(stats["inference_stats"].get("success", {}).get("count", 0))

        deadline_s = time.monotonic() + 5.0
        while count() < at_least and time.monotonic() < deadline_s:
            time.sleep(0.05)
        time.sleep(0.2)
        return count()


def test_the_frames_of_a_video_go_over_one_grpc_stream(rtmo_server: TritonServer, video: list[np.ndarray]) -> None:
    sync = CountingTransport(rtmo_server.urls.grpc)
    before = tracked_frames(rtmo_server)
    with rtmo_client.Client(rtmo_server.urls.grpc, timeout_s=60, transport=sync) as client:
        results = list(client.track(video[:10], channels="bgr", tracking=TRACKING, **DETECTION))
    assert [r.frame_index for r in results] == list(range(10))
    assert (sync.streams, sync.unary) == (1, 0) and tracked_frames(rtmo_server, at_least=before + 10) - before == 10

    async def two_videos() -> tuple[AsyncCountingTransport, list[list[rtmo_client.TrackedResult]]]:
        transport = AsyncCountingTransport(rtmo_server.urls.grpc)
        async with rtmo_client.AsyncClient(rtmo_server.urls.grpc, timeout_s=60, transport=transport) as client:

            async def one() -> list[rtmo_client.TrackedResult]:
                return [r async for r in client.track(video[:6], channels="bgr", tracking=TRACKING, **DETECTION)]

            return transport, list(await asyncio.gather(one(), one()))

    before = tracked_frames(rtmo_server)
    transport, (first, second) = asyncio.run(two_videos())
    assert (transport.streams, transport.unary) == (2, 0)
    assert tracked_frames(rtmo_server, at_least=before + 12) - before == 12
    assert ids_of(first) == ids_of(second) == ids_of(results[:6])


def test_an_early_break_frees_the_sequence_and_the_id_starts_again_cleanly(
    rtmo_server: TritonServer, video: list[np.ndarray]
) -> None:
    with rtmo_client.Client(rtmo_server.urls.grpc, timeout_s=60) as client:
        alone = ids_of(list(client.track(video[:4], channels="bgr", tracking=TRACKING, **DETECTION)))
        for result in client.track(video[:8], stream_id=4242, channels="bgr", tracking=TRACKING, **DETECTION):
            if result.frame_index == 2:
                break
        with grpcclient.InferenceServerClient(rtmo_server.urls.grpc) as connection:
            with pytest.raises(InferenceServerException, match="sequence 4242 .*must specify the START flag"):
                _send(connection, video[3], 4242)  # the server ended it at the break, not after its idle timeout
        again = ids_of(list(client.track(video[:4], stream_id=4242, channels="bgr", tracking=TRACKING, **DETECTION)))

    async def break_early() -> None:
        async with rtmo_client.AsyncClient(rtmo_server.urls.grpc, timeout_s=60) as client:
            tracked = client.track(video[:8], stream_id=4343, channels="bgr", tracking=TRACKING, **DETECTION)
            async with contextlib.aclosing(tracked):
                async for result in tracked:
                    if result.frame_index == 1:
                        break

    asyncio.run(break_early())
    with grpcclient.InferenceServerClient(rtmo_server.urls.grpc) as connection:
        with pytest.raises(InferenceServerException, match="sequence 4343 .*must specify the START flag"):
            _send(connection, video[2], 4343)
    assert again == alone


def _send(connection: grpcclient.InferenceServerClient, frame: np.ndarray, sequence: int, **flags: object) -> object:
    tensor = grpcclient.InferInput("frame", [1, *frame.shape], "UINT8")
    tensor.set_data_from_numpy(frame[None])
    return connection.infer(TRACK_MODEL, [tensor], sequence_id=sequence, **flags)


def test_bad_sequences_are_invalid_argument_and_other_streams_go_on(
    rtmo_server: TritonServer, video: list[np.ndarray]
) -> None:
    with rtmo_client.Client(rtmo_server.urls.grpc, timeout_s=60) as client:
        alone = ids_of(list(client.track(video[:6], channels="bgr", tracking=TRACKING, **DETECTION)))
        bystander = client.track(video[:6], channels="bgr", tracking=TRACKING, **DETECTION)
        got = [next(bystander), next(bystander)]
        resized = client.track([video[0], video[1][:320]], channels="bgr")
        next(resized)
        with pytest.raises(InvalidInputError, match="320 pixels, but the sequence started with 416x416"):
            next(resized)
        with pytest.raises(InvalidInputError, match="parameter track_lost_frames: got 1000"):
            next(client.track(video[:2], channels="bgr", tracking=_unchecked(track_lost_frames=1000)))
        with grpcclient.InferenceServerClient(rtmo_server.urls.grpc) as connection:
            for flags in ({}, {"sequence_start": False}):  # a sequence never started
                with pytest.raises(InferenceServerException, match="must specify the START flag") as caught:
                    _send(connection, video[0], 987654, **flags)
                assert "INVALID_ARGUMENT" in str(caught.value.status())
            _send(connection, video[0], 555, sequence_start=True)
            _send(connection, video[1], 555, sequence_end=True)
            with pytest.raises(InferenceServerException, match="sequence 555 .*must specify the START flag"):
                _send(connection, video[2], 555)  # after END
        got += list(bystander)
    assert ids_of(got) == alone


def test_refused_frames_on_many_streams_at_once_leave_the_server_up(
    rtmo_server: TritonServer, video: list[np.ndarray]
) -> None:
    """Refusals inside streams from concurrent videos. With Triton's triton_grpc_error header (statuses on the
    stream) Triton 2.51 crashed (SIGSEGV) after a few dozen of them; the SDK does without it (rtmo_client.grpc_stream).
    """
    frame, resized = video[0], video[1][:320]

    def refused_videos(_: int) -> int:
        with rtmo_client.Client(rtmo_server.urls.grpc, timeout_s=60) as client:
            for _ in range(5):
                with pytest.raises(InvalidInputError, match="320 pixels"):
                    list(client.track([frame, resized, frame], channels="bgr"))
                with pytest.raises(InvalidInputError, match="score_threshold"):
                    list(client.track([frame], channels="bgr", score_threshold=5.0))
        return 10

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(refused_videos, range(8))) == 80
    with rtmo_client.Client(rtmo_server.urls.grpc, timeout_s=60) as client:
        assert len(list(client.track(video[:3], channels="bgr", tracking=TRACKING, **DETECTION))) == 3
    log = rtmo_server.log_file
    assert rtmo_server.is_running() and log is not None and "Signal (11)" not in log.read_text()


def _unchecked(**fields: object) -> TrackingParameters:
    """TrackingParameters with values past the contract's checks, to see the server refuse them."""
    parameters = TrackingParameters()
    for name, value in fields.items():
        object.__setattr__(parameters, name, value)
    return parameters


@pytest.mark.slow
def test_server_restart_mid_stream_is_reported_as_lost_tracks(
    served_model: object, tmp_path: Path, video: list[np.ndarray]
) -> None:
    repository = build_cpu_repository(served_model, tmp_path)
    ports = dict(zip(("grpc_port", "http_port", "metrics_port"), free_ports(3)))
    options = {"cache_dir": tmp_path / "triton-cache", "log_path": tmp_path / "tritonserver.log", **ports}
    with cpu_server(repository, **options) as server:
        client = rtmo_client.Client(server.urls.grpc, timeout_s=60, retries=5)
        strict = client.track(video[:4], channels="bgr", tracking=TRACKING, **DETECTION)
        forgiving = client.track(video[:4], channels="bgr", tracking=TRACKING, restart_on_loss=True, **DETECTION)
        next(strict), next(forgiving)
    with cpu_server(repository, **options):
        with pytest.raises(TracksLostError, match="lost this stream's tracks at frame 1") as caught:
            next(strict)
        rest = list(forgiving)
        client.close()
    assert caught.value.frame_index == 1
    assert [r.restarted for r in rest] == [True, False, False] and rest[0].frame_index == 1
