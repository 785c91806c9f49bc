"""Helpers shared by every test that talks to a real tritonserver serving the rtmo ensembles.

Starting a server costs seconds (the stubs import torch-free NumPy code, ONNX Runtime loads the model), so the
session shares one, built from a calibrated random-weight tiny RTMO; tests that must kill or reconfigure a server
start their own with :func:`serve_model`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from rtmo.build.assemble import assemble_repository, copy_templates
from rtmo.build.export import export_onnx, load_model
from rtmo.serving.cpu import cpu_server
from rtmo.serving.tritonserver import TritonServer, free_ports

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"
CALIBRATED_CHECKPOINT = "random:tiny-calibrated"


def calibrated_model(size: str = "tiny") -> torch.nn.Module:
    """Random weights whose classifier spreads its logits, shifted so tens of anchors (< top_k) pass 0.1."""
    model, _ = load_model(f"random:{size}")
    with torch.no_grad():
        for conv in model.head.head_module.out_cls:
            conv.weight.mul_(20000.0)
            conv.bias.sub_(6.0)
    return model.eval()


def build_cpu_repository(model: torch.nn.Module, work: Path, checkpoint: str = CALIBRATED_CHECKPOINT) -> Path:
    """Export ``model`` and assemble a copy of our model repository for the cpu target under ``work``."""
    export = export_onnx(model, work / "export", provenance={"checkpoint": checkpoint}).onnx_path.parent
    repository = work / "model_repository"
    copy_templates(ROOT / "model_repository", repository)
    assemble_repository(export, target="cpu", repository=repository)
    return repository


@contextlib.contextmanager
def serve_repository(repository: Path, work: Path, **options: object) -> Iterator[TritonServer]:
    """Serve an assembled cpu repository on free ports as ``rtmo serve`` does; ``options`` go to :func:`cpu_server`."""
    grpc_port, http_port, metrics_port = free_ports(3)
    options.setdefault("cache_dir", work / "triton-cache")
    options.setdefault("log_path", work / "tritonserver.log")
    triton = cpu_server(repository, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, **options)
    with triton:
        yield triton


@contextlib.contextmanager
def serve_model(model: torch.nn.Module, work: Path, **options: object) -> Iterator[TritonServer]:
    """Export, assemble and serve ``model`` (see :func:`serve_repository`)."""
    with serve_repository(build_cpu_repository(model, work), work, **options) as triton:
        yield triton
