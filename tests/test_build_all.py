"""``python -m rtmo.build``: every stage from one command."""

from __future__ import annotations

import json

import pytest

from rtmo.build.__main__ import main
from rtmo.build.assemble import copy_templates


def test_build_all_cpu_fills_repository_with_both_onnx_models_and_cpu_configs(tmp_path):
    from pathlib import Path

    repository = tmp_path / "model_repository"
    copy_templates(Path(__file__).parents[1] / "model_repository", repository)
    assert (
        main(
            [
                "--checkpoint",
                "random:tiny",
                "--target",
                "cpu",
                "--repository",
                str(repository),
                "--work-dir",
                str(tmp_path / "work"),
            ]
        )
        == 0
    )
    assert (repository / "engine" / "1" / "model.onnx").stat().st_size > 1_000_000
    assert (repository / "keypoints" / "1" / "model.onnx").is_file()
    assert (repository / "engine" / "configs" / "cpu.pbtxt").is_file()
    assert json.loads((tmp_path / "work" / "export" / "metadata.json").read_text())["input_size"] == [416, 416]


def test_build_all_gpu_without_tensorrt_stops_with_a_clear_error(tmp_path, caplog):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here; this checks the message shown without it")
    except ImportError:
        pass
    code = main(
        [
            "--checkpoint",
            "random:tiny",
            "--target",
            "gpu",
            "--repository",
            str(tmp_path / "repo"),
            "--work-dir",
            str(tmp_path / "work"),
        ]
    )
    assert code == 2
    assert "needs the `tensorrt` Python package" in caplog.text
    assert not (tmp_path / "repo").exists()


def test_build_all_rejects_unknown_checkpoint_name(tmp_path, caplog):
    assert main(["--checkpoint", "rtmo-q_nowhere", "--target", "cpu", "--work-dir", str(tmp_path / "w")]) == 2
    assert "not a zoo name" in caplog.text


@pytest.mark.parametrize("script", ["export", "engine", "assemble", "all"])
def test_build_scripts_are_thin_entry_points(script):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    result = subprocess.run(
        [sys.executable, str(root / "build" / f"{script}.py"), "--help"], capture_output=True, text=True, cwd=root
    )
    assert result.returncode == 0, result.stderr
    assert "--" in result.stdout and "usage" in result.stdout
