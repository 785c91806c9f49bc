"""Where requests go: one server, a list of servers, or a ``dns:///`` name resolving to several (a headless Service).

gRPC keeps each HTTP/2 connection on one server, so a single ``host:port`` behind a Kubernetes ClusterIP Service
sends every request to the same pod. Two ways spread the load, both accepted wherever a URL is:

- a list of ``host:port``: one channel per endpoint, and the client takes them in turn per request;
- ``dns:///host:port``: one channel whose ``round_robin`` policy spreads requests over every address the name
  resolves to (the pods of a headless Service), re-resolving when a connection drops.

A failed attempt (UNAVAILABLE) is retried on another endpoint. A stream keeps one endpoint (one connection) for
all its requests, moving to another only when its endpoint fails.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DNS_SCHEME", "Pin", "RoundRobin", "Targets", "resolve_addresses"]

DNS_SCHEME = "dns:///"


@dataclass(frozen=True)
class Targets:
    """The endpoints a client sends to: ``host:port`` strings, or one ``dns:///host:port``."""

    urls: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("url=[]; accepted: 'host:port', 'dns:///host:port' or a non-empty list of 'host:port'")
        for url in self.urls:
            if not isinstance(url, str) or not url.strip() or url != url.strip():
                raise ValueError(f"url={url!r}; accepted: a non-empty 'host:port' without spaces")
            if url.startswith("dns:") and not url.startswith(DNS_SCHEME):
                raise ValueError(f"url={url!r}; accepted: a DNS target written 'dns:///host:port'")
        if len(self.urls) > 1 and any(url.startswith(DNS_SCHEME) for url in self.urls):
            raise ValueError(
                f"url={list(self.urls)!r}; a 'dns:///' target already covers every address of its name: "
                "give it alone, or list 'host:port' endpoints"
            )
        if len(set(self.urls)) != len(self.urls):
            raise ValueError(f"url={list(self.urls)!r}; accepted: each endpoint once")

    @classmethod
    def parse(cls, url: str | Sequence[str]) -> Targets:
        """Targets from one URL or a list of them."""
        if isinstance(url, str):
            return cls((url,))
        return cls(tuple(url))

    @property
    def dns(self) -> bool:
        """Whether this is one ``dns:///`` target, balanced by gRPC over the addresses it resolves to."""
        return self.urls[0].startswith(DNS_SCHEME)

    def __str__(self) -> str:
        return ", ".join(self.urls)


def resolve_addresses(target: str) -> list[str]:
    """The ``address:port`` endpoints ``dns:///host:port`` resolves to now, in the resolver's order.

    Raises:
        ValueError: ``target`` is not ``dns:///host:port``.
        OSError: the name does not resolve.
    """
    host, sep, port = target.removeprefix(DNS_SCHEME).rpartition(":")
    if not target.startswith(DNS_SCHEME) or not sep or not host or not port.isdigit():
        raise ValueError(f"url={target!r}; accepted: 'dns:///host:port'")
    host = host.strip("[]")
    addresses = []
    for *_, sockaddr in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM):
        address = str(sockaddr[0])
        endpoint = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        if endpoint not in addresses:
            addresses.append(endpoint)
    return addresses


class RoundRobin:
    """Endpoint indices in turn, shared by every thread of one client."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._turns = itertools.count()  # next() on it is atomic: no two threads get the same turn

    def next(self) -> Pin:
        """A pin for one request (or one stream) on the next endpoint in turn."""
        return Pin(next(self._turns) % self.count, self.count)


class Pin:
    """The endpoint of a request's attempts, or of a whole stream; moves to the next one when it fails."""

    def __init__(self, endpoint: int, count: int) -> None:
        if not 0 <= endpoint < count:
            raise ValueError(f"endpoint={endpoint}; accepted: 0 <= endpoint < {count}")
        self.endpoint = endpoint
        self.count = count
        self._lock = threading.Lock()

    def move_from(self, failed: int) -> int:
        """The endpoint to try after ``failed`` failed: the next one, unless another request already moved on."""
        with self._lock:
            if self.endpoint == failed:
                self.endpoint = (failed + 1) % self.count
            return self.endpoint
