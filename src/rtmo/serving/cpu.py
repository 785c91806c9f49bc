"""Starting the CPU-target server as ``rtmo serve`` does: the cached export of a checkpoint, and a ``TritonServer``
with the settings the CPU repository needs. The benchmark and the tests start servers through these too."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rtmo
import rtmo_contract
from rtmo.checkpoint_weights import DEFAULT_CHECKPOINT_WEIGHTS, CheckpointWeights
from rtmo.errors import CheckpointUnavailableError
from rtmo.serving.supervisor import MODEL_CONTROL_ARGS
from rtmo.serving.tritonserver import EXIT_TIMEOUT_ARGS, TritonServer
from rtmo.zoo import cache_dir, checkpoint_sha256, resolve_checkpoint

__all__ = ["DEFAULT_CHECKPOINT", "PreparedModel", "artifact_dir", "cpu_server", "package_roots", "prepare_artifacts"]

LOGGER = logging.getLogger("rtmo")
DEFAULT_CHECKPOINT = "rtmo-s_body7"
RANDOM_FALLBACK = "random:small"


def package_roots() -> list[str]:
    """The directories ``rtmo`` and ``rtmo_contract`` are imported from, for the Python models' ``sys.path``."""
    return sorted({str(Path(package.__file__).resolve().parents[1]) for package in (rtmo, rtmo_contract)})


@dataclass(frozen=True)
class PreparedModel:
    export_dir: Path
    checkpoint: str
    sha256: str


def artifact_dir(
    checkpoint: str,
    sha256: str,
    *,
    top_k: int,
    checkpoint_weights: CheckpointWeights = DEFAULT_CHECKPOINT_WEIGHTS,
) -> Path:
    """Where :func:`prepare_artifacts` keeps a checkpoint's export: keyed by its hash (its name for random weights)
    and, for the non-default ``checkpoint_weights``, that choice."""
    key = checkpoint.replace(":", "-") if checkpoint.startswith("random:") else sha256
    weights = "" if checkpoint_weights == DEFAULT_CHECKPOINT_WEIGHTS or checkpoint.startswith("random:") else "-source"
    return cache_dir() / "artifacts" / f"{key[:16]}{weights}-k{top_k}"


def cpu_server(repository: Path, *, grpc_port: int, http_port: int, metrics_port: int, **options: Any) -> TritonServer:
    """A tritonserver for a repository assembled for the cpu target, set up as ``rtmo serve`` runs it.

    ``options`` go to :class:`~rtmo.serving.tritonserver.TritonServer` and override these settings: the ``cpu``
    configs, the bundled server copied under the rtmo cache, our packages importable by the Python models (from
    wherever they are installed: a source checkout's ``src`` included),
    and 16 MiB of Python-backend shared memory per instance. Models are under explicit model control (so
    :class:`~rtmo.serving.supervisor.StubSupervisor` can reload one) and the exit timeout is short; an
    ``extra_args`` option is appended to those flags.
    """
    extra_args = (*MODEL_CONTROL_ARGS, *EXIT_TIMEOUT_ARGS, *options.pop("extra_args", ()))
    settings: dict[str, Any] = {
        "extra_args": extra_args,
        "model_config_name": "cpu",
        "cache_dir": cache_dir() / "tritonserver",
        "extra_env": {"PYTHONPATH": os.pathsep.join(package_roots())},
        "python_shm_default_byte_size": 16 * 1024 * 1024,
        **options,
    }
    return TritonServer(
        model_repository=repository, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, **settings
    )


def prepare_artifacts(
    checkpoint: str,
    *,
    top_k: int,
    allow_random_fallback: bool,
    checkpoint_weights: CheckpointWeights = DEFAULT_CHECKPOINT_WEIGHTS,
) -> PreparedModel:
    """Export ``checkpoint`` (its ``checkpoint_weights``) once per (hash, weights, top_k) into the cache; later runs
    reuse it without loading torch."""
    if checkpoint.startswith("random:"):
        sha = checkpoint.replace(":", "-")
    else:
        try:
            sha = checkpoint_sha256(resolve_checkpoint(checkpoint))
        except CheckpointUnavailableError as error:
            if not allow_random_fallback:
                raise
            LOGGER.warning("!" * 78)
            LOGGER.warning("could not get %s: %s", checkpoint, error)
            LOGGER.warning("SERVING SEEDED RANDOM WEIGHTS: the pipeline runs, but poses are meaningless.")
            LOGGER.warning("model metadata says checkpoint_sha256='random'. Pass --checkpoint PATH to fix.")
            LOGGER.warning("!" * 78)
            checkpoint, sha = RANDOM_FALLBACK, RANDOM_FALLBACK.replace(":", "-")
    export_dir = artifact_dir(checkpoint, sha, top_k=top_k, checkpoint_weights=checkpoint_weights)
    if (export_dir / "metadata.json").is_file() and (export_dir / "model.onnx").is_file():
        LOGGER.info("reusing exported artifacts in %s (checkpoint_weights=%s)", export_dir, checkpoint_weights)
        return PreparedModel(export_dir, checkpoint, sha)
    from rtmo.build.export import export_onnx, load_model  # torch: only when there is something to export

    LOGGER.info("exporting %s to ONNX (once per checkpoint)", checkpoint)
    model, provenance = load_model(checkpoint, checkpoint_weights=checkpoint_weights)
    export_onnx(model, export_dir, top_k=top_k, provenance=provenance)
    return PreparedModel(export_dir, checkpoint, sha)
