"""Recovery after ``kill -9`` of each Python stub kind, under load: ``python -m rtmo_bench.self_healing``.

Serves a checkpoint as ``rtmo serve`` does (stub supervisor included), then for each stub kind kills one stub
``--kills`` times while ``--clients`` closed-loop clients send a photo (pausing ``--pause-after-failure-s`` after a
failed request, as a client backing off would). Per kill it measures the recovery time (kill to readiness true
again after it went false, with a request served since), how long readiness was false, and the failed requests.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import rtmo_client
from rtmo.cli import supervise_group
from rtmo.serving.supervisor import python_stubs
from rtmo.serving.tritonserver import http_ok, live_process_group_members
from rtmo_bench.paths import PHOTOS
from rtmo_bench.serving import started_server

STUB_MODELS = ("preprocess", "engine", "keypoints", "postprocess")


@dataclass(frozen=True)
class Kill:
    model: str
    recovery_s: float  # kill -> ready again (after it went false) with a request served since
    not_ready_s: float  # how long readiness read false
    failed: int
    requests: int
    statuses: tuple[str, ...]


def kill_once(
    *, server: Any, model: str, photo: bytes, clients: int, pause_s: float, timeout_s: float, score_threshold: float
) -> Kill | None:
    """Kill one stub of ``model`` under load and wait for the recovery; None if it did not recover in time."""
    ready_url = f"{server.urls.http}/v2/health/ready"
    stop = threading.Event()
    outcomes: list[tuple[float, str | None]] = []  # (started at, failure status or None)
    readiness: list[tuple[float, bool]] = []
    lock = threading.Lock()

    def send() -> None:
        with rtmo_client.Client(server.urls.grpc, retries=0, timeout_s=30.0) as client:
            while not stop.is_set():
                started_s = time.monotonic()
                status = None
                try:
                    client.estimate(photo, score_threshold=score_threshold, max_people=20)
                except rtmo_client.RTMOClientError as error:
                    status = error.status or type(error).__name__
                with lock:
                    outcomes.append((started_s, status))
                if status is not None:
                    time.sleep(pause_s)

    def poll() -> None:
        while not stop.is_set():
            readiness.append((time.monotonic(), http_ok(ready_url, timeout_s=2.0)))
            time.sleep(0.02)

    threads = [threading.Thread(target=send, daemon=True) for _ in range(clients)]
    threads.append(threading.Thread(target=poll, daemon=True))
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    stubs = [stub for stub in python_stubs(live_process_group_members(server.pid)) if stub.model == model]
    killed_at_s = time.monotonic()
    os.kill(stubs[0].pid, signal.SIGKILL)
    recovered_at_s = None
    while recovered_at_s is None and time.monotonic() < killed_at_s + timeout_s:
        time.sleep(0.02)
        after = [(t, r) for t, r in readiness if t > killed_at_s]
        down = next((t for t, r in after if not r), None)
        up = next((t for t, r in after if r and down is not None and t > down), None)
        with lock:
            served = up is not None and any(s is None and t > up for t, s in outcomes)
        if served:
            recovered_at_s = up
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=35)
    if recovered_at_s is None:
        return None
    window = [(t, s) for t, s in outcomes if t >= killed_at_s - 1.0]
    samples = [r for t, r in readiness if killed_at_s < t <= recovered_at_s]
    not_ready_s = (recovered_at_s - killed_at_s) * sum(not r for r in samples) / max(1, len(samples))
    failures = [s for _, s in window if s is not None]
    return Kill(
        model=model,
        recovery_s=recovered_at_s - killed_at_s,
        not_ready_s=not_ready_s,
        failed=len(failures),
        requests=len(window),
        statuses=tuple(sorted(set(failures))),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtmo_bench.self_healing", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="random:tiny")
    parser.add_argument("--kills", type=int, default=3, help="kills per stub kind (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=3, help="closed-loop clients (default: %(default)s)")
    parser.add_argument("--pause-after-failure-s", type=float, default=0.05)
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.01,
        help="random weights find people only below 0.1; without people the keypoints model is not called "
        "(default: %(default)s)",
    )
    parser.add_argument("--recovery-timeout-s", type=float, default=60.0)
    parser.add_argument("--models", nargs="+", default=list(STUB_MODELS), choices=STUB_MODELS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    photo = sorted(PHOTOS.glob("*.jpg"))[0].read_bytes()
    kills: list[Kill] = []
    unrecovered: dict[str, int] = {}
    with started_server(args.checkpoint, threads=1, max_batch_size=8, top_k=256) as (server, _):
        supervisor = supervise_group(server.pid, http_url=server.urls.http)
        try:
            for model in args.models:
                for _ in range(args.kills):
                    kill = kill_once(
                        server=server,
                        model=model,
                        photo=photo,
                        clients=args.clients,
                        pause_s=args.pause_after_failure_s,
                        timeout_s=args.recovery_timeout_s,
                        score_threshold=args.score_threshold,
                    )
                    if kill is None:
                        unrecovered[model] = unrecovered.get(model, 0) + 1
                    else:
                        kills.append(kill)
                    time.sleep(1.0)
        finally:
            supervisor.stop()
    rows = {}
    print(f"kill -9 of one stub under {args.clients} closed-loop clients ({args.checkpoint}, CPU)")
    print(
        f"{'stub':<12} {'kills':>5} {'recovery s (median, max)':>26} {'not ready s':>12} {'failed/kill':>12}  statuses"
    )
    for model in args.models:
        of_model = [kill for kill in kills if kill.model == model]
        if not of_model:
            print(f"{model:<12} {0:>5}  did not recover within {args.recovery_timeout_s} s")
            continue
        recovery = [kill.recovery_s for kill in of_model]
        rows[model] = {
            "kills": len(of_model),
            "unrecovered": unrecovered.get(model, 0),
            "recovery_s_median": round(statistics.median(recovery), 2),
            "recovery_s_max": round(max(recovery), 2),
            "not_ready_s_median": round(statistics.median(kill.not_ready_s for kill in of_model), 2),
            "failed_per_kill_median": statistics.median(kill.failed for kill in of_model),
            "requests_per_kill_median": statistics.median(kill.requests for kill in of_model),
            "statuses": sorted({status for kill in of_model for status in kill.statuses}),
        }
        row = rows[model]
        print(
            f"{model:<12} {len(of_model):>5} {row['recovery_s_median']:>14.2f} {row['recovery_s_max']:>10.2f} "
            f"{row['not_ready_s_median']:>12.2f} {row['failed_per_kill_median']:>12}  {','.join(row['statuses'])}"
        )
    summary = {
        "bench": "self_healing",
        "checkpoint": args.checkpoint,
        "clients": args.clients,
        "pause_after_failure_s": args.pause_after_failure_s,
        "score_threshold": args.score_threshold,
        "stubs": rows,
    }
    print(json.dumps(summary))
    return 1 if unrecovered else 0


if __name__ == "__main__":
    sys.exit(main())
