"""Self-healing for a Triton server whose Python backend stubs can die (OOM killer, a segfault in ONNX Runtime).

Triton 2.51 does not notice a dead ``triton_python_backend_stub``: the model stays READY and every request to it
fails with ``INTERNAL: Stub process ... is not healthy``. A reload (``load`` alone) heals it but keeps readiness
true throughout; ``unload`` then ``load`` makes readiness false at once (the ensembles that use the model become
unavailable) and brings the model and its ensembles back READY in a few seconds. The server must run with
:data:`MODEL_CONTROL_ARGS` for those calls to be accepted.

:class:`StubSupervisor` polls the stubs of the server's process group every ``poll_interval_s`` and, when one has
disappeared, unloads and loads its model through :class:`HttpModelControl`. Its thread ends only on a bug or a
stop: the process that owns it checks :meth:`StubSupervisor.is_alive` and takes the server down when it died, so
the supervisor is never a silent single point of failure.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LOGGER = logging.getLogger("rtmo.supervisor")

# Model control by API (so a model can be unloaded and loaded again), every model of the repository loaded at start.
MODEL_CONTROL_ARGS = ("--model-control-mode=explicit", "--load-model=*")
_STUB_EXECUTABLE = b"triton_python_backend_stub"
_STUB_INSTANCE_ARG = 8  # argv index of the instance name ("engine_0_0") in the Python backend's stub command line


class ModelControlError(RuntimeError):
    """The server refused or did not answer a model control call."""


@dataclass(frozen=True)
class PythonStub:
    """One running ``triton_python_backend_stub``: the process serving one instance of one Python model.

    Attributes:
        pid: Its process id.
        model: The model's name (its directory in the repository).
        instance: Triton's instance name, e.g. ``engine_0_0`` (empty when the command line does not carry it).
    """

    pid: int
    model: str
    instance: str


@dataclass(frozen=True)
class Heal:
    """One recovery: ``model`` unloaded and loaded again after its stubs ``instances`` died."""

    model: str
    instances: tuple[str, ...]
    detected_at_s: float
    healed_at_s: float

    @property
    def duration_s(self) -> float:
        """Seconds from noticing the dead stub to the model being loaded again."""
        return self.healed_at_s - self.detected_at_s


def parse_stub_command_line(pid: int, argv: Sequence[bytes]) -> PythonStub | None:
    """The stub a ``/proc/<pid>/cmdline`` describes, or None for any other process.

    The Python backend starts ``triton_python_backend_stub <repository>/<model>/<version>/model.py <shm region>
    ... <instance name> ...``: the model is the grandparent directory of ``model.py``.
    """
    if len(argv) < 2 or not argv[0].endswith(_STUB_EXECUTABLE):
        return None
    model = Path(argv[1].decode(errors="replace")).parent.parent.name
    instance = argv[_STUB_INSTANCE_ARG].decode(errors="replace") if len(argv) > _STUB_INSTANCE_ARG else ""
    return PythonStub(pid=pid, model=model, instance=instance)


def python_stubs(pids: Sequence[int]) -> list[PythonStub]:
    """The Python backend stubs among ``pids`` (e.g. the live members of tritonserver's process group)."""
    stubs = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # exited while we looked
            continue
        stub = parse_stub_command_line(pid, argv)
        if stub is not None:
            stubs.append(stub)
    return stubs


class ModelControl(Protocol):
    """Triton's model repository API, the two calls a heal needs."""

    def unload(self, model: str) -> None: ...

    def load(self, model: str) -> None: ...


class HttpModelControl:
    """Triton's model control over its HTTP endpoint (``POST /v2/repository/models/<model>/{unload,load}``).

    Plain ``urllib``, so the GPU image needs no client library to heal.
    """

    def __init__(self, http_url: str, *, load_timeout_s: float = 120.0) -> None:
        if not http_url.startswith(("http://", "https://")):
            raise ValueError(f"http_url={http_url!r}; accepted: an http:// or https:// URL of Triton's HTTP endpoint")
        if load_timeout_s <= 0:
            raise ValueError(f"load_timeout_s={load_timeout_s}; accepted: a positive number of seconds")
        self.http_url = http_url.rstrip("/")
        self.load_timeout_s = load_timeout_s

    def unload(self, model: str) -> None:
        self._post(model, "unload")

    def load(self, model: str) -> None:
        self._post(model, "load")  # Triton answers once the model (and the ensembles using it) are loaded

    def _post(self, model: str, action: str) -> None:
        url = f"{self.http_url}/v2/repository/models/{urllib.parse.quote(model, safe='')}/{action}"
        request = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.load_timeout_s):  # noqa: S310 - our server's URL
                return
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except (ValueError, AttributeError):
                pass
            raise ModelControlError(f"{action} of model {model!r} refused ({error.code}): {detail}") from error
        except (urllib.error.URLError, OSError) as error:
            raise ModelControlError(f"{action} of model {model!r}: no answer from {url}: {error}") from error


@dataclass
class _Outage:
    """A model waiting to be reloaded: its dead stubs, since when, and when to try (again)."""

    detected_at_s: float
    next_try_at_s: float
    instances: list[str] = field(default_factory=list)
    attempts: int = 0


class StubSupervisor:
    """Watches the Python stubs and reloads (unload, then load) the model of any stub that died.

    Args:
        list_stubs: The stubs alive now (e.g. :func:`python_stubs` of the server's process group).
        control: Where to unload and load models.
        poll_interval_s: Pause between two looks at the stubs.
        clock: Monotonic seconds, for the recorded :class:`Heal` times.

    A model whose heal failed (the server refused the load, e.g. out of memory) is tried again, after a pause
    that doubles from ``poll_interval_s`` up to ``max_retry_interval_s``, until it loads; its readiness stays false
    meanwhile, which is the truth.
    """

    def __init__(
        self,
        *,
        list_stubs: Callable[[], list[PythonStub]],
        control: ModelControl,
        poll_interval_s: float = 0.2,
        max_retry_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s={poll_interval_s}; accepted: a positive number of seconds")
        if max_retry_interval_s < poll_interval_s:
            raise ValueError(
                f"max_retry_interval_s={max_retry_interval_s}; accepted: seconds >= poll_interval_s ({poll_interval_s})"
            )
        self.max_retry_interval_s = max_retry_interval_s
        self.list_stubs = list_stubs
        self.control = control
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self.heals: list[Heal] = []
        self.failure: BaseException | None = None
        self._known: dict[int, PythonStub] = {}
        self._pending: dict[str, _Outage] = {}  # by model
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> list[Heal]:
        """Look at the stubs once and heal the models whose stubs died since the last look; return those heals."""
        current = {stub.pid: stub for stub in self.list_stubs()}
        now_s = self.clock()
        for pid, stub in self._known.items():
            if pid not in current:
                LOGGER.warning("stub %s (pid %d) of model %r died", stub.instance or "?", pid, stub.model)
                outage = self._pending.setdefault(stub.model, _Outage(detected_at_s=now_s, next_try_at_s=now_s))
                outage.instances.append(stub.instance)
        due = sorted(model for model, outage in self._pending.items() if outage.next_try_at_s <= now_s)
        if not due:
            self._known = current
            return []
        heals = []
        for model in due:
            outage = self._pending[model]
            try:
                self.control.unload(model)
                self.control.load(model)
            except ModelControlError as error:
                outage.attempts += 1
                pause_s = min(self.max_retry_interval_s, self.poll_interval_s * 2**outage.attempts)
                outage.next_try_at_s = self.clock() + pause_s
                LOGGER.error(
                    "could not reload model %r (attempt %d, next in %.1f s): %s", model, outage.attempts, pause_s, error
                )
                continue
            heal = Heal(
                model=model,
                instances=tuple(outage.instances),
                detected_at_s=outage.detected_at_s,
                healed_at_s=self.clock(),
            )
            LOGGER.warning("model %r reloaded %.2f s after its stub died", model, heal.duration_s)
            del self._pending[model]
            heals.append(heal)
        # The healed models have new stubs. A stub of another model that died while we healed is gone from this
        # look and must not be forgotten: it was known before, so it is pending now.
        after = {stub.pid: stub for stub in self.list_stubs()}
        healed = {heal.model for heal in heals}
        for pid, stub in current.items():
            if pid not in after and stub.model not in healed and stub.model not in self._pending:
                LOGGER.warning("stub %s (pid %d) of model %r died", stub.instance or "?", pid, stub.model)
                now_s = self.clock()
                self._pending[stub.model] = _Outage(detected_at_s=now_s, next_try_at_s=now_s, instances=[stub.instance])
        self._known = after
        self.heals.extend(heals)
        return heals

    # -- the thread ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the first look (the stubs of a ready server) and poll in a daemon thread from then on."""
        if self._thread is not None:
            raise RuntimeError("this supervisor was already started")
        self._known = {stub.pid: stub for stub in self.list_stubs()}
        LOGGER.info("supervising %d Python stubs every %.1f s", len(self._known), self.poll_interval_s)
        self._thread = threading.Thread(target=self._run, name="rtmo-stub-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (returns at once; a heal in progress finishes or fails with the server)."""
        self._stop.set()

    def is_alive(self) -> bool:
        """Whether the polling thread runs; false after a stop and after it died of an unexpected error."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.poll_interval_s):
                self.poll()
        except BaseException as error:  # recorded for the owner, who takes the server down
            self.failure = error
            LOGGER.exception("the stub supervisor died")
