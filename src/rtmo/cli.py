"""``rtmo`` console script: ``rtmo serve`` starts the CPU Triton server on the RTMO ensemble."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtmo.errors import CheckpointUnavailableError, RTMOError

if TYPE_CHECKING:
    from rtmo.serving.tritonserver import TritonServer

LOGGER = logging.getLogger("rtmo")
DEFAULT_CHECKPOINT = "rtmo-s_body7"
RANDOM_FALLBACK = "random:small"


@dataclass(frozen=True)
class PreparedModel:
    export_dir: Path
    checkpoint: str
    sha256: str


def _source_root() -> Path:
    return Path(__file__).resolve().parents[2]


def artifact_dir(checkpoint: str, sha256: str, *, top_k: int) -> Path:
    """Where :func:`prepare_artifacts` keeps a checkpoint's export: keyed by its hash (its name for random weights)."""
    from rtmo.checkpoint import cache_dir

    key = checkpoint.replace(":", "-") if checkpoint.startswith("random:") else sha256
    return cache_dir() / "artifacts" / f"{key[:16]}-k{top_k}"


def cpu_server(repository: Path, *, grpc_port: int, http_port: int, metrics_port: int, **options: Any) -> TritonServer:
    """A tritonserver for a repository assembled for the cpu target, set up as ``rtmo serve`` runs it.

    ``options`` go to :class:`~rtmo.serving.tritonserver.TritonServer` and override these settings: the ``cpu``
    configs, the bundled server copied under the rtmo cache, this checkout's ``src`` importable by the Python models,
    and 16 MiB of Python-backend shared memory per instance.
    """
    from rtmo.checkpoint import cache_dir
    from rtmo.serving.tritonserver import TritonServer

    settings: dict[str, Any] = {
        "model_config_name": "cpu",
        "cache_dir": cache_dir() / "tritonserver",
        "extra_env": {"PYTHONPATH": str(_source_root() / "src")},
        "python_shm_default_byte_size": 16 * 1024 * 1024,
        **options,
    }
    return TritonServer(model_repository=repository, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, **settings)


def prepare_artifacts(checkpoint: str, *, top_k: int, allow_random_fallback: bool) -> PreparedModel:
    """Export ``checkpoint`` once per (hash, top_k) into the cache; later runs reuse it without loading torch."""
    from rtmo.checkpoint import checkpoint_sha256, resolve_checkpoint

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
    export_dir = artifact_dir(checkpoint, sha, top_k=top_k)
    if (export_dir / "metadata.json").is_file() and (export_dir / "model.onnx").is_file():
        LOGGER.info("reusing exported artifacts in %s", export_dir)
        return PreparedModel(export_dir, checkpoint, sha)
    from rtmo.build.export import export_onnx, load_model

    LOGGER.info("exporting %s to ONNX (once per checkpoint)", checkpoint)
    model, provenance = load_model(checkpoint)
    export_onnx(model, export_dir, top_k=top_k, provenance=provenance)
    return PreparedModel(export_dir, checkpoint, sha)


def serve(args: argparse.Namespace) -> int:
    from rtmo.build.assemble import assemble_repository

    # Ctrl-C and SIGTERM interrupt wherever we are, startup included. SIGINT is set explicitly: a shell that starts
    # `rtmo serve &` without job control hands it over ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    prepared = prepare_artifacts(args.checkpoint, top_k=args.top_k, allow_random_fallback=args.checkpoint == DEFAULT_CHECKPOINT)
    repository = args.repository.resolve()
    assemble_repository(prepared.export_dir, target="cpu", repository=repository, max_batch_size=args.max_batch_size)
    server = cpu_server(repository, grpc_port=args.grpc_port, http_port=args.http_port, metrics_port=args.metrics_port,
                        host=args.host, log_path=args.log_file, startup_timeout_s=args.startup_timeout_s)
    try:
        server.start()
        seconds = server.wait_until_ready(args.startup_timeout_s)
        urls = server.urls
        print(f"RTMO ready in {seconds:.1f}s — checkpoint {prepared.checkpoint} (sha256 {prepared.sha256[:16]})")
        print(f"  gRPC    {urls.grpc}   (ensemble 'rtmo': encoded images; 'rtmo_frames': raw uint8 frames)")
        print(f"  HTTP    {urls.http}")
        print(f"  metrics {urls.metrics}")
        print(f"  log     {server.log_file}")
        print("Example request:")
        print(_EXAMPLE.format(grpc=urls.grpc))
        print("Ctrl-C stops the server.")
        sys.stdout.flush()
        while True:
            time.sleep(0.5)
            if not server.is_running():
                LOGGER.error("tritonserver exited; last log lines:\n%s", server.log_tail())
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping tritonserver…")
        server.stop()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


_EXAMPLE = """\
  python - <<'PY'
  import numpy as np, tritonclient.grpc as g
  c = g.InferenceServerClient("{grpc}")
  data = np.array([[open("tests/data/photos/000000196141.jpg", "rb").read()]], dtype=object)
  i = g.InferInput("image", [1, 1], "BYTES"); i.set_data_from_numpy(data)
  r = c.infer("rtmo", [i], parameters={{"score_threshold": 0.3}})
  print(r.as_numpy("num_people"), r.as_numpy("keypoints").shape)
  PY"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtmo", description="RTMO pose estimation on Triton")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="start a CPU Triton server on the rtmo ensemble")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="path, zoo name, URL or random:<size> (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--repository", type=Path, default=_source_root() / "model_repository")
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--top-k", type=int, default=256, help="candidates per image kept by the engine")
    p.add_argument("--log-file", type=Path, default=None)
    p.add_argument("--startup-timeout-s", type=float, default=180.0)
    p.set_defaults(func=serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RTMOError as error:
        LOGGER.error("%s", error)
        return 2
    except KeyboardInterrupt:  # before the server started (e.g. during the export): nothing to stop
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
