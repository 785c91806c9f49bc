"""Locust load test of the RTMO server over gRPC, through our SDK (``rtmo_client``).

Users (pick them by class name on the command line; default: all non-abstract ones, by weight):

- ``RTMOUser``: real photos, loaded once per process; single-image requests (``estimate``) and small batches
  (``estimate_batch[N]``, ``--batch-size``), 3 : 1.
- ``RTMOMixedInputUser``: the same, plus requests with a bad image (``bad:<kind>``: not an image, a truncated
  JPEG, empty bytes) that the server must refuse with INVALID_ARGUMENT; only those requests fail.

Each call fires Locust's ``request`` event with its ``perf_counter`` time and the SDK's exception, if any.
The response "length" is the number of people found, so Locust's "Average size" column is people per request.
At the end, the peak number of gRPC calls in flight at once is logged: with gevent-enabled gRPC it reaches the
number of users; a blocking channel would keep it at 1.

Headless, with CSV and HTML reports (``-H`` is the server's gRPC ``host:port``; several servers: ``-H a:8001,b:8001``
taken in turn, or ``-H dns:///rtmo-grpc.default.svc:8001`` for every pod of a Kubernetes headless Service)::

    locust -f loadtest/locustfile.py --headless -u 4 -r 2 -t 60s -H 127.0.0.1:8001 \\
        --csv results/rtmo --html results/rtmo.html RTMOUser

Distributed: one master and N workers (each worker loads the photos once)::

    locust -f loadtest/locustfile.py --master --headless --expect-workers 2 -u 8 -r 4 -t 120s -H 127.0.0.1:8001 \
        --csv results/rtmo
    locust -f loadtest/locustfile.py --worker --master-host 127.0.0.1     # run twice, on this or other machines

Debugging one user without Locust's runner: ``python loadtest/locustfile.py`` (``RTMO_GRPC_URL`` sets the server).
"""

from __future__ import annotations

# grpc's C core must hand control back to gevent's hub while it waits, or one user's call would block every
# other user of the process. This patches grpc for gevent and must run before any channel exists.
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import gc  # noqa: E402 - after init_gevent, on purpose
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from locust import User, constant, events, run_single_user, task  # noqa: E402
from locust.stats import StatsCSVFileWriter  # noqa: E402

import rtmo_client  # noqa: E402

LOGGER = logging.getLogger("rtmo.loadtest")
DEFAULT_PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"

#: Photos shared by every user of this process, loaded once (see ``_load_photos``).
PHOTOS: list[bytes] = []


def bad_images(photo: bytes) -> dict[str, bytes]:
    """Inputs the server must refuse: a text file, the first half of a real JPEG, nothing."""
    return {
        "not_an_image": b"this is a text file, not an image\n",
        "truncated_jpeg": photo[: len(photo) // 2],
        "empty": b"",
    }


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("RTMO")
    group.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="directory of *.jpg photos to send")
    group.add_argument("--batch-size", type=int, default=4, help="images per estimate_batch request")
    group.add_argument("--score-threshold", type=float, default=None, help="request parameter (server default 0.1)")
    group.add_argument("--timeout-s", type=float, default=60.0, help="deadline of each call")


@events.init.add_listener
def _load_photos(environment: Any, **_: Any) -> None:
    directory = Path(environment.parsed_options.photos if environment.parsed_options else DEFAULT_PHOTOS)
    paths = sorted(directory.glob("*.jpg"))
    if not paths:
        raise SystemExit(f"--photos {directory}: no *.jpg files there; give a directory of JPEG photos")
    PHOTOS[:] = [path.read_bytes() for path in paths]
    LOGGER.info("loaded %d photos from %s", len(PHOTOS), directory)


class _InFlight:
    """How many gRPC calls of this process run at once, and the peak."""

    now = 0
    peak = 0


@events.quitting.add_listener
def _log_peak(environment: Any, **_: Any) -> None:
    LOGGER.info("peak concurrent gRPC calls: %d", _InFlight.peak)


@events.quit.add_listener
def _exit_without_interpreter_teardown(exit_code: int, **_: Any) -> None:
    """Exit as soon as locust is done: with gevent-patched gRPC the interpreter's own teardown can hang after the
    stats are printed (seen in CI with three hosts: "Shutting down (exit code 0)", then no exit). The CSV files are
    closed first, so nothing written is lost."""
    for writer in (obj for obj in gc.get_objects() if isinstance(obj, StatsCSVFileWriter)):
        writer.close_files()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


def grpc_endpoints(host: str) -> list[str]:
    """The servers of ``-H``/``--host``: one ``host:port``, ``dns:///host:port`` (every pod of a headless Service),
    or several ``host:port`` separated by commas, which each user takes in turn per request."""
    endpoints = [url.strip() for url in host.split(",") if url.strip()]
    if not endpoints:
        raise ValueError(f"--host={host!r}; accepted: host:port, dns:///host:port, or host:port,host:port,...")
    return endpoints


class RTMOGrpcUser(User):
    """A user with its own ``rtmo_client.Client`` (one gRPC channel); subclasses add tasks."""

    abstract = True
    host = os.environ.get("RTMO_GRPC_URL", "127.0.0.1:8001")
    wait_time = constant(0)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        options = environment.parsed_options
        self.batch_size = options.batch_size if options else 4
        self.score_threshold = options.score_threshold if options else None
        self.client = rtmo_client.Client(
            grpc_endpoints(self.host), timeout_s=options.timeout_s if options else 60.0, retries=0
        )
        self._next = 0

    def on_stop(self) -> None:
        self.client.close()

    def photos(self, count: int) -> list[bytes]:
        """The next ``count`` photos, round-robin, so users spread over all of them."""
        if not PHOTOS:
            _load_photos(self.environment)
        chosen = [PHOTOS[(self._next + i) % len(PHOTOS)] for i in range(count)]
        self._next += count
        return chosen

    def call(self, name: str, send: Callable[[], list[rtmo_client.PoseResult]]) -> list[rtmo_client.PoseResult] | None:
        """Run ``send`` and report it to Locust as a ``grpc`` request named ``name``; SDK errors become failures."""
        _InFlight.now += 1
        _InFlight.peak = max(_InFlight.peak, _InFlight.now)
        start = time.perf_counter()
        results, error = None, None
        try:
            results = send()
        except rtmo_client.RTMOClientError as exc:
            error = exc
        finally:
            _InFlight.now -= 1
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=1000.0 * (time.perf_counter() - start),
            response_length=sum(len(r.people) for r in results) if results else 0,
            exception=error,
            context={},
        )
        return results


class RTMOUser(RTMOGrpcUser):
    """Real photos: single images and small batches."""

    @task(3)
    def estimate(self) -> None:
        (photo,) = self.photos(1)
        self.call("estimate", lambda: [self.client.estimate(photo, score_threshold=self.score_threshold)])

    @task(1)
    def estimate_batch(self) -> None:
        photos = self.photos(self.batch_size)
        self.call(
            f"estimate_batch[{len(photos)}]",
            lambda: self.client.estimate_batch(photos, score_threshold=self.score_threshold),
        )


class RTMOMixedInputUser(RTMOUser):
    """Real photos mixed with bad images; the bad ones must fail (INVALID_ARGUMENT) and only they."""

    @task(1)
    def bad_image(self) -> None:
        kinds = bad_images(self.photos(1)[0])
        kind = sorted(kinds)[self._next % len(kinds)]
        self.call(f"bad:{kind}", lambda: [self.client.estimate(kinds[kind])])


if __name__ == "__main__":
    run_single_user(RTMOUser)
