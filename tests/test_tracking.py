"""The tracker's association on synthetic people, with exact expected ids (rtmo.runtime.tracking)."""

from __future__ import annotations

import numpy as np
import pytest

from rtmo.keypoints import COCO_SIGMAS
from rtmo.runtime.tracking import SEQUENCE_END, SEQUENCE_START, Detections, Sequences, Tracker
from rtmo_contract import InvalidRequestError, TrackingParameters

SIGMAS = np.asarray(COCO_SIGMAS)
RNG = np.random.default_rng(0)
# Two poses in box-relative coordinates (17 COCO joints): arms down, and arms raised.
ARMS_DOWN = RNG.uniform(0.2, 0.8, (17, 2))
ARMS_UP = ARMS_DOWN.copy()
ARMS_UP[5:11, 1] = RNG.uniform(0.0, 0.2, 6)


def person(cx: float, cy: float, *, width: float = 60, height: float = 150, pose: np.ndarray = ARMS_DOWN) -> tuple:
    box = np.array([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2])
    return box, box[:2] + pose * [width, height]


def frame(*people: tuple, scores: list[float] | None = None) -> Detections:
    scores = scores if scores is not None else [0.9] * len(people)
    if not people:
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 17, 2)), np.zeros((0, 17)))
    return Detections(
        boxes=np.stack([p[0] for p in people]).astype(np.float32),
        scores=np.asarray(scores, np.float32),
        keypoints=np.stack([p[1] for p in people]).astype(np.float32),
        keypoint_scores=np.full((len(people), 17), 0.9, np.float32),
    )


def run(frames: list[Detections], parameters: TrackingParameters | None = None) -> list[list[int]]:
    tracker = Tracker(sigmas=SIGMAS)
    return [tracker.update(f, parameters or TrackingParameters()).track_ids.tolist() for f in frames]


def test_people_crossing_keep_their_ids() -> None:
    # A walks right, B walks left on the same line, arms up; they overlap fully at frame 10.
    frames = []
    for t in range(21):
        a = person(100 + 20 * t, 300, pose=ARMS_DOWN)
        b = person(500 - 20 * t, 300, pose=ARMS_UP)
        frames.append(frame(a, b) if t % 2 else frame(b, a))  # the order of people changes too
    # Frame 0 lists (B, A): B gets 1 and A gets 2, and they keep them through the crossing.
    assert run(frames) == [([2, 1] if t % 2 else [1, 2]) for t in range(21)]


def test_a_person_who_stops_and_turns_back_abruptly_keeps_the_id() -> None:
    # 32 px a frame right, a stop, then 32 px a frame back: the filter still expects the person further right.
    pan = (0, 1, 2, 3, 4, 4, 3, 2, 1, 0) * 2
    frames = [frame(person(240 + 32 * step, 200, width=133, height=133)) for step in pan]
    assert run(frames) == [[1]] * len(pan)


def test_an_occluded_person_keeps_the_id_and_a_newcomer_gets_the_next_one() -> None:
    frames = []
    for t in range(20):
        a = person(100 + 10 * t, 300)
        hidden = 8 <= t < 13  # five frames behind something
        newcomer = person(600, 300) if t >= 15 else None
        people = [p for p in (None if hidden else a, newcomer) if p is not None]
        frames.append(frame(*people))
    ids = run(frames)
    assert ids[:8] == [[1]] * 8
    assert ids[8:13] == [[]] * 5
    assert ids[13:15] == [[1], [1]]  # found again where its velocity took it
    assert ids[15] == [1, -1]  # the newcomer is tentative on its first frame
    assert ids[16:] == [[1, 2]] * 4


def test_a_person_leaving_is_forgotten_after_the_lost_buffer_and_ids_are_not_reused() -> None:
    parameters = TrackingParameters(track_lost_frames=3)
    frames = [frame(person(100, 300), person(400, 300)) for _ in range(3)]
    frames += [frame(person(400, 300)) for _ in range(5)]  # the first one left
    frames += [frame(person(400, 300), person(100, 300)) for _ in range(2)]  # someone enters where it was
    ids = run(frames, parameters)
    assert ids[:3] == [[1, 2]] * 3
    assert ids[3:8] == [[2]] * 5
    assert ids[8:] == [[2, -1], [2, 3]]  # track 1 expired after 3 lost frames: a new id, not 1


def test_within_the_lost_buffer_a_returning_person_gets_the_old_id() -> None:
    frames = [frame(person(100, 300)) for _ in range(3)] + [frame() for _ in range(4)]
    frames += [frame(person(100, 300)) for _ in range(2)]
    assert run(frames, TrackingParameters(track_lost_frames=5)) == [[1]] * 3 + [[]] * 4 + [[1]] * 2


def test_a_low_score_person_extends_a_track_but_never_starts_one() -> None:
    scores = [0.9, 0.9, 0.3, 0.3, 0.3, 0.9]
    frames = [frame(person(100 + 5 * t, 300), person(500, 100), scores=[s, 0.3]) for t, s in enumerate(scores)]
    ids = run(frames)
    assert ids == [[1, -1], [1, -1], [1, -1], [1, -1], [1, -1], [1, -1]]


def test_a_one_frame_false_positive_gets_no_id_and_uses_none() -> None:
    frames = [frame(person(100, 300))] + [frame(person(100, 300), person(400, 300))] + [frame(person(100, 300))] * 2
    frames += [frame(person(100, 300), person(600, 300))] * 2
    assert run(frames) == [[1], [1, -1], [1], [1], [1, -1], [1, 2]]


def test_confirm_frames_one_gives_ids_at_once_and_ages_count_frames() -> None:
    tracker = Tracker(sigmas=SIGMAS)
    parameters = TrackingParameters(track_confirm_frames=1)
    tracker.update(frame(person(100, 300)), parameters)
    second = tracker.update(frame(person(100, 300), person(400, 300)), parameters)
    third = tracker.update(frame(person(100, 300), person(400, 300)), parameters)
    assert second.track_ids.tolist() == [1, 2] and second.track_ages.tolist() == [1, 0]
    assert third.track_ages.tolist() == [2, 1]
    assert third.track_ids.dtype == np.int64 and third.track_ages.dtype == np.int32


def test_similarity_threshold_keeps_far_people_apart() -> None:
    frames = [frame(person(100, 300)), frame(person(400, 300)), frame(person(400, 300))]
    assert run(frames) == [[1], [-1], [2]]  # a jump across the image is a new person


def test_sequences_start_end_size_and_idle() -> None:
    clock = [0.0]
    sequences = Sequences(sigmas=SIGMAS, idle_s=10.0, clock=lambda: clock[0])
    p = TrackingParameters()
    one = frame(person(100, 300))
    assert sequences.track(7, flags=SEQUENCE_START, people=one, image_size=(640, 480), parameters=p).track_ids == [1]
    with pytest.raises(InvalidRequestError, match=r"frame of sequence 7: 320x240 pixels.*640x480"):
        sequences.track(7, flags=0, people=one, image_size=(320, 240), parameters=p)
    with pytest.raises(InvalidRequestError, match="sequence 8: unknown to the tracker"):
        sequences.track(8, flags=0, people=one, image_size=(640, 480), parameters=p)
    with pytest.raises(InvalidRequestError, match="sequence id: none"):
        sequences.track(0, flags=SEQUENCE_START, people=one, image_size=(640, 480), parameters=p)
    # The refused frames changed nothing: sequence 7 goes on with its track.
    assert sequences.track(7, flags=0, people=one, image_size=(640, 480), parameters=p).track_ids == [1]
    sequences.track(9, flags=SEQUENCE_START, people=one, image_size=(640, 480), parameters=p)
    assert sequences.track(7, flags=SEQUENCE_END, people=one, image_size=(640, 480), parameters=p).track_ids == [1]
    assert set(sequences.live) == {9}
    with pytest.raises(InvalidRequestError, match="sequence 7: unknown"):
        sequences.track(7, flags=0, people=one, image_size=(640, 480), parameters=p)
    clock[0] = 11.0
    with pytest.raises(InvalidRequestError, match="sequence 9: unknown.*idled for over 10 s"):
        sequences.track(9, flags=0, people=one, image_size=(640, 480), parameters=p)
    assert sequences.live == {}


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("track_high_threshold", 1.0, "0 <= value < 1"),
        ("track_min_similarity", 0.0, "0 < value <= 1"),
        ("track_oks_weight", 1.5, "0 <= value <= 1"),
        ("track_confirm_frames", 0, "an integer 1..30"),
        ("track_lost_frames", 2.5, "an integer 0..300"),
        ("track_new_threshold", float("nan"), "a finite number"),
    ],
)
def test_tracking_parameters_refuse_out_of_range_values(field: str, value: object, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=f"parameter {field}: got .*{match}"):
        TrackingParameters(**{field: value})


def test_keypoint_similarity_is_cocos_oks_and_where_limits_the_pairs() -> None:
    from rtmo.runtime.tracking.similarity import keypoint_similarity

    track = np.zeros((1, 17, 2))
    people = np.stack([np.zeros((17, 2)), np.full((17, 2), 3.0)])
    ones = np.ones((2, 17))
    oks = keypoint_similarity(track, ones[:1], people, ones, areas=np.array([100.0]), sigmas=SIGMAS)
    expected = np.mean(np.exp(-18.0 / (2 * 100.0 * (2 * SIGMAS) ** 2)))  # d^2 = 3^2 + 3^2
    np.testing.assert_allclose(oks, [[1.0, expected]])
    masked = keypoint_similarity(
        track, ones[:1], people, ones, areas=np.array([100.0]), sigmas=SIGMAS, where=np.array([[False, True]])
    )
    np.testing.assert_allclose(masked, [[0.0, expected]])
