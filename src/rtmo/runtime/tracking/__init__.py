"""Pose tracking across the frames of a video (the ``tracker`` Triton model's runtime), NumPy and SciPy only.

- ``kalman``: a constant-velocity Kalman filter on the box;
- ``similarity``: box IoU and keypoint OKS between tracks and people;
- ``tracker``: one video's tracks (ByteTrack's two-stage association with poses);
- ``sequences``: one tracker per Triton sequence, freed on END or when idle;
- ``rows``: the ``PEOPLE`` tensors of a request in, the track tensors out.
"""

from rtmo.runtime.tracking.rows import people_in_row, track_tensors
from rtmo.runtime.tracking.sequences import SEQUENCE_END, SEQUENCE_START, Sequences
from rtmo.runtime.tracking.tracker import Assignment, Detections, Tracker, TrackState

__all__ = [
    "SEQUENCE_END",
    "SEQUENCE_START",
    "Assignment",
    "Detections",
    "Sequences",
    "TrackState",
    "Tracker",
    "people_in_row",
    "track_tensors",
]
