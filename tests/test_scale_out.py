"""Scale-out on loopback: three CPU servers (as ``rtmo serve`` runs them) behind one SDK client with their list.

What a Kubernetes Deployment with a headless Service gives a client, without a cluster: every server receives its
share of the requests (read from each server's own inference statistics), the results are those of a single
server, and killing one server in the middle of a run loses no request: each one that went to it is answered by
another after a retry. The requests are few and bounded: three servers share two CPU cores here.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

import rtmo_client
from rtmo.serving.cpu import cpu_server
from rtmo.serving.tritonserver import TritonServer, free_ports
from rtmo_client.transport import grpc_transport
from rtmo_contract import IMAGE_MODEL
from rtmo_serving import PHOTOS, ROOT, build_cpu_repository, calibrated_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVERS = 3
NAMES = ("000000196141.jpg", "image29590.jpg")
RETRIES = rtmo_client.RetryPolicy(max_retries=3, initial_backoff_s=0.05, max_backoff_s=0.2)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[TritonServer]]:
    """Three servers of one assembled repository (exported once), started together, then waited for."""
    work = tmp_path_factory.mktemp("scale-out")
    repository = build_cpu_repository(calibrated_model("tiny"), work)
    started = []
    try:
        for index in range(SERVERS):
            grpc_port, http_port, metrics_port = free_ports(3)
            server = cpu_server(
                repository,
                grpc_port=grpc_port,
                http_port=http_port,
                metrics_port=metrics_port,
                cache_dir=work / "triton-cache",
                log_path=work / f"tritonserver-{index}.log",
            )
            server.start()
            started.append(server)
        for server in started:
            server.wait_until_ready(240)
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def reference(servers: list[TritonServer]) -> dict[str, rtmo_client.PoseResult]:
    """Each photo's result from the first server alone."""
    with rtmo_client.Client(servers[0].urls.grpc) as single:
        return {name: single.estimate(PHOTOS / name) for name in NAMES}


def answered(server: TritonServer) -> int:
    """Successful requests of the ``rtmo`` ensemble, from the server's own inference statistics."""
    client = grpcclient.InferenceServerClient(server.urls.grpc)
    try:
        stats = client.get_inference_statistics(model_name=IMAGE_MODEL, as_json=True)
    finally:
        client.close()
    (model,) = stats["model_stats"]
    return int(model["inference_stats"]["success"].get("count", 0))


def shares(servers: list[TritonServer], before: list[int], total: int) -> list[int]:
    """Requests each server answered since ``before``, once they add up to ``total``: Triton counts a request
    just after sending its response, so the last few may show up a moment after the client has them."""
    deadline_s = time.monotonic() + 10
    while True:
        counts = [answered(server) - earlier for server, earlier in zip(servers, before)]
        if sum(counts) >= total or time.monotonic() > deadline_s:
            return counts
        time.sleep(0.05)


def assert_same(result: rtmo_client.PoseResult, expected: rtmo_client.PoseResult) -> None:
    assert result.image_size == expected.image_size and len(result) == len(expected) > 0
    # Another server, maybe another dynamic batch: the same model on the same CPU, up to float rounding.
    np.testing.assert_allclose(
        np.stack([p.keypoints for p in result]), np.stack([p.keypoints for p in expected]), rtol=0, atol=1e-3
    )
    np.testing.assert_allclose([p.score for p in result], [p.score for p in expected], rtol=0, atol=1e-5)


class CountingTransport:
    """A real transport that counts the inference calls that failed."""

    def __init__(self, url: str) -> None:
        self.inner = grpc_transport(url)
        self.failures = 0
        self.lock = threading.Lock()

    def infer(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.inner.infer(*args, **kwargs)
        except Exception:
            with self.lock:
                self.failures += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_every_server_gets_its_share_and_the_results_of_a_single_server(
    servers: list[TritonServer], reference: dict[str, rtmo_client.PoseResult]
) -> None:
    before = [answered(server) for server in servers]
    count = 24
    with rtmo_client.Client([s.urls.grpc for s in servers], retries=RETRIES) as client:
        client.wait_until_ready(60)
        client.model_info()  # the keypoint names; not an inference
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: (NAMES[i % 2], client.estimate(PHOTOS / NAMES[i % 2])), range(count)))
    assert shares(servers, before, count) == [count // SERVERS] * SERVERS  # round-robin: the same share each
    for name, result in results:
        assert_same(result, reference[name])


def test_a_stream_stays_on_one_server(
    servers: list[TritonServer], reference: dict[str, rtmo_client.PoseResult]
) -> None:
    before = [answered(server) for server in servers]
    with rtmo_client.Client([s.urls.grpc for s in servers], retries=RETRIES) as client:
        results = list(client.stream([PHOTOS / NAMES[0]] * 6, max_in_flight=3))
    assert sorted(shares(servers, before, 6)) == [0, 0, 6]
    for result in results:
        assert_same(result, reference[NAMES[0]])


def test_a_dns_target_balances_through_grpc_and_streams_resolve_it(
    servers: list[TritonServer], reference: dict[str, rtmo_client.PoseResult]
) -> None:
    """One server is all loopback DNS can name; this checks the real gRPC ``round_robin`` channel and the stream's
    own resolution work end to end (the spreading itself is tested with several endpoints above)."""
    port = servers[1].urls.grpc.rpartition(":")[2]
    before = [answered(server) for server in servers]
    with rtmo_client.Client(f"dns:///localhost:{port}", retries=RETRIES) as client:
        assert_same(client.estimate(PHOTOS / NAMES[0]), reference[NAMES[0]])
        for result in client.stream([PHOTOS / NAMES[1]] * 3):
            assert_same(result, reference[NAMES[1]])
    assert shares(servers, before, 4) == [0, 4, 0]


def test_locust_users_spread_over_the_hosts_given_with_commas(servers: list[TritonServer], tmp_path: Path) -> None:
    before = [answered(server) for server in servers]
    prefix = tmp_path / "locust"
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "loadtest" / "locustfile.py"),
        "--headless",
        *("-u", "3", "-r", "3", "-t", "6s"),
        *("-H", ",".join(s.urls.grpc for s in servers)),
        *("--csv", str(prefix), "--only-summary", "--photos", str(PHOTOS), "--timeout-s", "20"),
        "RTMOUser",
    ]
    try:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as expired:  # say where it stuck
        output = (expired.stdout or b"") + (expired.stderr or b"")
        pytest.fail(f"locust did not finish within 120 s:\n{output[-3000:]!r}")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    with open(f"{prefix}_stats.csv", newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    assert int(rows["estimate"]["Request Count"]) > 0 and int(rows["Aggregated"]["Failure Count"]) == 0
    assert all(answered(server) > earlier for server, earlier in zip(servers, before))


def test_killing_one_server_mid_run_loses_no_request(
    servers: list[TritonServer], reference: dict[str, rtmo_client.PoseResult]
) -> None:
    """Runs last in this module: it kills the third server."""
    transports = [CountingTransport(s.urls.grpc) for s in servers]
    count, kill_after = 30, 6
    done = threading.Semaphore(0)
    client = rtmo_client.Client([s.urls.grpc for s in servers], transport=transports, retries=RETRIES)
    client.model_info()

    def estimate(i: int) -> tuple[str, rtmo_client.PoseResult]:
        name = NAMES[i % 2]
        try:
            return name, client.estimate(PHOTOS / name)
        finally:
            done.release()

    victim = servers[2]
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(estimate, i) for i in range(count)]
        for _ in range(kill_after):
            assert done.acquire(timeout=120)
        victim.stop(timeout_s=0.0)  # SIGKILL, from the thread that started it: no graceful shutdown
        results = [future.result(timeout=120) for future in futures]  # raises if any request was lost
    client.close()
    assert not victim.is_running()
    assert transports[2].failures >= 1  # requests did go to the dead server, and were answered elsewhere
    assert transports[0].failures == transports[1].failures == 0
    assert len(results) == count
    for name, result in results:
        assert_same(result, reference[name])
