"""The code base keeps its lint: ruff's rules at 120 columns with a complexity cap (pyproject.toml), and its format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINTED = ["src", "tests", "contract", "bench", "client", "model_repository", "loadtest"]


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruff", *args, *LINTED], cwd=ROOT, capture_output=True, text=True)


def test_ruff_check_passes_at_120_columns_with_the_complexity_cap() -> None:
    result = ruff("check", "--output-format", "concise")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_format_leaves_every_file_unchanged() -> None:
    result = ruff("format", "--check")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
