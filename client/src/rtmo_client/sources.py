"""Image sources for :meth:`rtmo_client.Client.stream`: video files, cameras and directories, read lazily."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtmo_client.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["IMAGE_SUFFIXES", "image_files", "video_frames", "video_properties"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def image_files(
    directory: str | os.PathLike[str], *, suffixes: Sequence[str] = IMAGE_SUFFIXES, recursive: bool = False
) -> list[Path]:
    """The image files in ``directory``, sorted by path (case-insensitive suffix match).

    Raises:
        InvalidInputError: ``directory`` is not a directory.
    """
    root = Path(directory)
    if not root.is_dir():
        raise InvalidInputError(f"{root}: not a directory; give a directory of {', '.join(suffixes)} files")
    wanted = {suffix.lower() for suffix in suffixes}
    candidates = root.rglob("*") if recursive else root.iterdir()
    return sorted(path for path in candidates if path.is_file() and path.suffix.lower() in wanted)


def _open_capture(source: str | os.PathLike[str] | int) -> Any:
    from rtmo_client._optional import require_cv2

    cv2 = require_cv2("reading video")
    capture = cv2.VideoCapture(source if isinstance(source, int) else os.fspath(source))
    if not capture.isOpened():
        kind = "camera" if isinstance(source, int) else "video file"
        raise InvalidInputError(f"cannot open {kind} {source!r}; give a readable video file or a camera index")
    return capture


def video_frames(source: str | os.PathLike[str] | int) -> Iterator[npt.NDArray[np.uint8]]:
    """BGR frames of a video file (path) or a camera (index), one at a time, until the stream ends.

    Stream them with ``client.stream(video_frames("in.mp4"), channels="bgr")``. Needs OpenCV
    (``pip install 'rtmo-client[cli]'``).

    Raises:
        InvalidInputError: the source cannot be opened (raised at the first ``next``).
    """
    capture = _open_capture(source)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def video_properties(path: str | os.PathLike[str]) -> tuple[float, int, tuple[int, int]]:
    """``(fps, frame_count, (width, height))`` of a video file; fps falls back to 30 and count to 0 when unknown."""
    from rtmo_client._optional import require_cv2

    cv2 = require_cv2("reading video")
    capture = _open_capture(path)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS)) or 30.0
        count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        capture.release()
    return fps, count, size
