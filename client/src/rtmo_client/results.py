"""Typed results: :class:`PoseResult` (the people in one image) and :class:`Person`; model and server metadata."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["Keypoint", "ModelInfo", "Person", "PoseResult", "ServerInfo"]

FloatArray = npt.NDArray[np.float32]


class Keypoint(NamedTuple):
    """One named keypoint: ``x``, ``y`` in image pixels and its score."""

    x: float
    y: float
    score: float


@dataclass(eq=False, slots=True)  # not frozen: frozen dataclasses build 3x slower, and images hold many people
class Person:
    """One detected person.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in image pixels.
        score: Person score (the box score the server sorts by).
        keypoints: ``(J, 2)`` float32 ``x, y`` in image pixels.
        keypoint_scores: ``(J,)`` float32 per-keypoint scores.
        keypoint_names: The ``J`` names, as the server's model configuration gives them.
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: FloatArray
    keypoint_scores: FloatArray
    keypoint_names: tuple[str, ...] = field(repr=False)

    def __getitem__(self, name: str) -> Keypoint:
        """The keypoint called ``name`` (e.g. ``person["left_wrist"]``).

        Raises:
            KeyError: ``name`` is not one of :attr:`keypoint_names` (they are listed in the message).
        """
        try:
            index = self.keypoint_names.index(name)
        except ValueError:
            raise KeyError(f"no keypoint {name!r}; this model has {list(self.keypoint_names)}") from None
        x, y = self.keypoints[index]
        return Keypoint(float(x), float(y), float(self.keypoint_scores[index]))

    def named(self) -> dict[str, Keypoint]:
        """Every keypoint by name, in the model's order."""
        return {name: self[name] for name in self.keypoint_names}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"box": [x1, y1, x2, y2], "score", "keypoints": {name: [x, y, score]}}``."""
        return {
            "box": list(self.box),
            "score": self.score,
            "keypoints": {name: list(point) for name, point in self.named().items()},
        }


@dataclass(frozen=True, eq=False)
class PoseResult:
    """The people found in one image, best score first.

    Attributes:
        people: The detected people.
        image_size: ``(width, height)`` of the image as the server decoded it (EXIF orientation applied), from the
            server's ``image_size`` output; None from a server that does not return it.
        truncated: Every candidate the server kept passed the score threshold, so people may be missing.
    """

    people: list[Person]
    image_size: tuple[int, int] | None
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.people)

    def __iter__(self) -> Iterator[Person]:
        return iter(self.people)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"image_size": [w, h] | None, "truncated", "people": [Person.to_dict(), ...]}``."""
        return {
            "image_size": None if self.image_size is None else list(self.image_size),
            "truncated": self.truncated,
            "people": [person.to_dict() for person in self.people],
        }

    def to_coco(self, image_id: int, *, category_id: int = 1) -> list[dict[str, Any]]:
        """This image's people as COCO keypoint-results entries (see :func:`rtmo_client.coco.to_coco`)."""
        from rtmo_client.coco import to_coco

        return to_coco(self, image_id, category_id=category_id)


@dataclass(frozen=True)
class ModelInfo:
    """What the server says about a model: read from its configuration, never hard-coded here.

    Attributes:
        name: Model name (``rtmo`` or ``rtmo_frames``).
        keypoint_names: Keypoint names in output order.
        skeleton: Pairs of keypoint indices to join when drawing.
        input_size: Side of the square network input in pixels.
        max_batch_size: Most rows one request may carry.
        checkpoint: Where the weights came from (zoo name, file, URL or ``random:...``).
        checkpoint_sha256: SHA-256 of the checkpoint (``random`` or ``unknown`` when there is none).
        parameters: Every string parameter of the model configuration, as the server sent it.
    """

    name: str
    keypoint_names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    input_size: int | None
    max_batch_size: int
    checkpoint: str | None
    checkpoint_sha256: str | None
    parameters: Mapping[str, str]


@dataclass(frozen=True)
class ServerInfo:
    """The server's name, version and protocol extensions."""

    name: str
    version: str
    extensions: tuple[str, ...]
