"""Optional dependencies (the ``cli`` extra): imported on first use, with the pip command when missing."""

from __future__ import annotations

from types import ModuleType

INSTALL_HINT = "pip install 'rtmo-client[cli]'"


def require_cv2(purpose: str) -> ModuleType:
    """The ``cv2`` module, or ImportError saying how to install it.

    Args:
        purpose: What needs OpenCV, for the message (e.g. "drawing").
    """
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs OpenCV, which rtmo-client does not install by default: {INSTALL_HINT}"
        ) from error
    return cv2
