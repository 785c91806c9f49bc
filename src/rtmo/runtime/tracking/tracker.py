"""One video's tracker: ByteTrack's association with poses, a box Kalman filter and a lost-track buffer.

Each frame:

1. every track moves one frame ahead (:class:`~rtmo.runtime.tracking.kalman.BoxKalman`);
2. people scoring above ``track_high_threshold`` are matched to the confirmed and lost tracks;
3. the confirmed tracks left over are matched to the other people (ByteTrack's second stage: a person who is
   partly hidden scores low, yet is still the same person);
4. tentative tracks are matched to the high-scoring people still free; a tentative track that misses a frame
   is dropped;
5. confirmed tracks without a person become lost; lost ones older than ``track_lost_frames`` are forgotten;
6. high-scoring people still free and above ``track_new_threshold`` start tentative tracks.

A match is the optimal assignment (Hungarian, ``scipy.optimize.linear_sum_assignment``) on ``1 - similarity``,
with similarity = ``(1 - w) * IoU + w * OKS`` of the person and the track's predicted box and shifted keypoints,
or of its last seen box and keypoints if that is higher (the filter lags behind a person who stops or turns
abruptly); pairs below ``track_min_similarity`` never match. Ids are given when a track is confirmed, counting
from 1, and never reused within the sequence.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from rtmo.runtime.tracking.kalman import BoxKalman, boxes_from_states
from rtmo.runtime.tracking.similarity import box_iou, keypoint_similarity
from rtmo_contract import TrackingParameters

__all__ = ["Assignment", "Detections", "TrackState", "Tracker"]

NO_TRACK = -1


class TrackState(enum.Enum):
    TENTATIVE = "tentative"  # started, not yet seen on track_confirm_frames consecutive frames; no id yet
    CONFIRMED = "confirmed"  # has an id and was matched on the last frame
    LOST = "lost"  # has an id, missed at least the last frame; kept up to track_lost_frames


@dataclass(frozen=True)
class Detections:
    """The people of one frame, in image pixels (the ``rtmo_contract.PEOPLE`` rows without padding)."""

    boxes: np.ndarray  # (N, 4) xyxy
    scores: np.ndarray  # (N,)
    keypoints: np.ndarray  # (N, J, 2)
    keypoint_scores: np.ndarray  # (N, J)

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class Assignment:
    """Per person of a frame, in the order of its :class:`Detections`: track id and age, -1 when on no track."""

    track_ids: np.ndarray  # (N,) int64
    track_ages: np.ndarray  # (N,) int32


@dataclass
class _Track:
    mean: np.ndarray  # (8,) Kalman state
    covariance: np.ndarray  # (8, 8)
    keypoints: np.ndarray  # (J, 2) at the last match
    keypoint_scores: np.ndarray  # (J,)
    box: np.ndarray  # (4,) xyxy at the last match; the keypoints move with the predicted centre
    state: TrackState
    started: int  # frame number
    last_seen: int
    hits: int = 1
    track_id: int = NO_TRACK


class Tracker:
    """The tracks of one sequence of frames; :meth:`update` once per frame, in order."""

    def __init__(self, *, sigmas: np.ndarray) -> None:
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        self.kalman = BoxKalman()
        self.tracks: list[_Track] = []
        self.frame = -1
        self.next_id = 1

    def update(self, people: Detections, parameters: TrackingParameters) -> Assignment:
        """Associate one frame's people with the tracks; returns each person's track id and age."""
        self.frame += 1
        self._predict()
        owner = np.full(len(people), -1)  # index into self.tracks
        high = np.flatnonzero(people.scores > parameters.track_high_threshold)
        low = np.flatnonzero(people.scores <= parameters.track_high_threshold)
        by_state = {state: [i for i, t in enumerate(self.tracks) if t.state is state] for state in TrackState}
        established = by_state[TrackState.CONFIRMED] + by_state[TrackState.LOST]
        free_tracks, free_high = self._match(established, high, people, parameters, owner)
        still_confirmed = [i for i in free_tracks if self.tracks[i].state is TrackState.CONFIRMED]
        self._match(still_confirmed, low, people, parameters, owner)
        _, free_high = self._match(by_state[TrackState.TENTATIVE], free_high, people, parameters, owner)
        self._apply(people, owner, parameters)
        for person in free_high:
            if people.scores[person] > parameters.track_new_threshold:
                owner[person] = self._start(
                    people, person, confirmed=self.frame == 0 or parameters.track_confirm_frames == 1
                )
        return self._assignment(owner)

    # -- steps --------------------------------------------------------------------------------------------------

    def _predict(self) -> None:
        if not self.tracks:
            return
        mean, covariance = self.kalman.predict(
            np.stack([t.mean for t in self.tracks]), np.stack([t.covariance for t in self.tracks])
        )
        for track, m, c in zip(self.tracks, mean, covariance):
            track.mean, track.covariance = m, c

    def _similarity(
        self, tracks: list[int], people_index: np.ndarray, people: Detections, oks_weight: float
    ) -> np.ndarray:
        chosen = [self.tracks[i] for i in tracks]
        means = np.stack([t.mean for t in chosen])
        seen = np.stack([t.box for t in chosen])
        keypoints = np.stack([t.keypoints for t in chosen])
        motion = means[:, None, :2] - ((seen[:, :2] + seen[:, 2:]) / 2)[:, None]
        best = np.zeros((len(chosen), len(people_index)))
        for boxes, moved in ((boxes_from_states(means), keypoints + motion), (seen, keypoints)):
            iou = box_iou(boxes, people.boxes[people_index])
            similarity = (1 - oks_weight) * iou
            if oks_weight > 0:
                similarity += oks_weight * keypoint_similarity(
                    moved,
                    np.stack([t.keypoint_scores for t in chosen]),
                    people.keypoints[people_index],
                    people.keypoint_scores[people_index],
                    areas=np.prod(boxes[:, 2:] - boxes[:, :2], axis=1),
                    sigmas=self.sigmas,
                    where=iou > 0,
                )
            best = np.maximum(best, similarity)
        return best

    def _match(
        self,
        tracks: list[int],
        people_index: np.ndarray,
        people: Detections,
        parameters: TrackingParameters,
        owner: np.ndarray,
    ) -> tuple[list[int], np.ndarray]:
        """Assign ``people_index`` to ``tracks`` (setting ``owner``); returns the tracks and people left free."""
        if not tracks or not len(people_index):
            return tracks, people_index
        similarity = self._similarity(tracks, people_index, people, parameters.track_oks_weight)
        rows, cols = linear_sum_assignment(1.0 - similarity)
        good = similarity[rows, cols] >= parameters.track_min_similarity
        for row, col in zip(rows[good], cols[good]):
            owner[people_index[col]] = tracks[row]
        matched_rows, matched_cols = set(rows[good].tolist()), set(cols[good].tolist())
        free_tracks = [t for r, t in enumerate(tracks) if r not in matched_rows]
        free_people = np.array([p for c, p in enumerate(people_index) if c not in matched_cols], dtype=np.int64)
        return free_tracks, free_people

    def _apply(self, people: Detections, owner: np.ndarray, parameters: TrackingParameters) -> None:
        """Kalman-correct matched tracks, advance states, drop tentative misses and expired lost tracks."""
        matched = {int(track): person for person, track in enumerate(owner) if track >= 0}
        if matched:
            order = sorted(matched)
            mean, covariance = self.kalman.update(
                np.stack([self.tracks[i].mean for i in order]),
                np.stack([self.tracks[i].covariance for i in order]),
                people.boxes[[matched[i] for i in order]],
            )
            for i, m, c in zip(order, mean, covariance):
                self._seen(self.tracks[i], people, matched[i], m, c, parameters)
        kept: list[_Track] = []
        remap = {}
        for index, track in enumerate(self.tracks):
            if index not in matched:
                if track.state is TrackState.TENTATIVE:
                    continue
                track.state = TrackState.LOST
                if self.frame - track.last_seen > parameters.track_lost_frames:
                    continue
            remap[index] = len(kept)
            kept.append(track)
        self.tracks = kept
        owner[:] = [remap[int(t)] if t >= 0 else -1 for t in owner]

    def _seen(
        self,
        track: _Track,
        people: Detections,
        person: int,
        mean: np.ndarray,
        covariance: np.ndarray,
        parameters: TrackingParameters,
    ) -> None:
        track.mean, track.covariance = mean, covariance
        track.keypoints = people.keypoints[person].astype(np.float64)
        track.keypoint_scores = people.keypoint_scores[person].astype(np.float64)
        track.box = people.boxes[person].astype(np.float64)
        track.hits = track.hits + 1 if track.last_seen == self.frame - 1 else 1
        track.last_seen = self.frame
        if track.state is TrackState.TENTATIVE and track.hits >= parameters.track_confirm_frames:
            self._confirm(track)
        elif track.state is TrackState.LOST:
            track.state = TrackState.CONFIRMED

    def _start(self, people: Detections, person: int, *, confirmed: bool) -> int:
        mean, covariance = self.kalman.initiate(people.boxes[person][None])
        track = _Track(
            mean=mean[0],
            covariance=covariance[0],
            keypoints=people.keypoints[person].astype(np.float64),
            keypoint_scores=people.keypoint_scores[person].astype(np.float64),
            box=people.boxes[person].astype(np.float64),
            state=TrackState.TENTATIVE,
            started=self.frame,
            last_seen=self.frame,
        )
        if confirmed:
            self._confirm(track)
        self.tracks.append(track)
        return len(self.tracks) - 1

    def _confirm(self, track: _Track) -> None:
        track.state = TrackState.CONFIRMED
        track.track_id = self.next_id
        self.next_id += 1

    def _assignment(self, owner: np.ndarray) -> Assignment:
        ids = np.full(len(owner), NO_TRACK, dtype=np.int64)
        ages = np.full(len(owner), NO_TRACK, dtype=np.int32)
        for person, index in enumerate(owner):
            if index >= 0 and self.tracks[index].state is TrackState.CONFIRMED:
                ids[person] = self.tracks[index].track_id
                ages[person] = self.frame - self.tracks[index].started
        return Assignment(ids, ages)
