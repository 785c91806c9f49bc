"""Integration: ``rtmo serve`` heals a killed Python stub of each kind under load, tells the truth meanwhile, and
stops within 10 s on Ctrl-C right after a crash.

One server for the module: each stub kind is killed in turn (``kill -9``, as the OOM killer does) while threads
send requests; every request must succeed with the result it had before or fail with a transient status (only those
sent before the recovery may fail), readiness must be false during the outage and true again within
:data:`RECOVERY_BOUND_S`.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import rtmo_client
from rtmo.build.assemble import copy_templates
from rtmo.serving.supervisor import PythonStub, python_stubs
from rtmo_client.cli import main as rtmo_client_main
from rtmo_serving import PHOTOS, ROOT
from test_serve_command import READY_LINE, ServeProcess, processes_mentioning

pytestmark = pytest.mark.integration

STUB_MODELS = ("preprocess", "engine", "keypoints", "postprocess")
RECOVERY_BOUND_S = 30.0  # the stated bound on this shared 2-core machine (a heal measures 2-4 s, see bench)
TRANSIENT = {"UNAVAILABLE", "INTERNAL", "NOT_FOUND"}  # what a request in the outage may get
REQUEST_TIMEOUT_S = 20.0  # a request still running this long counts as a hang (DEADLINE_EXCEEDED fails the test)
LOAD_THREADS = 3
PAUSE_AFTER_FAILURE_S = 0.05  # as a client would back off; failures are instant and would spin otherwise
PARAMETERS = {"score_threshold": 0.01, "max_people": 20}  # random weights: people only below 0.1


@dataclass(frozen=True)
class Outcome:
    started_s: float
    ended_s: float
    status: str | None  # None: succeeded
    same_result: bool


@dataclass
class Served:
    process: ServeProcess
    repository: Path
    photo: bytes

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.process.ports[0]}"

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.process.ports[1]}/v2/health/ready"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("self-healing")
    copy_templates(ROOT / "model_repository", work / "model_repository")
    process = ServeProcess(work)
    try:
        process.wait_for(READY_LINE)
        yield Served(process, work / "model_repository", sorted(PHOTOS.glob("*.jpg"))[0].read_bytes())
    finally:
        if process.process.poll() is None:
            process.stop(signal.SIGINT)


def stubs_of(repository: Path) -> list[PythonStub]:
    """The stubs serving ``repository`` (other servers on this machine have their own)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1].startswith(str(repository).encode()):
            pids.append(int(entry.name))
    return python_stubs(pids)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def serves(served: Served, reference: rtmo_client.PoseResult) -> bool:
    """Whether a new request, from a new client, gets the reference result now."""
    try:
        with rtmo_client.Client(served.grpc, retries=0, timeout_s=REQUEST_TIMEOUT_S) as client:
            return same(client.estimate(served.photo, **PARAMETERS), reference)
    except rtmo_client.RTMOClientError:
        return False


def same(result: rtmo_client.PoseResult, reference: rtmo_client.PoseResult) -> bool:
    return len(result) == len(reference) and all(
        np.array_equal(a.keypoints, b.keypoints) and a.box == b.box and a.score == b.score
        for a, b in zip(result.people, reference.people, strict=True)
    )


class Load:
    """Threads sending the photo in a bounded loop, and a poller recording readiness every 50 ms."""

    def __init__(self, served: Served, reference: rtmo_client.PoseResult, *, max_requests: int = 2000) -> None:
        self.served, self.reference, self.max_requests = served, reference, max_requests
        self.outcomes: list[Outcome] = []
        self.in_flight: dict[int, float] = {}  # thread id -> when its current request started
        self.readiness: list[tuple[float, bool]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(LOAD_THREADS)]
        self.threads.append(threading.Thread(target=self._poll, daemon=True))
        for thread in self.threads:
            thread.start()

    def _send(self) -> None:
        with rtmo_client.Client(self.served.grpc, retries=0, timeout_s=REQUEST_TIMEOUT_S) as client:
            for _ in range(self.max_requests):
                if self.stop.is_set():
                    return
                started_s = time.monotonic()
                with self.lock:
                    self.in_flight[threading.get_ident()] = started_s
                try:
                    result = client.estimate(self.served.photo, **PARAMETERS)
                    outcome = Outcome(started_s, time.monotonic(), None, same(result, self.reference))
                except rtmo_client.RTMOClientError as error:
                    outcome = Outcome(started_s, time.monotonic(), error.status or type(error).__name__, False)
                with self.lock:
                    self.outcomes.append(outcome)
                    del self.in_flight[threading.get_ident()]
                if outcome.status is not None:
                    time.sleep(PAUSE_AFTER_FAILURE_S)

    def _poll(self) -> None:
        while not self.stop.is_set():
            self.readiness.append((time.monotonic(), ready(self.served.ready_url)))
            time.sleep(0.05)

    def succeeded_since(self, since_s: float) -> bool:
        with self.lock:
            return any(o.status is None and o.started_s > since_s for o in self.outcomes)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)
            assert not thread.is_alive(), "a request hung past its deadline"


def outage_report(served: Served, load: Load, killed_at_s: float) -> str:
    """What a failed recovery leaves to read: readiness changes, request outcomes, the supervisor and Triton logs."""
    changes, last = [], None
    for t, r in list(load.readiness):
        if r != last:
            changes.append(f"{t - killed_at_s:+.2f} s {'ready' if r else 'not ready'}")
            last = r
    with load.lock:
        statuses = [(round(o.ended_s - killed_at_s, 2), o.status) for o in load.outcomes if o.ended_s > killed_at_s]
        in_flight = [round(started_s - killed_at_s, 2) for started_s in load.in_flight.values()]
    serve_log = [line for line in served.process.received() if "stub" in line or "reload" in line or "model" in line]
    triton_log = served.repository.parent / "triton.log"
    triton_tail = triton_log.read_text(errors="replace").splitlines()[-40:] if triton_log.exists() else []
    return "\n".join(
        [
            "readiness (from the kill): " + ", ".join(changes),
            f"requests ended since the kill (s, status): {statuses[:20]} ... {statuses[-20:]}",
            f"requests in flight, started at (s): {in_flight}",
            "rtmo serve:",
            *serve_log[-30:],
            "triton.log:",
            *triton_tail,
        ]
    )


def kill_and_recover(served: Served, model: str, reference: rtmo_client.PoseResult) -> dict[str, float]:
    """Kill one stub of ``model`` under load; assert the outage is truthful and bounded; return its figures."""
    before = {stub.pid for stub in stubs_of(served.repository) if stub.model == model}
    assert before, f"no stub of {model} in {stubs_of(served.repository)}"
    load = Load(served, reference)
    try:
        time.sleep(1.0)
        assert load.succeeded_since(0.0) and all(o.status is None and o.same_result for o in load.outcomes)
        killed_at_s = time.monotonic()
        os.kill(min(before), signal.SIGKILL)
        recovered_at_s = None
        probe: tuple[int, bool] | None = None  # rtmo-client health's exit status in the outage, ready right after
        while time.monotonic() < killed_at_s + RECOVERY_BOUND_S:
            after_kill = [(t, r) for t, r in load.readiness if t > killed_at_s]
            went_down = next((t for t, r in after_kill if not r), None)
            if went_down is not None and probe is None:
                status = rtmo_client_main(["health", "--url", served.grpc, "--cache-s", "0", "--quiet"])
                probe = (status, ready(served.ready_url))
            came_back = next((t for t, r in after_kill if r and went_down is not None and t > went_down), None)
            # Serving again: the load's requests succeed, or (they may still be held by the outage) a new one does.
            if came_back is not None and (load.succeeded_since(came_back) or serves(served, reference)):
                recovered_at_s = came_back
                break
            time.sleep(0.05)
        assert recovered_at_s is not None, (
            f"{model}: not ready and serving again within {RECOVERY_BOUND_S} s\n"
            + outage_report(served, load, killed_at_s)
        )
        time.sleep(1.0)  # requests after the recovery
    finally:
        load.finish()
    for outcome in load.outcomes:
        if outcome.status is None:
            assert outcome.same_result, f"{model}: a request succeeded with a different result"
        else:
            assert outcome.status in TRANSIENT, f"{model}: a request failed with {outcome.status}"
            # A request in flight in the dead stub fails when Triton notices (measured up to ~3 s, possibly after
            # the heal); a request sent after the recovery must not fail.
            assert outcome.ended_s >= killed_at_s and outcome.started_s <= recovered_at_s, (
                f"{model}: a failure outside the outage (killed at {killed_at_s:.2f} s,"
                f" ready at {recovered_at_s:.2f} s, {outcome})"
            )
    after = {stub.pid for stub in stubs_of(served.repository) if stub.model == model}
    assert after and not after & before, f"{model}: its stubs were not replaced ({before} -> {after})"
    assert probe is not None
    if not probe[1]:  # still not ready after the probe: it ran in the outage and must have said so
        assert probe[0] == 1, f"{model}: rtmo-client health passed during the outage"
    assert rtmo_client_main(["health", "--url", served.grpc, "--cache-s", "0"]) == 0
    return {
        "probed_in_outage": float(not probe[1]),
        "recovery_s": recovered_at_s - killed_at_s,
        "failed": sum(o.status is not None for o in load.outcomes),
        "requests": len(load.outcomes),
    }


def test_each_killed_stub_kind_heals_under_load_with_truthful_readiness_and_unchanged_results(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    with rtmo_client.Client(served.grpc, retries=0) as client:
        reference = client.estimate(served.photo, **PARAMETERS)
    assert len(reference) == PARAMETERS["max_people"]  # a result worth comparing
    figures = {model: kill_and_recover(served, model, reference) for model in STUB_MODELS}
    with rtmo_client.Client(served.grpc, retries=0) as client:
        assert same(client.estimate(served.photo, **PARAMETERS), reference)
    assert any(row["probed_in_outage"] for row in figures.values()), "no health probe ran while a model reloaded"
    with capsys.disabled():
        print(f"\nrecovery after kill -9 under {LOAD_THREADS} threads of requests:")
        for model, row in figures.items():
            print(f"  {model:<12} {row['recovery_s']:5.2f} s  {row['failed']:3d} of {row['requests']} requests failed")
        print(f"  median {statistics.median(row['recovery_s'] for row in figures.values()):.2f} s")


def test_ctrl_c_right_after_a_stub_crash_stops_serve_within_10_s(served: Served) -> None:
    engine = next(stub for stub in stubs_of(served.repository) if stub.model == "engine")
    os.kill(engine.pid, signal.SIGKILL)
    time.sleep(0.3)  # the supervisor is reloading the engine now
    started_s = time.monotonic()
    status = served.process.stop(signal.SIGINT)
    assert time.monotonic() - started_s < 10.0
    assert status == 0, "\n".join(served.process.output)
    assert not processes_mentioning(str(served.repository)), "tritonserver or a stub outlived Ctrl-C"


# --- rtmo supervise: the GPU image's entry point, here around the bundled tritonserver ----------------------------


def identity_repository(directory: Path) -> Path:
    model = directory / "identity"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        'name: "identity"\nbackend: "python"\nmax_batch_size: 4\n'
        'input [ { name: "x", data_type: TYPE_FP32, dims: [ 2 ] } ]\n'
        'output [ { name: "y", data_type: TYPE_FP32, dims: [ 2 ] } ]\n'
        "instance_group [ { count: 1, kind: KIND_CPU } ]\n"
    )
    (model / "1" / "model.py").write_text(
        "import triton_python_backend_utils as pb_utils\n\n\nclass TritonPythonModel:\n"
        "    def execute(self, requests):\n"
        "        return [pb_utils.InferenceResponse([pb_utils.Tensor('y', pb_utils.get_input_tensor_by_name(r, 'x')"
        ".as_numpy())]) for r in requests]\n"
    )
    return directory


def test_rtmo_supervise_heals_a_tritonserver_command_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    from rtmo.serving.supervisor import MODEL_CONTROL_ARGS
    from rtmo.serving.tritonserver import EXIT_TIMEOUT_ARGS, TritonServer, free_ports, prepare_tritonserver
    from rtmo.zoo import cache_dir

    repository = identity_repository(tmp_path / "repo")
    grpc, http, metrics = free_ports(3)
    server = TritonServer(
        model_repository=repository,
        grpc_port=grpc,
        http_port=http,
        metrics_port=metrics,
        extra_args=[*MODEL_CONTROL_ARGS, *EXIT_TIMEOUT_ARGS],
        cache_dir=cache_dir() / "tritonserver",
    )
    install = prepare_tritonserver(cache_dir=server.cache_dir)
    ready_url = f"http://127.0.0.1:{http}/v2/health/ready"
    supervise = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rtmo.cli",
            "supervise",
            f"--http-url=http://127.0.0.1:{http}",
            "--",
            *server.build_command(install),
        ],
        env={**os.environ, **server.build_environment(install), "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        cwd=install.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (stubs_of(repository) and ready(ready_url)):
            assert supervise.poll() is None and time.monotonic() < deadline, "supervised server did not start"
            time.sleep(0.2)
        time.sleep(0.5)  # the supervisor takes its first look once the server is ready
        (stub,) = stubs_of(repository)
        os.kill(stub.pid, signal.SIGKILL)
        went_down = False
        while time.monotonic() < deadline:
            went_down = went_down or not ready(ready_url)
            healed = [s for s in stubs_of(repository) if s.pid != stub.pid]
            if went_down and healed and ready(ready_url):
                break
            time.sleep(0.05)
        assert went_down and healed, "the identity model was not reloaded"
        stopped_at = time.monotonic()
        supervise.send_signal(signal.SIGTERM)
        output, _ = supervise.communicate(timeout=15)
        assert time.monotonic() - stopped_at < 10.0
    finally:
        if supervise.poll() is None:
            supervise.kill()
            supervise.wait()
    assert supervise.returncode == 0, output
    assert "model 'identity' reloaded" in output, output
    assert not processes_mentioning(str(repository))
