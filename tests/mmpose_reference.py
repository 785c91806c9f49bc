"""Running MMPose's own code in its reference environment (tests/mmpose_ref/): the interpreter and one call."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
REPO = HERE.parent
SCRIPT = HERE / "mmpose_ref" / "run_reference.py"


def reference_venv() -> Path:
    return Path(os.environ.get("RTMO_MMPOSE_VENV", REPO / ".mmpose-ref-venv"))


def build_reference_environment() -> Path:
    """Build (once; later calls return at once) the reference environment and return its interpreter."""
    venv = reference_venv()
    result = subprocess.run(
        ["bash", str(HERE / "mmpose_ref" / "setup_venv.sh"), str(venv)], capture_output=True, text=True
    )
    assert result.returncode == 0, (
        f"MMPose reference environment setup failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return venv / "bin" / "python"


def run_reference(python: Path, *args: str) -> dict:
    """One ``run_reference.py`` subcommand; its JSON line."""
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONPATH": ""}
    result = subprocess.run([str(python), str(SCRIPT), *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"run_reference.py {args[0]} failed:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])
