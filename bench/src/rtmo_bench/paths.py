"""What the benchmarks read from the project's checkout: sample photos, repository templates, MMPose's harness.

They run from the checkout's root (``RTMO_CHECKOUT`` names another), as the README's commands do.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ANNOTATIONS", "CHECKOUT", "MMPOSE_REFERENCE_SCRIPT", "MMPOSE_REFERENCE_VENV", "MODEL_REPOSITORY", "PHOTOS"]

CHECKOUT = Path(os.environ.get("RTMO_CHECKOUT", ".")).resolve()
PHOTOS = CHECKOUT / "data" / "photos"
# COCO keypoint annotations of four of those photos (training benchmarks train and validate on them).
ANNOTATIONS = CHECKOUT / "data" / "coco_val2017_subset.json"
MODEL_REPOSITORY = CHECKOUT / "model_repository"
# MMPose in its own environment (made by the parity tests), for the optional comparison in rtmo_bench.model.
MMPOSE_REFERENCE_SCRIPT = CHECKOUT / "tests" / "mmpose_ref" / "run_reference.py"
MMPOSE_REFERENCE_VENV = Path(os.environ.get("RTMO_MMPOSE_VENV") or CHECKOUT / ".mmpose-ref-venv")
