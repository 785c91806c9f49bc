"""A constant-velocity Kalman filter on a person's box, as ByteTrack/SORT use it, vectorised over tracks.

The state is ``(cx, cy, w, h, vx, vy, vw, vh)`` (centre, size and their per-frame velocities, image pixels); a
detection measures the first four. Noise is proportional to the box height, so near and far people are tracked
alike (ByteTrack's weights: 1/20 of the height for position, 1/160 for velocity).
"""

from __future__ import annotations

import numpy as np

__all__ = ["BoxKalman", "boxes_from_states", "measurement_from_boxes"]

_POSITION_NOISE = 1.0 / 20
_VELOCITY_NOISE = 1.0 / 160
_DIM = 4


def measurement_from_boxes(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 4) centre x, centre y, width, height."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    size = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + size / 2, size], axis=1)


def boxes_from_states(means: np.ndarray) -> np.ndarray:
    """(N, 8) states -> (N, 4) xyxy boxes."""
    means = np.asarray(means, dtype=np.float64).reshape(-1, 2 * _DIM)
    half = np.maximum(means[:, 2:4], 0.0) / 2
    return np.concatenate([means[:, :2] - half, means[:, :2] + half], axis=1)


class BoxKalman:
    """Stateless filter arithmetic; tracks keep their own ``mean`` (N, 8) and ``covariance`` (N, 8, 8)."""

    def __init__(self) -> None:
        self.motion = np.eye(2 * _DIM)
        self.motion[:_DIM, _DIM:] = np.eye(_DIM)  # position += velocity, once per frame
        self.observation = np.eye(_DIM, 2 * _DIM)

    @staticmethod
    def _heights(values: np.ndarray) -> np.ndarray:
        return np.maximum(values[:, 3], 1.0)[:, None]

    def initiate(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks at (N, 4) xyxy ``boxes``, at rest, with a wide velocity uncertainty."""
        measured = measurement_from_boxes(boxes)
        mean = np.concatenate([measured, np.zeros_like(measured)], axis=1)
        h = self._heights(measured)
        std = np.concatenate([2 * _POSITION_NOISE * h.repeat(_DIM, 1), 10 * _VELOCITY_NOISE * h.repeat(_DIM, 1)], 1)
        return mean, _diagonal(std**2)

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every track one frame ahead."""
        if not len(mean):
            return mean, covariance
        h = self._heights(mean)
        std = np.concatenate([_POSITION_NOISE * h.repeat(_DIM, 1), _VELOCITY_NOISE * h.repeat(_DIM, 1)], 1)
        mean = mean @ self.motion.T
        covariance = self.motion @ covariance @ self.motion.T + _diagonal(std**2)
        return mean, covariance

    def update(self, mean: np.ndarray, covariance: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tracks corrected by their matched (N, 4) xyxy ``boxes``."""
        if not len(mean):
            return mean, covariance
        measured = measurement_from_boxes(boxes)
        h = self._heights(mean)
        noise = _diagonal((_POSITION_NOISE * h.repeat(_DIM, 1)) ** 2)
        projected = covariance[:, :_DIM, :_DIM] + noise  # H P H^T + R
        cross = covariance[:, :, :_DIM]  # P H^T
        gain = np.linalg.solve(projected, cross.transpose(0, 2, 1)).transpose(0, 2, 1)  # P H^T S^-1 (S symmetric)
        innovation = measured - mean[:, :_DIM]
        mean = mean + np.einsum("nij,nj->ni", gain, innovation)
        covariance = covariance - gain @ projected @ gain.transpose(0, 2, 1)
        return mean, covariance


def _diagonal(values: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D, D) diagonal matrices."""
    out = np.zeros((*values.shape, values.shape[-1]))
    index = np.arange(values.shape[-1])
    out[:, index, index] = values
    return out
