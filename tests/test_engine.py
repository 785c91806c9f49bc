"""TensorRT engine stage: argument checks run everywhere; real builds only where a GPU and tensorrt exist."""

from __future__ import annotations

import importlib.util
import json

import pytest

from rtmo.build.engine import EngineProfile, build_engine, validate_profile
from rtmo.errors import BuildError

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def test_profile_below_triton_max_batch_size_is_refused():
    with pytest.raises(BuildError, match="max batch 4 is below the Triton max_batch_size 8"):
        validate_profile(EngineProfile(1, 2, 4), max_batch_size=8)
    with pytest.raises(BuildError, match="min <= opt <= max"):
        validate_profile(EngineProfile(2, 1, 8), max_batch_size=8)


def test_bad_profile_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not used")
    with pytest.raises(BuildError, match="below the Triton max_batch_size"):
        build_engine(
            tmp_path / "model.onnx", tmp_path / "out" / "model.plan", profile=EngineProfile(1, 1, 2), max_batch_size=8
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message shown when tensorrt is absent")
def test_without_tensorrt_the_build_stops_with_a_clear_message(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(BuildError, match="needs the `tensorrt` Python package and an NVIDIA GPU"):
        build_engine(tmp_path / "model.onnx", tmp_path / "model.plan")
    assert not (tmp_path / "model.plan").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TENSORRT and _has_cuda()), reason="needs an NVIDIA GPU and the tensorrt package")
def test_fp32_engine_builds_with_dynamic_batch_profile(tmp_path):
    from rtmo.build.export import export_onnx, load_model

    model, provenance = load_model("random:tiny")
    exported = export_onnx(model, tmp_path / "export", provenance=provenance)
    plan = build_engine(
        exported.onnx_path,
        tmp_path / "model.plan",
        precision="fp32",
        profile=EngineProfile(1, 4, 8),
        timing_cache=tmp_path / "timing.cache",
        provenance=provenance,
    )
    sidecar = json.loads(plan.with_suffix(".plan.json").read_text())
    assert plan.stat().st_size > 1_000_000
    assert sidecar["profile"] == {"min_batch": 1, "opt_batch": 4, "max_batch": 8}
    assert sidecar["checkpoint_sha256"] == "random"
    assert (tmp_path / "timing.cache").stat().st_size > 0
