"""Unit: the stub supervisor's logic with fake stubs and a fake model control (no server)."""

from __future__ import annotations

import time

import pytest

from rtmo.serving.supervisor import (
    HttpModelControl,
    ModelControlError,
    PythonStub,
    StubSupervisor,
    parse_stub_command_line,
)


class FakeServer:
    """Stubs that can be killed, and a model control that gives a reloaded model new stub pids."""

    def __init__(self, models: dict[str, int]) -> None:
        self.next_pid = 100
        self.stubs: list[PythonStub] = []
        self.calls: list[tuple[str, str]] = []
        self.refuse_loads = 0
        self.instances = models
        for model, count in models.items():
            self._spawn(model, count)

    def _spawn(self, model: str, count: int) -> None:
        for index in range(count):
            self.stubs.append(PythonStub(pid=self.next_pid, model=model, instance=f"{model}_{index}_0"))
            self.next_pid += 1

    def kill(self, instance: str) -> None:
        self.stubs = [stub for stub in self.stubs if stub.instance != instance]

    def list_stubs(self) -> list[PythonStub]:
        return list(self.stubs)

    def unload(self, model: str) -> None:
        self.calls.append(("unload", model))
        self.stubs = [stub for stub in self.stubs if stub.model != model]

    def load(self, model: str) -> None:
        self.calls.append(("load", model))
        if self.refuse_loads:
            self.refuse_loads -= 1
            raise ModelControlError(f"load of {model} refused")
        self._spawn(model, self.instances[model])


def supervisor_for(server: FakeServer) -> StubSupervisor:
    supervisor = StubSupervisor(list_stubs=server.list_stubs, control=server)
    supervisor._known = {stub.pid: stub for stub in server.list_stubs()}  # the first look, as start() takes it
    return supervisor


def test_a_dead_stub_gets_its_model_unloaded_then_loaded_once_and_nothing_else_is_touched() -> None:
    server = FakeServer({"preprocess": 2, "engine": 1, "postprocess": 1})
    supervisor = supervisor_for(server)
    assert supervisor.poll() == [] and server.calls == []
    server.kill("preprocess_1_0")
    (heal,) = supervisor.poll()
    assert server.calls == [("unload", "preprocess"), ("load", "preprocess")]
    assert heal.model == "preprocess" and heal.instances == ("preprocess_1_0",) and heal.duration_s >= 0
    # The reloaded model's new stubs are the baseline now: no second reload.
    assert supervisor.poll() == [] and len(server.calls) == 2


def test_two_models_dead_at_once_are_both_healed() -> None:
    server = FakeServer({"engine": 1, "keypoints": 1, "postprocess": 1})
    supervisor = supervisor_for(server)
    server.kill("engine_0_0")
    server.kill("keypoints_0_0")
    assert sorted(heal.model for heal in supervisor.poll()) == ["engine", "keypoints"]
    assert ("unload", "postprocess") not in server.calls


def test_a_stub_dying_while_another_model_heals_is_healed_at_the_next_poll() -> None:
    server = FakeServer({"engine": 1, "postprocess": 1})
    supervisor = supervisor_for(server)
    server.kill("engine_0_0")
    original_load = server.load

    def load_while_postprocess_dies(model: str) -> None:
        original_load(model)
        server.kill("postprocess_0_0")

    server.load = load_while_postprocess_dies  # type: ignore[method-assign]
    assert [heal.model for heal in supervisor.poll()] == ["engine"]
    server.load = original_load  # type: ignore[method-assign]
    assert [heal.model for heal in supervisor.poll()] == ["postprocess"]


def test_a_refused_load_is_tried_again_with_a_doubling_pause_until_it_succeeds() -> None:
    server = FakeServer({"engine": 1, "postprocess": 1})
    now = [0.0]
    supervisor = StubSupervisor(
        list_stubs=server.list_stubs,
        control=server,
        poll_interval_s=0.25,
        max_retry_interval_s=1.0,
        clock=lambda: now[0],
    )
    supervisor._known = {stub.pid: stub for stub in server.list_stubs()}
    server.kill("engine_0_0")
    server.refuse_loads = 3
    loads_at = []
    for _ in range(20):  # 5 s of polls every 0.25 s (exact in binary)
        before = server.calls.count(("load", "engine"))
        heals = supervisor.poll()
        if server.calls.count(("load", "engine")) > before:
            loads_at.append(now[0])
        if heals:
            break
        now[0] += 0.25
    assert loads_at == [0.0, 0.5, 1.5, 2.5]  # pauses 0.5, then capped at 1.0
    assert [heal.model for heal in supervisor.heals] == ["engine"]
    assert sorted(stub.model for stub in server.stubs) == ["engine", "postprocess"]
    assert ("load", "postprocess") not in server.calls


def test_the_thread_heals_in_the_background_and_its_death_is_visible() -> None:
    server = FakeServer({"engine": 1})
    supervisor = StubSupervisor(list_stubs=server.list_stubs, control=server, poll_interval_s=0.01)
    supervisor.start()
    try:
        server.kill("engine_0_0")
        deadline = time.monotonic() + 5
        while not supervisor.heals and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [heal.model for heal in supervisor.heals] == ["engine"]
        assert supervisor.is_alive()

        def broken() -> list[PythonStub]:
            raise PermissionError("/proc is gone")

        supervisor.list_stubs = broken
        deadline = time.monotonic() + 5
        while supervisor.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not supervisor.is_alive() and isinstance(supervisor.failure, PermissionError)
    finally:
        supervisor.stop()


def test_stub_command_lines_name_the_model_and_instance_and_other_processes_are_ignored() -> None:
    argv = [
        b"/cache/backends/python/triton_python_backend_stub",
        b"/srv/model_repository/postprocess/1/model.py",
        b"triton_python_backend_shm_region_1",
        b"16777216",
        b"1048576",
        b"4242",
        b"/cache/backends/python",
        b"",
        b"postprocess_0_1",
        b"DEFAULT",
    ]
    assert parse_stub_command_line(7, argv) == PythonStub(pid=7, model="postprocess", instance="postprocess_0_1")
    assert parse_stub_command_line(8, [b"/usr/bin/tritonserver", b"--model-repository=/m"]) is None
    assert parse_stub_command_line(9, [b""]) is None


def test_options_are_validated_with_the_field_and_value_named() -> None:
    with pytest.raises(ValueError, match="poll_interval_s=0"):
        StubSupervisor(list_stubs=list, control=FakeServer({}), poll_interval_s=0)
    with pytest.raises(ValueError, match="max_retry_interval_s=0.1"):
        StubSupervisor(list_stubs=list, control=FakeServer({}), poll_interval_s=0.2, max_retry_interval_s=0.1)
    with pytest.raises(ValueError, match="http_url='localhost:8000'"):
        HttpModelControl("localhost:8000")


def test_http_model_control_reports_an_unreachable_server_as_a_model_control_error() -> None:
    from rtmo.serving.tritonserver import free_ports

    (port,) = free_ports(1)
    with pytest.raises(ModelControlError, match="unload of model 'engine': no answer"):
        HttpModelControl(f"http://127.0.0.1:{port}", load_timeout_s=2).unload("engine")


class DeadSupervisor:
    failure = RuntimeError("bug")
    stopped = False

    def is_alive(self) -> bool:
        return False

    def stop(self) -> None:
        self.stopped = True


def test_serve_goes_down_when_the_supervisor_dies_or_the_server_exits() -> None:
    from rtmo.cli import watch

    dead = DeadSupervisor()
    assert watch(dead, server_running=lambda: True, log_tail=str) == 1  # type: ignore[arg-type]
    assert dead.stopped
    alive = StubSupervisor(list_stubs=list, control=FakeServer({}), poll_interval_s=0.01)
    alive.start()
    assert watch(alive, server_running=lambda: False, log_tail=str) == 1
    time.sleep(0.05)
    assert not alive.is_alive()  # watch stopped it on the way out


def test_rtmo_supervise_refuses_a_command_without_explicit_model_control(caplog: pytest.LogCaptureFixture) -> None:
    from rtmo.cli import main

    assert main(["supervise", "--", "tritonserver", "--model-repository=/m"]) == 2
    assert "lacks --model-control-mode=explicit --load-model=*" in caplog.text
    assert main(["supervise"]) == 2
    assert "no server command" in caplog.text
