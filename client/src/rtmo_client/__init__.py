"""rtmo-client: multi-person pose estimation from an RTMO Triton server in one call.

Example:
    >>> import rtmo_client
    >>> with rtmo_client.Client("localhost:8001") as client:
    ...     result = client.estimate("photo.jpg")
    >>> result.people[0]["left_wrist"]
    Keypoint(x=..., y=..., score=...)

Errors all derive from :class:`RTMOClientError` (see :mod:`rtmo_client.errors`). Drawing, video and the
``rtmo-client`` command need the ``cli`` extra: ``pip install 'rtmo-client[cli]'``.
"""

from __future__ import annotations

from rtmo_client.async_client import AsyncClient
from rtmo_client.client import Client
from rtmo_client.coco import to_coco, write_coco
from rtmo_client.draw import draw
from rtmo_client.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    RTMOClientError,
    ServerError,
    SharedMemoryError,
    UnavailableError,
)
from rtmo_client.results import Keypoint, ModelInfo, Person, PoseResult, ServerInfo
from rtmo_client.sources import image_files, video_frames
from rtmo_client.tracking import TrackedPerson, TrackedResult, TracksLostError
from rtmo_client.wire import RetryPolicy

__all__ = [
    "AsyncClient",
    "Client",
    "DeadlineExceededError",
    "InvalidInputError",
    "Keypoint",
    "ModelInfo",
    "ModelNotReadyError",
    "Person",
    "PoseResult",
    "RTMOClientError",
    "RetryPolicy",
    "ServerError",
    "ServerInfo",
    "SharedMemoryError",
    "TrackedPerson",
    "TrackedResult",
    "TracksLostError",
    "UnavailableError",
    "__version__",
    "draw",
    "image_files",
    "to_coco",
    "video_frames",
    "write_coco",
]

__version__ = "0.1.0"
