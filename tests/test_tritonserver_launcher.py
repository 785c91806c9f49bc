"""Integration tests: rtmo.serving.tritonserver runs the tritonserver bundled in nvidia-pytriton on CPU."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from rtmo.serving.tritonserver import (
    TritonServer,
    TritonServerError,
    free_ports,
    live_process_group_members,
    locate_bundled_tritonserver,
    prepare_tritonserver,
)

grpcclient = pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc]")

LOGGER = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 120.0

ADD_MODEL_PY = """
import json

import numpy as np
import numpy.typing as npt
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        increment = config.get("parameters", {}).get("increment", {}).get("string_value", "1")
        self.increment = np.float32(increment)

    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            batch = values.shape[0]
            params = np.array([[request.parameters().encode()]] * batch, dtype=np.object_)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("OUTPUT", (values + self.increment).astype(np.float32)),
                        pb_utils.Tensor("PARAMS", params),
                    ]
                )
            )
        return responses
"""

BROKEN_MODEL_PY = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("toy model refuses to load: BROKEN-MODEL-MARKER")

    def execute(self, requests):
        return []
"""


def add_config(*, increment: int) -> str:
    """Config of the toy Python model that adds ``increment`` to a FP32 input."""
    return textwrap.dedent(
        f"""
        name: "add"
        backend: "python"
        max_batch_size: 4
        dynamic_batching {{ }}
        input [ {{ name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] }} ]
        output [
          {{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] }},
          {{ name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] }}
        ]
        instance_group [ {{ count: 1 kind: KIND_CPU }} ]
        parameters {{ key: "increment" value {{ string_value: "{increment}" }} }}
        """
    )


ENSEMBLE_CONFIG = """
name: "add_ensemble"
platform: "ensemble"
max_batch_size: 4
input [ { name: "ENSEMBLE_INPUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [
  { name: "ENSEMBLE_OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "ENSEMBLE_PARAMS" data_type: TYPE_STRING dims: [ 1 ] }
]
ensemble_scheduling {
  step [
    {
      model_name: "add"
      model_version: -1
      input_map { key: "INPUT" value: "ENSEMBLE_INPUT" }
      output_map [
        { key: "OUTPUT" value: "ENSEMBLE_OUTPUT" },
        { key: "PARAMS" value: "ENSEMBLE_PARAMS" }
      ]
    }
  ]
}
"""


def write_toy_repository(root: Path, *, broken: bool = False) -> Path:
    """Write a Python model ``add`` (with a ``configs/cpu.pbtxt`` adding 10 instead of 1) and an ensemble."""
    add_dir = root / "add"
    (add_dir / "1").mkdir(parents=True)
    (add_dir / "configs").mkdir()
    (add_dir / "1" / "model.py").write_text(BROKEN_MODEL_PY if broken else ADD_MODEL_PY)
    (add_dir / "config.pbtxt").write_text(add_config(increment=1))
    (add_dir / "configs" / "cpu.pbtxt").write_text(add_config(increment=10))
    ensemble_dir = root / "add_ensemble"
    (ensemble_dir / "1").mkdir(parents=True)
    (ensemble_dir / "config.pbtxt").write_text(ENSEMBLE_CONFIG)
    return root


@pytest.fixture(scope="session")
def triton_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the bundled server for the whole session."""
    return tmp_path_factory.mktemp("triton-cache")


def make_server(repository: Path, cache_dir: Path, **options: object) -> TritonServer:
    """A server on free ports, logging into the repository's parent directory unless told otherwise."""
    grpc_port, http_port, metrics_port = free_ports(3)
    options.setdefault("log_path", repository.parent / "tritonserver.log")
    return TritonServer(
        model_repository=repository,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        startup_timeout_s=STARTUP_TIMEOUT_S,
        cache_dir=cache_dir,
        **options,  # type: ignore[arg-type]
    )


@contextlib.contextmanager
def log_attached(server: TritonServer) -> Iterator[TritonServer]:
    """Add the server log's tail to any exception raised inside the block, so failures show it."""
    try:
        yield server
    except BaseException as error:
        error.add_note(f"tritonserver log ({server.log_file}):\n{server.log_tail()}")
        raise


@pytest.fixture
def running_server(tmp_path: Path, triton_cache_dir: Path) -> Iterator[TritonServer]:
    """The toy repository served with default configs (a failed start already reports the log tail)."""
    with make_server(write_toy_repository(tmp_path / "repository"), triton_cache_dir) as server:
        yield server


def infer(
    url: str, model: str, values: npt.NDArray[np.float32], parameters: dict[str, object] | None = None
) -> dict[str, npt.NDArray[np.generic]]:
    """Send one request over gRPC and return every output."""
    prefix = "ENSEMBLE_" if model == "add_ensemble" else ""
    with grpcclient.InferenceServerClient(url) as client:
        tensor = grpcclient.InferInput(f"{prefix}INPUT", list(values.shape), "FP32")
        tensor.set_data_from_numpy(values)
        result = client.infer(model, [tensor], parameters=parameters, client_timeout=30.0)
        return {name: result.as_numpy(f"{prefix}{name}") for name in ("OUTPUT", "PARAMS")}


@pytest.mark.integration
def test_prepare_tritonserver_copies_once_with_matching_stub_when_called_twice(tmp_path: Path) -> None:
    first = prepare_tritonserver(cache_dir=tmp_path)
    marker = first.root / "marker"
    marker.write_text("kept")
    second = prepare_tritonserver(cache_dir=tmp_path)

    assert second == first
    assert marker.exists(), "the second call must reuse the first copy"
    assert first.bin_path.is_file()
    assert (first.backends_dir / "python" / "triton_python_backend_stub").is_file()
    assert (first.library_path).is_dir()
    assert [p.name for p in tmp_path.iterdir()] == [first.root.name], "no staging directory may be left behind"
    assert locate_bundled_tritonserver() != first.root


def test_tritonserver_builds_explicit_environment_and_bind_arguments(tmp_path: Path, triton_cache_dir: Path) -> None:
    server = TritonServer(
        model_repository=tmp_path,
        host="0.0.0.0",
        model_config_name="cpu",
        python_shm_default_byte_size=4 * 1024 * 1024,
        extra_args=["--log-verbose=1"],
        cache_dir=triton_cache_dir,
    )
    install = prepare_tritonserver(cache_dir=triton_cache_dir)

    command = server.build_command(install)
    environment = server.build_environment(install)

    for flag in ("--grpc-address=0.0.0.0", "--http-address=0.0.0.0", "--metrics-address=0.0.0.0"):
        assert flag in command
    assert "--model-config-name=cpu" in command
    assert "--backend-config=python,shm-default-byte-size=4194304" in command
    assert command[-1] == "--log-verbose=1"
    assert set(environment) == {"PATH", "LD_LIBRARY_PATH", "HOME"}
    assert environment["LD_LIBRARY_PATH"] == str(install.library_path)
    assert server.urls.grpc == f"127.0.0.1:{server.grpc_port}"


def test_tritonserver_rejects_duplicate_ports(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ports must differ"):
        TritonServer(model_repository=tmp_path, grpc_port=9000, http_port=9000, cache_dir=tmp_path)


def test_locate_bundled_tritonserver_says_pip_install_when_pytriton_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    with pytest.raises(TritonServerError, match="pip install nvidia-pytriton"):
        locate_bundled_tritonserver()


@pytest.mark.integration
def test_tritonserver_serves_python_model_and_ensemble_over_grpc(running_server: TritonServer) -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3)

    with log_attached(running_server):
        direct = infer(running_server.urls.grpc, "add", values)
        through_ensemble = infer(running_server.urls.grpc, "add_ensemble", values)

    np.testing.assert_array_equal(direct["OUTPUT"], values + 1)
    np.testing.assert_array_equal(through_ensemble["OUTPUT"], values + 1)


@pytest.mark.integration
def test_tritonserver_ensemble_passes_request_parameters_to_composing_model(running_server: TritonServer) -> None:
    values = np.zeros((1, 2), dtype=np.float32)

    with log_attached(running_server):
        outputs = infer(running_server.urls.grpc, "add_ensemble", values, parameters={"score_threshold": 0.3})

    received = json.loads(outputs["PARAMS"][0, 0])
    assert received == {"score_threshold": 0.3}


@pytest.mark.integration
def test_tritonserver_reads_configs_cpu_pbtxt_when_model_config_name_is_set(
    tmp_path: Path, triton_cache_dir: Path
) -> None:
    repository = write_toy_repository(tmp_path / "repository")
    values = np.ones((1, 4), dtype=np.float32)

    with make_server(repository, triton_cache_dir, model_config_name="cpu") as server, log_attached(server):
        outputs = infer(server.urls.grpc, "add_ensemble", values)

    np.testing.assert_array_equal(outputs["OUTPUT"], values + 10)


@pytest.mark.integration
@pytest.mark.parametrize("stop_timeout_s", [30.0, 0.0], ids=["graceful", "forced"])
def test_tritonserver_stop_leaves_no_server_or_stub_process(
    tmp_path: Path, triton_cache_dir: Path, stop_timeout_s: float
) -> None:
    server = make_server(
        write_toy_repository(tmp_path / "repository"),
        triton_cache_dir,
        log_path=None,
        python_shm_default_byte_size=2 * 1024 * 1024,
    )
    server.start()
    try:
        with log_attached(server):
            server.wait_until_ready(STARTUP_TIMEOUT_S)
            process_group = server.pid
            assert process_group is not None
            members = live_process_group_members(process_group)
            stubs = [pid for pid in members if "triton_python_backend_stub" in _command_line(pid)]
            assert process_group in members
            assert stubs, f"expected a Python backend stub in group {process_group}, found {members}"
            stub_argv = _command_line(stubs[0]).split()
            assert stub_argv[3] == "2097152", "python_shm_default_byte_size must reach the stub"
            shm_region = Path("/dev/shm") / stub_argv[2]
            assert shm_region.exists()
            assert set(_environment(process_group)) == {"PATH", "LD_LIBRARY_PATH", "HOME"}
            temporary_log = server.log_file
    finally:
        server.stop(timeout_s=stop_timeout_s)

    assert not server.is_running()
    assert live_process_group_members(process_group) == []
    assert all(not Path(f"/proc/{pid}").exists() or _is_zombie(pid) for pid in stubs)
    assert temporary_log is not None and not temporary_log.exists(), "the temporary log must be removed"
    assert not shm_region.exists(), "the stub's shared memory region must not outlive the server"


@pytest.mark.integration
def test_tritonserver_dies_with_the_process_that_started_it(tmp_path: Path, triton_cache_dir: Path) -> None:
    repository = write_toy_repository(tmp_path / "repository")
    grpc_port, http_port, metrics_port = free_ports(3)
    launcher = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from rtmo.serving.tritonserver import TritonServer
        server = TritonServer(model_repository=Path({str(repository)!r}), grpc_port={grpc_port},
                              http_port={http_port}, metrics_port={metrics_port},
                              log_path=Path({str(tmp_path / "tritonserver.log")!r}),
                              cache_dir=Path({str(triton_cache_dir)!r}))
        server.start()
        server.wait_until_ready({STARTUP_TIMEOUT_S})
        print(server.pid, flush=True)
        time.sleep(600)
        """
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    parent = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, env=environment, text=True)
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert live_process_group_members(server_pid), "tritonserver should be running"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

    deadline_s = time.monotonic() + 15.0
    while live_process_group_members(server_pid) and time.monotonic() < deadline_s:
        time.sleep(0.1)
    assert live_process_group_members(server_pid) == [], "PR_SET_PDEATHSIG must take tritonserver and its stubs down"


@pytest.mark.integration
def test_tritonserver_wait_until_ready_raises_at_deadline_when_not_ready_yet(
    tmp_path: Path, triton_cache_dir: Path
) -> None:
    server = make_server(write_toy_repository(tmp_path / "repository"), triton_cache_dir)
    server.start()
    try:
        with pytest.raises(TritonServerError, match="was not ready .* within 0.0 s"):
            server.wait_until_ready(timeout_s=0.001)
    finally:
        server.stop()


@pytest.mark.integration
def test_tritonserver_wait_until_ready_fails_fast_with_log_tail_when_model_is_broken(
    tmp_path: Path, triton_cache_dir: Path
) -> None:
    server = make_server(write_toy_repository(tmp_path / "repository", broken=True), triton_cache_dir)
    server.start()
    began_s = time.monotonic()
    try:
        with pytest.raises(TritonServerError, match="BROKEN-MODEL-MARKER") as raised:
            server.wait_until_ready(timeout_s=STARTUP_TIMEOUT_S)
        elapsed_s = time.monotonic() - began_s
    finally:
        server.stop()

    assert "exited with code" in str(raised.value)
    assert elapsed_s < STARTUP_TIMEOUT_S / 4, f"failure took {elapsed_s:.1f} s; it must not wait for the deadline"


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _environment(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode(errors="replace").split("=", 1) for entry in entries if b"=" in entry)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"
