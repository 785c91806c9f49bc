"""``rtmo`` console script: ``rtmo serve`` starts the CPU Triton server on the RTMO ensemble; ``rtmo supervise``
runs any tritonserver command (the GPU image's) with the same self-healing of crashed Python stubs; ``rtmo train``
fine-tunes RTMO on a COCO-format keypoint dataset (``rtmo.train``)."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rtmo.build.assemble import add_instance_options, assemble_repository, instance_counts
from rtmo.checkpoint_weights import add_checkpoint_weights_option
from rtmo.errors import RTMOError
from rtmo.serving.cpu import DEFAULT_CHECKPOINT, cpu_server, prepare_artifacts
from rtmo.serving.supervisor import MODEL_CONTROL_ARGS, HttpModelControl, StubSupervisor, python_stubs
from rtmo.serving.tritonserver import (
    STOP_GRACE_S,
    die_with_parent_preexec,
    http_ok,
    live_process_group_members,
    stop_process_group,
)

LOGGER = logging.getLogger("rtmo")


def serve(args: argparse.Namespace) -> int:
    # Ctrl-C and SIGTERM interrupt wherever we are, startup included. SIGINT is set explicitly: a shell that starts
    # `rtmo serve &` without job control hands it over ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    prepared = prepare_artifacts(
        args.checkpoint,
        top_k=args.top_k,
        allow_random_fallback=args.checkpoint == DEFAULT_CHECKPOINT,
        checkpoint_weights=args.checkpoint_weights,
    )
    repository = args.repository.resolve()
    if not (repository / "rtmo" / "config.pbtxt").is_file():
        raise RTMOError(
            f"--repository {args.repository}: no rtmo model repository there (rtmo/config.pbtxt missing); "
            "run rtmo serve from the project's checkout or pass --repository PATH"
        )
    assemble_repository(
        prepared.export_dir,
        target="cpu",
        repository=repository,
        max_batch_size=args.max_batch_size,
        instances=instance_counts(args),
    )
    server = cpu_server(
        repository,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        host=args.host,
        log_path=args.log_file,
        startup_timeout_s=args.startup_timeout_s,
    )
    try:
        server.start()
        seconds = server.wait_until_ready(args.startup_timeout_s)
        urls = server.urls
        supervisor = supervise_group(server.pid, http_url=urls.http)
        print(f"RTMO ready in {seconds:.1f}s — checkpoint {prepared.checkpoint} (sha256 {prepared.sha256[:16]})")
        print(f"  gRPC    {urls.grpc}   (ensemble 'rtmo': encoded images; 'rtmo_frames': raw uint8 frames)")
        print(f"  HTTP    {urls.http}")
        print(f"  metrics {urls.metrics}")
        print(f"  log     {server.log_file}")
        print("Example request:")
        print(_EXAMPLE.format(grpc=urls.grpc))
        print("Ctrl-C stops the server.")
        sys.stdout.flush()
        return watch(supervisor, server_running=server.is_running, log_tail=server.log_tail)
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping tritonserver…")
        server.stop(timeout_s=STOP_GRACE_S)


def supervise_group(process_group: int | None, *, http_url: str) -> StubSupervisor:
    """Start a :class:`StubSupervisor` on the Python stubs of tritonserver's process group (the server is ready)."""
    if process_group is None:
        raise RTMOError("tritonserver is not running: nothing to supervise")
    supervisor = StubSupervisor(
        list_stubs=lambda: python_stubs(live_process_group_members(process_group)),
        control=HttpModelControl(http_url),
    )
    supervisor.start()
    return supervisor


def watch(supervisor: StubSupervisor, *, server_running: Callable[[], bool], log_tail: Callable[[], str]) -> int:
    """Block while the server and its supervisor run; 1 as soon as either is gone (the caller stops the server).

    A dead supervisor takes the server down with it: a server that no longer heals must not go on looking healthy.
    """
    try:
        while True:
            time.sleep(0.2)
            if not server_running():
                LOGGER.error("tritonserver exited; last log lines:\n%s", log_tail())
                return 1
            if not supervisor.is_alive():
                LOGGER.error("the stub supervisor died (%r); stopping tritonserver", supervisor.failure)
                return 1
    finally:
        supervisor.stop()


def supervise(args: argparse.Namespace) -> int:
    """``rtmo supervise -- tritonserver ...``: run the command, heal its crashed stubs, stop it on SIGINT/SIGTERM."""
    command = args.server_command[1:] if args.server_command[:1] == ["--"] else args.server_command
    if not command:
        raise RTMOError("rtmo supervise: no server command; give it after --, e.g. rtmo supervise -- tritonserver ...")
    if not _explicit_model_control(command):
        raise RTMOError(
            f"rtmo supervise: {' '.join(command)!r} lacks {' '.join(MODEL_CONTROL_ARGS)}; the supervisor reloads "
            "models through Triton's model control API, which only explicit mode accepts"
        )
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    LOGGER.info("starting %s", " ".join(command))
    try:
        process = subprocess.Popen(  # noqa: S603 - the operator's own command line
            command,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: the stubs are found, and stopped, with it
            preexec_fn=die_with_parent_preexec(),  # noqa: PLW1509 - only prctl and getppid run in the child
        )
    except OSError as error:
        raise RTMOError(f"rtmo supervise: cannot start {command[0]!r}: {error}") from error
    http_url = args.http_url.rstrip("/")
    try:
        deadline_s = time.monotonic() + args.startup_timeout_s
        while not http_ok(f"{http_url}/v2/health/ready", timeout_s=1.0):
            if process.poll() is not None:
                LOGGER.error("%s exited with code %d before becoming ready", command[0], process.returncode)
                return 1
            if time.monotonic() > deadline_s:
                LOGGER.error("%s was not ready at %s within %.0f s", command[0], http_url, args.startup_timeout_s)
                return 1
            time.sleep(0.5)
        LOGGER.info("%s ready; supervising its Python stubs", command[0])
        supervisor = supervise_group(process.pid, http_url=http_url)
        return watch(supervisor, server_running=lambda: process.poll() is None, log_tail=lambda: "(see above)")
    except KeyboardInterrupt:
        return 0
    finally:
        stop_process_group(process, timeout_s=STOP_GRACE_S)


def _explicit_model_control(command: list[str]) -> bool:
    """Whether a tritonserver command line sets ``--model-control-mode=explicit`` (either spelling)."""
    pairs = zip(command, [*command[1:], ""], strict=True)
    return any(
        arg == MODEL_CONTROL_ARGS[0] or (arg, value) == tuple(MODEL_CONTROL_ARGS[0].split("=")) for arg, value in pairs
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


_EXAMPLE = """\
  python - <<'PY'
  import numpy as np, tritonclient.grpc as g
  c = g.InferenceServerClient("{grpc}")
  data = np.array([[open("data/photos/000000196141.jpg", "rb").read()]], dtype=object)
  i = g.InferInput("image", [1, 1], "BYTES"); i.set_data_from_numpy(data)
  r = c.infer("rtmo", [i], parameters={{"score_threshold": 0.3}})
  print(r.as_numpy("num_people"), r.as_numpy("keypoints").shape)
  PY"""


def train(args: argparse.Namespace) -> int:
    from rtmo.train.trainer import TrainOptions
    from rtmo.train.trainer import train as run_training

    try:
        options = TrainOptions(
            annotations=args.annotations,
            images=args.images,
            out_dir=args.out,
            source=args.source,
            epochs=args.epochs,
            batch_size=args.batch_size,
            val_annotations=args.val_annotations,
            val_images=args.val_images,
            val_interval=args.val_interval,
            keypoint_spec=args.keypoint_spec,
            lr=args.lr,
            auto_scale_lr=args.auto_scale_lr,
            device=args.device,
            seed=args.seed,
            resume=not args.no_resume,
            max_iters=args.max_iters,
            checkpoint_interval=args.checkpoint_interval,
            input_size=args.input_size,
            rtmo_switch_epoch=args.rtmo_switch_epoch,
            rtmo_mode_switch=not args.no_rtmo_switch,
            strong_augmentation=not args.no_strong_augmentation,
            random_resize=not args.no_random_resize,
        )
        summary = run_training(options)
    except ValueError as error:  # an option out of range (TrainOptions, RecipeSchedule name the field)
        raise RTMOError(str(error)) from error
    print(
        f"best {summary['best']} (validation AP {summary['best_ap']:.4f})"
        if summary["best_ap"] >= 0
        else f"best {summary['best']} (no validation AP: the latest EMA weights)"
    )
    print(f"serve it: rtmo serve --checkpoint {summary['best']}")
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune RTMO on a COCO-format keypoint dataset, as MMPose trains it")
    p.add_argument("--annotations", type=Path, required=True, help="COCO keypoint JSON of the training images")
    p.add_argument("--images", type=Path, required=True, help="folder of the training images")
    p.add_argument("--val-annotations", type=Path, default=None, help="COCO keypoint JSON for validation AP")
    p.add_argument("--val-images", type=Path, default=None)
    p.add_argument("--val-interval", type=int, default=10, help="validate every N epochs (default: %(default)s)")
    p.add_argument(
        "--keypoint-spec",
        type=Path,
        default=None,
        help="JSON with 'sigmas' and 'flip_pairs' (needed unless 17 COCO keypoints)",
    )
    p.add_argument(
        "--from",
        dest="source",
        default="random:tiny",
        help="zoo name, checkpoint path or random:<size> to start from (default: %(default)s)",
    )
    p.add_argument(
        "--epochs", type=int, default=600, help="the recipe's schedule is scaled to it (default: %(default)s)"
    )
    p.add_argument(
        "--rtmo-switch-epoch",
        type=int,
        default=None,
        help="epoch (1-based, as printed at start) from which RTMOModeSwitchHook's proxy target and loss weights "
        "apply, the schedule's bump moving with it (default: the recipe's 281 of 600, MMPose's hook key 280, scaled to "
        "--epochs)",
    )
    p.add_argument(
        "--no-rtmo-switch",
        action="store_true",
        help="never apply RTMOModeSwitchHook (stage-1 targets and loss weights throughout; the lr schedule unchanged), "
        "as an MMPose config without that hook",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.004, help="base learning rate (default: %(default)s, MMPose's)")
    p.add_argument(
        "--auto-scale-lr",
        action="store_true",
        help="scale --lr by batch size / 256, the recipe's batch (MMPose's tools/train.py --auto-scale-lr)",
    )
    p.add_argument("--out", type=Path, required=True, help="receives last.pth and best.pth")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ... (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --out holds a last.pth")
    p.add_argument("--max-iters", type=int, default=None, help="stop after this many iterations (smoke runs)")
    p.add_argument(
        "--checkpoint-interval", type=int, default=10, help="epochs between last.pth writes (default: %(default)s)"
    )
    p.add_argument("--input-size", type=int, default=None, help="training input side (default: the model's)")
    p.add_argument(
        "--no-strong-augmentation",
        action="store_true",
        help="no Mosaic, random affine or MixUp in any epoch (the recipe's last-stage pipeline throughout)",
    )
    p.add_argument(
        "--no-random-resize", action="store_true", help="every batch at --input-size (no BatchSyncRandomResize)"
    )
    p.set_defaults(func=train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtmo", description="RTMO pose estimation on Triton")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="start a CPU Triton server on the rtmo ensemble")
    p.add_argument(
        "--checkpoint", default=DEFAULT_CHECKPOINT, help="path, zoo name, URL or random:<size> (default: %(default)s)"
    )
    add_checkpoint_weights_option(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument(
        "--repository",
        type=Path,
        default=Path("model_repository"),
        help="the model repository to assemble and serve (default: %(default)s, of the current directory)",
    )
    p.add_argument("--max-batch-size", type=int, default=8)
    add_instance_options(p)
    p.add_argument("--top-k", type=int, default=256, help="candidates per image kept by the engine")
    p.add_argument("--log-file", type=Path, default=None)
    p.add_argument("--startup-timeout-s", type=float, default=180.0)
    p.set_defaults(func=serve)
    s = sub.add_parser(
        "supervise",
        help="run a tritonserver command and reload the model of any Python stub that dies",
        description="Run COMMAND (a tritonserver started with --model-control-mode=explicit --load-model=*) in its "
        "own process group, and when one of its Python backend stubs dies, unload and load that model so readiness "
        "is false during the outage and the model heals. Exits non-zero when the server or the supervisor dies.",
    )
    s.add_argument(
        "--http-url", default="http://127.0.0.1:8000", help="the server's HTTP endpoint (default: %(default)s)"
    )
    s.add_argument("--startup-timeout-s", type=float, default=600.0, help="readiness deadline (default: %(default)s)")
    s.add_argument("server_command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    s.set_defaults(func=supervise)
    add_train_parser(sub)
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
