"""``rtmo.build.reuse``: a plan is reused only when it was built for exactly what is wanted now."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from rtmo.build.reuse import PlanRequest, gpu_name, main, plan_mismatches, reusable_plan_mismatches
from rtmo.files import sha256_file

WANTED = PlanRequest(
    checkpoint="rtmo-s_body7",
    checkpoint_sha256="ab" * 32,
    tensorrt_version="10.5.0.18",
    gpu="NVIDIA L4",
    precision="fp16",
    max_batch_size=8,
    top_k=256,
)


def write_export(directory: Path, request: PlanRequest = WANTED) -> Path:
    """An export folder as ``python -m rtmo.build --target gpu`` leaves it, with a sidecar describing ``request``."""
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(b"onnx graph bytes")
    (directory / "keypoints.onnx").write_bytes(b"onnx")
    (directory / "keypoints.plan").write_bytes(b"plan")
    (directory / "model.plan").write_bytes(b"plan")
    (directory / "metadata.json").write_text(json.dumps({"top_k": request.top_k, "input_size": [640, 640]}))
    sidecar = {
        "tensorrt_version": request.tensorrt_version,
        "gpu": request.gpu,
        "precision": request.precision,
        "profile": {"min_batch": 1, "opt_batch": 4, "max_batch": request.max_batch_size},
        "max_batch_size": request.max_batch_size,
        "onnx_sha256": sha256_file(directory / "model.onnx"),
        "checkpoint": request.checkpoint,
        "checkpoint_sha256": request.checkpoint_sha256,
    }
    (directory / "model.plan.json").write_text(json.dumps(sidecar))
    return directory


def test_reusable_plan_mismatches_is_empty_when_everything_matches(tmp_path: Path) -> None:
    assert reusable_plan_mismatches(write_export(tmp_path / "export"), WANTED) == []


@pytest.mark.parametrize(
    "change",
    [
        {"tensorrt_version": "10.6.0.26"},
        {"gpu": "NVIDIA H100 80GB HBM3"},
        {"precision": "fp32"},
        {"max_batch_size": 16},
        {"checkpoint_sha256": "cd" * 32},
        {"top_k": 512},
        {"checkpoint_weights": "source"},  # the sidecar has none: a plan from before the choice, of the EMA weights
    ],
)
def test_plan_mismatches_names_the_field_that_differs(tmp_path: Path, change: dict) -> None:
    export = write_export(tmp_path / "export")
    reasons = reusable_plan_mismatches(export, dataclasses.replace(WANTED, **change))
    (field,) = change
    assert len(reasons) == 1 and reasons[0].startswith(field), reasons


def test_plan_mismatches_never_trusts_an_unknown_gpu_even_if_both_sides_say_so() -> None:
    unknown = dataclasses.replace(WANTED, gpu="unknown")
    sidecar = {
        "tensorrt_version": "10.5.0.18",
        "gpu": "unknown",
        "precision": "fp16",
        "max_batch_size": 8,
        "checkpoint_sha256": WANTED.checkpoint_sha256,
        "onnx_sha256": "x",
    }
    assert [r.split(":")[0] for r in plan_mismatches(sidecar, {"top_k": 256}, "x", unknown)] == ["gpu"]


def test_plan_mismatches_tells_random_weights_apart_by_name() -> None:
    tiny = dataclasses.replace(WANTED, checkpoint="random:tiny", checkpoint_sha256="random")
    sidecar = {
        "tensorrt_version": "10.5.0.18",
        "gpu": "NVIDIA L4",
        "precision": "fp16",
        "max_batch_size": 8,
        "checkpoint": "random:small",
        "checkpoint_sha256": "random",
        "onnx_sha256": "x",
    }
    assert [r.split(":")[0] for r in plan_mismatches(sidecar, {"top_k": 256}, "x", tiny)] == ["checkpoint"]


def test_plan_mismatches_tells_the_ema_and_source_weights_of_one_checkpoint_apart(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export")
    sidecar = json.loads((export / "model.plan.json").read_text())
    (export / "model.plan.json").write_text(json.dumps({**sidecar, "checkpoint_weights": "source"}))
    source = dataclasses.replace(WANTED, checkpoint_weights="source")
    assert reusable_plan_mismatches(export, source) == []
    (reason,) = reusable_plan_mismatches(export, WANTED)
    assert reason == "checkpoint_weights: plan has 'source', wanted 'ema'"


def test_plan_mismatches_detects_a_plan_built_from_another_export(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export")
    (export / "model.onnx").write_bytes(b"re-exported graph")
    assert [r.split(" ")[0] for r in reusable_plan_mismatches(export, WANTED)] == ["onnx_sha256"]


def test_reusable_plan_mismatches_lists_missing_files(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export")
    (export / "model.plan").unlink()
    (reason,) = reusable_plan_mismatches(export, WANTED)
    assert "model.plan" in reason and "metadata.json" not in reason


def test_main_asks_for_a_build_where_tensorrt_or_the_gpu_is_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rtmo.build.reuse")
    here = dataclasses.replace(WANTED, checkpoint="random:tiny", checkpoint_sha256="random")
    export = write_export(tmp_path / "export", here)
    code = main(["--export-dir", str(export), "--checkpoint", "random:tiny"])
    if gpu_name() == "unknown":  # this machine: no CUDA driver, so nothing may be reused
        assert code == 1 and "gpu: plan has 'NVIDIA L4', wanted 'unknown'" in caplog.text
    else:
        assert code == 1 and "building a new plan" in caplog.text


def test_main_returns_2_for_an_unknown_checkpoint_name(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["--export-dir", str(tmp_path), "--checkpoint", "rtmo-q_nowhere"]) == 2
    assert "not a zoo name" in caplog.text


def test_gpu_name_is_a_name_or_unknown() -> None:
    name = gpu_name()
    assert isinstance(name, str) and name.strip() == name and name
