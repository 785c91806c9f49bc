"""Integration: ``rtmo serve``, the README's first command, as a user runs it.

It exports and assembles, starts tritonserver, prints where it listens and an example request that works as
printed; Ctrl-C stops it with nothing left behind; a second start reuses the cached export.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rtmo.build.assemble import copy_templates
from rtmo.serving.tritonserver import free_ports
from rtmo_serving import ROOT

pytestmark = pytest.mark.integration

RTMO = Path(sys.executable).parent / "rtmo"
READY_LINE = "Ctrl-C stops the server."


class ServeProcess:
    """``rtmo serve`` in a subprocess, its stdout read line by line in a thread."""

    def __init__(self, work: Path, *args: str, sigint_ignored: bool = False) -> None:
        self.ports = free_ports(3)
        grpc, http, metrics = map(str, self.ports)
        env = {**os.environ, "RTMO_CACHE_DIR": str(work / "cache"), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [
                str(RTMO),
                "serve",
                "--checkpoint",
                "random:tiny",
                "--grpc-port",
                grpc,
                "--http-port",
                http,
                "--metrics-port",
                metrics,
                "--repository",
                str(work / "model_repository"),
                "--log-file",
                str(work / "triton.log"),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            # As a shell without job control starts `rtmo serve &`: SIGINT ignored from the start.
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout_s: float = 240.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                assert self.process.poll() is None, "rtmo serve exited:\n" + "\n".join(self.output)
                continue
            self.output.append(line)
            if text in line:
                return self.output
        raise AssertionError(f"no {text!r} within {timeout_s} s:\n" + "\n".join(self.output))

    def received(self) -> list[str]:
        """Every line printed so far (those :meth:`wait_for` has not read yet included)."""
        while True:
            try:
                self.output.append(self.lines.get_nowait())
            except queue.Empty:
                return self.output

    def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()  # tritonserver follows it (PR_SET_PDEATHSIG), so a failure leaves nothing running
            self.process.wait(timeout=30)
            raise


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if entry.name.isdigit() and text in command and int(entry.name) != os.getpid():
            found.append(command)
    return found


def test_rtmo_serve_prints_a_working_example_stops_cleanly_and_reuses_the_export(tmp_path: Path) -> None:
    copy_templates(ROOT / "model_repository", tmp_path / "model_repository")
    first = ServeProcess(tmp_path)
    try:
        output = first.wait_for(READY_LINE)
        grpc = f"127.0.0.1:{first.ports[0]}"
        assert any(line.strip().startswith("gRPC") and grpc in line for line in output), output
        assert any("exporting random:tiny" in line for line in output)
        # The example, exactly as printed, run from the checkout with the environment's python.
        example = "\n".join(output[output.index("Example request:") + 1 : output.index(READY_LINE)])
        ran = subprocess.run(
            ["bash", "-c", textwrap.dedent(example)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PATH": f"{RTMO.parent}{os.pathsep}{os.environ['PATH']}"},
        )
        assert ran.returncode == 0, ran.stderr
        assert "(1, " in ran.stdout and ", 17, 2)" in ran.stdout, ran.stdout
    finally:
        status = first.stop(signal.SIGINT)
    assert status == 0, "\n".join(first.output)
    assert not processes_mentioning(str(tmp_path / "model_repository")), "tritonserver or a stub outlived Ctrl-C"

    second = ServeProcess(tmp_path, sigint_ignored=True)
    try:
        output = second.wait_for(READY_LINE, timeout_s=120)
        assert any("reusing exported artifacts" in line for line in output), output
        assert not any("exporting" in line for line in output)
    finally:
        status = second.stop(signal.SIGINT)
    assert status == 0
    assert not processes_mentioning(str(tmp_path / "model_repository"))


def test_rtmo_serve_stops_on_sigterm_while_starting(tmp_path: Path) -> None:
    copy_templates(ROOT / "model_repository", tmp_path / "model_repository")
    starting = ServeProcess(tmp_path)
    starting.wait_for("exporting random:tiny")
    assert starting.stop(signal.SIGTERM) == 130  # interrupted before serving: nothing to stop
    assert READY_LINE not in starting.output
    assert not processes_mentioning(str(tmp_path / "model_repository"))
