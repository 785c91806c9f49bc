"""The distribution: exported names, a light import, strict typing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rtmo_client

CLIENT_DIR = Path(__file__).resolve().parents[1]


def test_all_is_sorted_and_every_name_exists() -> None:
    assert rtmo_client.__all__ == sorted(rtmo_client.__all__)
    assert all(hasattr(rtmo_client, name) for name in rtmo_client.__all__)
    public = {
        name
        for name in dir(rtmo_client)
        if not name.startswith("_") and not isinstance(getattr(rtmo_client, name), type(sys))
    }
    assert public - {"annotations"} <= set(rtmo_client.__all__)


def test_import_needs_neither_opencv_nor_tqdm() -> None:
    code = "import sys, rtmo_client; print(sorted(m for m in ('cv2', 'tqdm', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_package_is_typed_and_mypy_strict_clean(tmp_path: Path) -> None:
    assert (CLIENT_DIR / "src" / "rtmo_client" / "py.typed").is_file()
    # A cache of its own: a shared one left half-written by an interrupted run makes mypy crash, not report.
    command = [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "mypy-cache")]
    result = subprocess.run(command, cwd=CLIENT_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
