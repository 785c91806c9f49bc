"""People keep their ids over a panned and scaled video, end to end: rtmo_track on a real tritonserver, client.track.

The served model is ``rtmo_bench.trackable``'s random-weight RTMO, calibrated on the video's first frame as the
network sees it: its people are content peaks, sparse and large, so who is who is defined by the picture alone. The
video (``rtmo_bench.synthetic_video``) is the crowd photo hung on a plain wall, panned by 16 network pixels a frame
(right, pausing, and back, three times) in frames 1.5 times the network input, which the server letterboxes by 2/3:
a 24-pixel step of the frame is a 16-pixel step of the network input at the same sampling phase.

The tracker runs with its defaults but ``track_oks_weight=0``: a random keypoint decoder's keypoints are not tied to
the picture, and with OKS in the similarity (default 0.5) 1 of the 11 people in view switches ids.

Measured in-process (``RTMO.predict``, the tracker, the same parameters): the 16 people of frame 0 are found,
moved by the pan, in nearly every frame; MOTA 0.98, IDF1 0.99, no switch (the server gives the same). What holds
less well, and is not asserted: with frames the size of the input, 6 switches among the people at the poster's edges
(none among those in view throughout); with frames twice it (0.5 letterbox, bilinear both ways) no switch but people
found in 90% of frames; 32-pixel steps, or the stride-32 level of this model, put people one step from their
neighbour's last place and give switches. A zoom between frames does not hold at all: zooming the same frames
about their centre by 0.2% more each frame, a third of frame 0's people are found by frame 6 and ids switch
(the random network is not scale-equivariant, and sub-pixel resampling alone moves its peaks).
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest

import rtmo_client
from rtmo.runtime.preprocess import PAD_VALUE
from rtmo.serving.tritonserver import TritonServer
from rtmo_bench.synthetic_video import SyntheticVideo, identities, mot_scores, synthetic_video
from rtmo_bench.trackable import VIDEO, calibration_frame, track_video, trackable_model, trackable_video
from rtmo_serving import PHOTOS, serve_model

STEP_PX, WALL_PX, SCALE = VIDEO["step_px"], VIDEO["wall_px"], VIDEO["scale"]


@pytest.fixture(scope="module")
def clip() -> SyntheticVideo:
    return trackable_video(cv2.imread(str(PHOTOS / "000000196141.jpg")), frames=30)


@pytest.fixture(scope="module")
def trackable_server(clip: SyntheticVideo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with serve_model(trackable_model(calibration_frame(clip)), tmp_path_factory.mktemp("rtmo-trackable")) as server:
        yield server


@pytest.mark.integration
def test_people_in_view_keep_one_id_each_over_a_panned_scaled_video(
    trackable_server: TritonServer, clip: SyntheticVideo
) -> None:
    with rtmo_client.Client(trackable_server.urls.grpc, timeout_s=60) as client:
        truth, tracked = track_video(client, clip)
    inner = truth[clip.inner(truth, margin_px=round(STEP_PX * SCALE))]
    assert len(inner) >= 8, f"the video shows {len(inner)} people in view throughout; the check needs several"

    # Equivariance: each of them is found, where the pan moved it, in nearly every frame.
    ids: dict[int, list[int | None]] = {person: [] for person in range(len(inner))}
    for (boxes, track_ids), shift in zip(tracked, clip.shifts):
        for person, track_id in zip(identities(boxes, shift, inner, tolerance_px=4 * SCALE), track_ids):
            if person >= 0:
                ids[int(person)].append(track_id)
    assert all(len(seen) >= 0.9 * len(clip.frames) for seen in ids.values()), {p: len(s) for p, s in ids.items()}

    # Identity: one id each over every frame where it is found, never another's.
    assert all(len(set(seen)) == 1 and seen[0] is not None for seen in ids.values()), ids
    assert len({seen[0] for seen in ids.values()}) == len(inner)
    # Over all of frame 0's people, those at the poster's edges included (motmetrics, boxes matched by IoU).
    scores = mot_scores(truth, clip.shifts, tracked)
    assert scores["id_switches"] == 0, scores
    assert scores["mota"] >= 0.9 and scores["idf1"] >= 0.9, scores


def test_mot_scores_counts_a_swap_of_ids_as_switches() -> None:
    """The no-switch assertion above can fail: two people trading ids half-way are counted."""
    truth = np.array([[0, 0, 50, 100], [200, 0, 250, 100]], np.float64)
    shifts = [(10 * t, 0) for t in range(6)]
    frames = [(truth + [dx, dy, dx, dy], [1, 2] if t < 3 else [2, 1]) for t, (dx, dy) in enumerate(shifts)]
    assert mot_scores(truth, shifts, frames)["id_switches"] == 2
    kept = [(boxes, [1, 2]) for boxes, _ in frames]
    assert mot_scores(truth, shifts, kept) == {"mota": 1.0, "idf1": 1.0, "id_switches": 0}


def test_the_wall_keeps_the_photo_in_every_frame_and_scale_keeps_network_steps(clip: SyntheticVideo) -> None:
    side = round(416 * SCALE)
    assert clip.side == side and all(f.shape == (side, side, 3) for f in clip.frames)
    steps = {dx for dx, _ in clip.shifts}
    assert steps == {-round(STEP_PX * SCALE) * k for k in range(5)}
    wall = round(WALL_PX * SCALE) - 1  # the bilinear resize blends the poster edge into one more pixel
    for frame in clip.frames:
        border = np.concatenate([frame[:wall].reshape(-1, 3), frame[-wall:].reshape(-1, 3)])
        assert (np.abs(border.astype(int) - PAD_VALUE) <= 1).all()  # plain wall, the photo never reaches the border
        assert (np.abs(frame[:, :wall].astype(int) - PAD_VALUE) <= 1).all()
        assert (np.abs(frame[:, -wall:].astype(int) - PAD_VALUE) <= 1).all()
    # The same content, moved: frame 1's picture is frame 0's, shifted by the step (bilinear resize of the same
    # windows, so exact away from the edges).
    dx = -clip.shifts[1][0]
    assert np.array_equal(clip.frames[1][:, : side - dx - 2], clip.frames[0][:, dx : side - 2])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scale": 1.3}, "scale: got 1.3"),
        ({"scale": 0.5}, "scale: got 0.5"),
        ({"wall_px": 150}, "wall_px: got 150; accepted: at most"),
        ({"step_px": 0}, "step_px: got 0"),
        ({"frames": 0}, "frames: got 0"),
    ],
)
def test_synthetic_video_refuses_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthetic_video(np.zeros((100, 150, 3), np.uint8), **options)


def test_trackable_model_refuses_a_calibration_frame_that_is_not_the_network_input() -> None:
    with pytest.raises(ValueError, match=r"calibration: got uint8 \(624, 624, 3\); accepted: uint8 \(416, 416, 3\)"):
        trackable_model(np.zeros((624, 624, 3), np.uint8))
