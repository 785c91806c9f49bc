"""Run a real Triton Inference Server from the ``nvidia-pytriton`` wheel, without Docker.

The ``nvidia-pytriton`` wheel bundles a ``tritonserver`` binary (Triton 2.51 in pytriton 0.7.0) with the Python
backend, and one Python backend stub per Python minor version. :func:`prepare_tritonserver` copies that bundle
once into a writable cache directory and installs the stub that matches the running interpreter;
:class:`TritonServer` starts the binary on our own model repository the way pytriton does: a subprocess in its
own process group with an explicit environment and ``PR_SET_PDEATHSIG``, readiness polled against a deadline,
the captured log attached to every failure, and a stop by SIGINT, then SIGKILL of the whole process group.

Example:
    >>> grpc, http, metrics = free_ports(3)
    >>> with TritonServer(model_repository=repo, grpc_port=grpc, http_port=http, metrics_port=metrics,
    ...                   cache_dir=cache) as server:
    ...     client = tritonclient.grpc.InferenceServerClient(server.urls.grpc)

Linux only: ``prctl``, ``/proc`` and process groups are used.

Exceptions:
    TritonServerError (RuntimeError): the bundle is missing or unusable, or the server failed to start or
        become ready. To be re-parented under the package's exception base once it exists.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

LOGGER = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_STUB_NAME = "triton_python_backend_stub"
_SHM_REGION_PATTERN = re.compile(r"triton_python_backend_shm_region_[0-9A-Za-z_-]+")
_LIBS_DIR_NAME = "nvidia_pytriton.libs"
_READY_POLL_INTERVAL_S = 0.1
# A stop is SIGINT, then SIGKILL after STOP_GRACE_S: tritonserver gets EXIT_TIMEOUT_ARGS' seconds to finish the
# requests in flight (its default, 30 s, is what a stop waited after a stub crash), so a stop takes < 10 s.
STOP_GRACE_S = 5.0
EXIT_TIMEOUT_ARGS = ("--exit-timeout-secs=3",)
_LOG_TAIL_BYTES = 16 * 1024
_LOG_TAIL_LINES = 60


class TritonServerError(RuntimeError):
    """The bundled Triton server is missing or unusable, or it failed to start or become ready."""


@dataclass(frozen=True)
class TritonInstall:
    """A runnable copy of the bundled Triton server.

    Attributes:
        root: The copied ``tritonserver`` directory.
        bin_path: The ``tritonserver`` executable.
        backends_dir: Directory to pass as ``--backend-directory``; holds ``python/`` with the stub installed.
        caches_dir: Directory to pass as ``--cache-directory``.
        library_path: Directory of the wheel's shared libraries, for ``LD_LIBRARY_PATH``.
    """

    root: Path
    bin_path: Path
    backends_dir: Path
    caches_dir: Path
    library_path: Path


@dataclass(frozen=True)
class TritonUrls:
    """Where a running server answers.

    Attributes:
        grpc: ``host:port``, the form ``tritonclient.grpc`` and ``perf_analyzer -u`` expect.
        http: ``http://host:port``.
        metrics: ``http://host:port/metrics`` (Prometheus text).
    """

    grpc: str
    http: str
    metrics: str


def locate_bundled_tritonserver() -> Path:
    """Find the ``tritonserver`` directory shipped inside the ``nvidia-pytriton`` wheel.

    The package is looked up on the running interpreter's import path without importing it.

    Returns:
        The ``pytriton/tritonserver`` directory (holding ``bin/``, ``backends/``, ``python_backend_stubs/``).

    Raises:
        TritonServerError: If ``nvidia-pytriton`` is not installed, or its bundle lacks the server binary.
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonServerError(
            f"nvidia-pytriton is not installed in this environment ({sys.prefix}); it bundles the tritonserver "
            "binary. Install it with: pip install nvidia-pytriton"
        )
    server_dir = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (server_dir / "bin" / "tritonserver").is_file():
        raise TritonServerError(
            f"{server_dir / 'bin' / 'tritonserver'} does not exist: this nvidia-pytriton install carries no "
            "tritonserver binary. Reinstall it with: pip install --force-reinstall nvidia-pytriton"
        )
    return server_dir


def prepare_tritonserver(*, cache_dir: Path) -> TritonInstall:
    """Copy the bundled server into ``cache_dir`` once, with the Python backend stub of this interpreter.

    The copy is keyed by the pytriton version and the interpreter's ``3.<minor>``, made in a temporary directory
    inside ``cache_dir`` and renamed into place, so a partial copy is never used and concurrent callers agree.

    Args:
        cache_dir: Writable directory for the copy; created when missing.

    Returns:
        The paths needed to run the copy.

    Raises:
        TritonServerError: If the bundle is missing, or has no stub for this interpreter's Python version.
    """
    source = locate_bundled_tritonserver()
    library_path = source.parent.parent / _LIBS_DIR_NAME
    if not library_path.is_dir():
        raise TritonServerError(
            f"{library_path} does not exist: the nvidia-pytriton wheel's shared libraries are missing. "
            "Reinstall it with: pip install --force-reinstall nvidia-pytriton"
        )
    python_tag = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / python_tag / _STUB_NAME
    if not stub.is_file():
        available = sorted(p.parent.name for p in (source / "python_backend_stubs").glob(f"*/{_STUB_NAME}"))
        raise TritonServerError(
            f"nvidia-pytriton ships no Python backend stub for Python {python_tag} (it has: {available}); "
            "run with one of those Python versions"
        )
    try:
        pytriton_version = importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        pytriton_version = "unknown"

    cache_dir = Path(cache_dir)
    target = cache_dir / f"tritonserver-{pytriton_version}-py{python_tag}"
    if not (target / "bin" / "tritonserver").is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_dir))
        try:
            copy_root = staging / "tritonserver"
            shutil.copytree(
                source, copy_root, symlinks=True, ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__")
            )
            shutil.copy2(stub, copy_root / "backends" / "python" / _STUB_NAME)
            try:
                copy_root.rename(target)
                LOGGER.info("Copied tritonserver %s from %s to %s", pytriton_version, source, target)
            except OSError:
                if not (target / "bin" / "tritonserver").is_file():
                    raise
                LOGGER.debug("%s was prepared concurrently; using that copy", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return TritonInstall(
        root=target,
        bin_path=target / "bin" / "tritonserver",
        backends_dir=target / "backends",
        caches_dir=target / "caches",
        library_path=library_path,
    )


def free_ports(count: int) -> list[int]:
    """Return ``count`` different TCP ports on 127.0.0.1 that were free a moment ago (another process may take them).

    The sockets are bound all at once, so the ports differ; one at a time, the system may hand out a port twice.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


class TritonServer:
    """A ``tritonserver`` subprocess serving one model repository; a context manager.

    The server runs in its own process group (so its Python backend stubs can be stopped with it), with an
    environment made only of ``PATH`` (this environment's scripts directory first: the Python backend stub runs
    the first ``python3`` on ``PATH`` and imports that environment's packages), ``LD_LIBRARY_PATH`` (the wheel's
    libraries), ``HOME`` and ``extra_env``. It gets SIGKILL if the thread that started it dies
    (``PR_SET_PDEATHSIG``; start it from a thread that outlives it). Its stdout and stderr go to ``log_path``, or
    to a temporary file that :meth:`stop` removes unless the server failed to become ready. Readiness is read from
    the HTTP endpoint, so HTTP must stay enabled.

    Entering the context starts the server and waits up to ``startup_timeout_s`` for readiness; leaving it
    stops the server.
    """

    def __init__(
        self,
        *,
        model_repository: Path,
        grpc_port: int = 8001,
        http_port: int = 8000,
        metrics_port: int = 8002,
        host: str = "127.0.0.1",
        model_config_name: str | None = None,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        python_shm_default_byte_size: int | None = None,
        extra_env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 120.0,
        cache_dir: Path,
    ) -> None:
        """Describe the server; nothing starts until :meth:`start` or ``with``.

        Args:
            model_repository: The model repository directory (``--model-repository``).
            grpc_port: gRPC port.
            http_port: HTTP port; also used to poll readiness.
            metrics_port: Prometheus metrics port.
            host: Address all three endpoints bind to (``--grpc-address``, ``--http-address``,
                ``--metrics-address``).
            model_config_name: When set, each model's ``configs/<name>.pbtxt`` is read instead of its
                ``config.pbtxt`` (``--model-config-name``).
            extra_args: Further ``tritonserver`` arguments, appended last.
            log_path: File receiving the server's stdout and stderr (overwritten at each start).
            python_shm_default_byte_size: Shared memory the Python backend gives each model instance at first
                (``--backend-config=python,shm-default-byte-size=...``; Triton's default is 1 MiB).
            extra_env: Variables added to the server's environment (e.g. ``CUDA_VISIBLE_DEVICES``).
            startup_timeout_s: Readiness deadline used when entering the context.
            cache_dir: Where :func:`prepare_tritonserver` keeps its copy of the server.

        Raises:
            ValueError: If a port is out of range or used twice, or a size or timeout is not positive.
        """
        ports = {"grpc_port": grpc_port, "http_port": http_port, "metrics_port": metrics_port}
        for name, port in ports.items():
            if not 0 < port < 65536:
                raise ValueError(f"{name}={port} is not a TCP port; give 1..65535")
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"ports must differ, got {ports}")
        if python_shm_default_byte_size is not None and python_shm_default_byte_size <= 0:
            raise ValueError(f"python_shm_default_byte_size={python_shm_default_byte_size} must be positive")
        if startup_timeout_s <= 0:
            raise ValueError(f"startup_timeout_s={startup_timeout_s} must be positive")
        self.model_repository = Path(model_repository)
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.host = host
        self.model_config_name = model_config_name
        self.extra_args = tuple(extra_args)
        self.log_path = Path(log_path) if log_path is not None else None
        self.python_shm_default_byte_size = python_shm_default_byte_size
        self.extra_env = dict(extra_env or {})
        self.startup_timeout_s = startup_timeout_s
        self.cache_dir = Path(cache_dir)
        self._process: subprocess.Popen[bytes] | None = None
        self._active_log_path: Path | None = None
        self._owns_log = False
        self._started_at_s: float | None = None
        self._stopped = False
        self._keep_log = False

    # -- properties ---------------------------------------------------------------------------------------------

    @property
    def urls(self) -> TritonUrls:
        """Client-side addresses of the three endpoints (a wildcard bind address maps to loopback)."""
        client_host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in client_host and not client_host.startswith("["):
            client_host = f"[{client_host}]"
        return TritonUrls(
            grpc=f"{client_host}:{self.grpc_port}",
            http=f"http://{client_host}:{self.http_port}",
            metrics=f"http://{client_host}:{self.metrics_port}/metrics",
        )

    @property
    def pid(self) -> int | None:
        """Process id of ``tritonserver`` (also its process group id), or None before :meth:`start`."""
        return self._process.pid if self._process is not None else None

    @property
    def log_file(self) -> Path | None:
        """The file the running (or last) server writes its log to, or None before :meth:`start`."""
        return self._active_log_path

    def is_running(self) -> bool:
        """Return whether the ``tritonserver`` process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def build_command(self, install: TritonInstall) -> list[str]:
        """Return the ``tritonserver`` command line for ``install``.

        Args:
            install: The prepared server copy.

        Returns:
            The argument vector, executable first.
        """
        command = [
            str(install.bin_path),
            f"--model-repository={self.model_repository.resolve()}",
            f"--backend-directory={install.backends_dir}",
            f"--cache-directory={install.caches_dir}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
        ]
        if self.model_config_name is not None:
            command.append(f"--model-config-name={self.model_config_name}")
        if self.python_shm_default_byte_size is not None:
            command.append(f"--backend-config=python,shm-default-byte-size={self.python_shm_default_byte_size}")
        command.extend(self.extra_args)
        return command

    def build_environment(self, install: TritonInstall) -> dict[str, str]:
        """Return the complete environment for the server process; nothing else is inherited.

        Args:
            install: The prepared server copy.

        Returns:
            ``PATH`` (this environment's scripts directory first), ``LD_LIBRARY_PATH``, ``HOME``, then
            ``extra_env``.
        """
        scripts_dir = sysconfig.get_path("scripts")
        inherited_path = os.environ.get("PATH", os.defpath)
        environment = {
            "PATH": os.pathsep.join([scripts_dir, inherited_path]),
            "LD_LIBRARY_PATH": str(install.library_path),
            "HOME": os.environ.get("HOME", str(Path.home())),
        }
        environment.update(self.extra_env)
        return environment

    def start(self) -> None:
        """Start ``tritonserver``; returns without waiting for readiness (see :meth:`wait_until_ready`).

        Raises:
            TritonServerError: If the server is already running, the repository is missing, or the bundle is
                unusable.
        """
        if self.is_running():
            raise TritonServerError(f"tritonserver is already running (pid {self.pid})")
        if not self.model_repository.is_dir():
            raise TritonServerError(f"model repository {self.model_repository} is not a directory")
        install = prepare_tritonserver(cache_dir=self.cache_dir)
        scripts_dir = Path(sysconfig.get_path("scripts"))
        if not (scripts_dir / "python3").exists():
            LOGGER.warning("%s has no python3: the Python backend stub will run another interpreter", scripts_dir)

        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._active_log_path, self._owns_log = self.log_path, False
        else:
            handle, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(handle)
            self._active_log_path, self._owns_log = Path(name), True

        command = self.build_command(install)
        LOGGER.info("Starting %s", " ".join(command))
        with self._active_log_path.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed executable, arguments built above
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.build_environment(install),
                cwd=str(install.root),
                start_new_session=True,  # own process group: stop() kills the stubs with the server
                preexec_fn=die_with_parent_preexec(),  # noqa: PLW1509 - only prctl and getppid run in the child
                close_fds=True,
            )
        self._started_at_s = time.monotonic()
        self._stopped = False
        self._keep_log = False
        LOGGER.info("tritonserver pid %d, log %s", self._process.pid, self._active_log_path)

    def wait_until_ready(self, timeout_s: float = 120.0) -> float:
        """Poll ``GET /v2/health/ready`` until it answers 200.

        Args:
            timeout_s: Deadline, counted from this call.

        Returns:
            Seconds from :meth:`start` to readiness.

        Raises:
            TritonServerError: If the server was not started, exits before becoming ready (raised at once), or is
                not ready by the deadline; the message ends with the tail of the server log.
        """
        if self._process is None or self._started_at_s is None:
            raise TritonServerError("tritonserver was not started; call start() first")
        url = f"{self.urls.http}/v2/health/ready"
        deadline_s = time.monotonic() + timeout_s
        while True:
            exit_code = self._process.poll()
            if exit_code is not None:
                self._keep_log = True
                raise TritonServerError(
                    f"tritonserver exited with code {exit_code} before becoming ready; "
                    f"log {self._active_log_path}:\n{self.log_tail()}"
                )
            remaining_s = deadline_s - time.monotonic()
            if remaining_s <= 0:
                self._keep_log = True
                raise TritonServerError(
                    f"tritonserver (pid {self._process.pid}) was not ready at {url} within {timeout_s:.1f} s; "
                    f"log {self._active_log_path}:\n{self.log_tail()}"
                )
            if http_ok(url, timeout_s=min(1.0, remaining_s)):
                ready_after_s = time.monotonic() - self._started_at_s
                LOGGER.info("tritonserver ready at %s after %.2f s", self.urls.http, ready_after_s)
                return ready_after_s
            time.sleep(min(_READY_POLL_INTERVAL_S, max(0.0, deadline_s - time.monotonic())))

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Stop the server: SIGINT, wait up to ``timeout_s``, then SIGKILL its whole process group.

        The process group is killed even after a clean exit, so no ``triton_python_backend_stub`` outlives the
        server, and the ``/dev/shm`` regions of stubs killed that way are removed. Safe to call more than once.

        Args:
            timeout_s: Grace period for a clean shutdown after SIGINT.

        Returns:
            The server's exit code, or None if it was never started.
        """
        process = self._process
        if process is None:
            return None
        if self._stopped:
            return process.returncode
        exit_code = stop_process_group(process, timeout_s=timeout_s)
        self._stopped = True
        LOGGER.info("tritonserver pid %d exited with code %d", process.pid, exit_code)
        if self._owns_log and self._active_log_path is not None:
            if self._keep_log:
                LOGGER.info("Keeping the log of the failed tritonserver: %s", self._active_log_path)
            else:
                self._active_log_path.unlink(missing_ok=True)
                self._active_log_path = None
        return exit_code

    def log_tail(self, max_lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last lines of the server log.

        Args:
            max_lines: How many lines at most.

        Returns:
            The tail, or an empty string if there is no log yet.
        """
        if self._active_log_path is None or not self._active_log_path.exists():
            return ""
        with self._active_log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - _LOG_TAIL_BYTES))
            text = log.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-max_lines:])

    def __enter__(self) -> TritonServer:
        """Start the server and wait for readiness; stop it again if it does not become ready."""
        self.start()
        try:
            self.wait_until_ready(self.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()


def stop_process_group(process: subprocess.Popen[bytes], *, timeout_s: float) -> int:
    """Stop a server started with ``start_new_session``: SIGINT, up to ``timeout_s`` of grace, then SIGKILL its group.

    The group is killed even after a clean exit, so no ``triton_python_backend_stub`` outlives the server, and the
    ``/dev/shm`` regions of stubs killed that way are removed.

    Returns:
        The server's exit code.
    """
    process_group = process.pid  # start_new_session: the group id is the leader's pid
    if process.returncode is None:
        # Wait without reaping: while the leader is an unreaped zombie its pid, and so the group id, cannot be
        # reused by an unrelated process before the SIGKILL below.
        LOGGER.info("Stopping tritonserver pid %d (SIGINT)", process.pid)
        _signal_quietly(lambda: os.kill(process.pid, signal.SIGINT))
        if not _wait_exited_unreaped(process.pid, timeout_s=timeout_s):
            LOGGER.warning("tritonserver pid %d ignored SIGINT for %.1f s; killing it", process.pid, timeout_s)
    # Stubs still alive now are about to be killed before they can unlink their shared memory regions.
    orphan_regions = _python_backend_shm_regions(live_process_group_members(process_group))
    _signal_quietly(lambda: os.killpg(process_group, signal.SIGKILL))  # the stubs too
    exit_code = process.wait()
    leftovers = _wait_for_empty_process_group(process_group, timeout_s=5.0)
    if leftovers:
        LOGGER.warning("Processes %s of tritonserver's group %d survived SIGKILL", leftovers, process_group)
    for region in orphan_regions:
        if region.exists():
            LOGGER.debug("Removing orphaned Python backend shared memory region %s", region)
            region.unlink(missing_ok=True)
    return exit_code


def die_with_parent_preexec() -> Callable[[], None]:
    """Return a ``preexec_fn`` that makes the child get SIGKILL when the parent thread dies.

    ``prctl`` is resolved here, in the parent, so the forked child calls no ``dlopen``. The child kills itself if
    the parent died before ``prctl`` took effect.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent_pid = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}")
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def http_ok(url: str, *, timeout_s: float) -> bool:
    """Return whether ``GET url`` answers 200 within ``timeout_s``; connection errors count as no."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - http URL built by us
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait_exited_unreaped(pid: int, *, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for child ``pid`` to exit, leaving it unreaped; return whether it exited."""
    deadline_s = time.monotonic() + timeout_s
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # already reaped
            return True
        if time.monotonic() >= deadline_s:
            return False
        time.sleep(0.05)


def _signal_quietly(send: Callable[[], None]) -> None:
    """Run ``send``, ignoring that the target is already gone."""
    try:
        send()
    except ProcessLookupError:
        pass


def live_process_group_members(process_group: int) -> list[int]:
    """Return the pids of processes in ``process_group`` that are alive (zombies excluded).

    Args:
        process_group: The process group id.

    Returns:
        Sorted pids, read from ``/proc``.
    """
    members = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:  # the process exited while we looked
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and fields[0] != "Z" and int(fields[2]) == process_group:
            members.append(int(stat_path.parent.name))
    return sorted(members)


def _python_backend_shm_regions(pids: Sequence[int]) -> list[Path]:
    """Return the ``/dev/shm`` files of the Python backend stubs among ``pids``, read from their command lines.

    The stub's command line is ``triton_python_backend_stub <model.py> <shm region name> ...``.
    """
    regions = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 2 and argv[0].endswith(_STUB_NAME.encode()):
            name = argv[2].decode(errors="replace")
            if _SHM_REGION_PATTERN.fullmatch(name):
                regions.append(Path("/dev/shm") / name)
    return regions


def _wait_for_empty_process_group(process_group: int, *, timeout_s: float) -> list[int]:
    """Wait until no live process is left in ``process_group``; return the survivors at the deadline."""
    deadline_s = time.monotonic() + timeout_s
    while True:
        members = live_process_group_members(process_group)
        if not members or time.monotonic() >= deadline_s:
            return members
        time.sleep(0.05)
