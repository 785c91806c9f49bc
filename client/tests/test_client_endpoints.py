"""Several endpoints: round-robin per request, failover on UNAVAILABLE, one endpoint per stream, dns:/// targets."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as grpcclient
from fake_triton import FakeAsyncTransport, FakeTransport, error

import rtmo_client
from rtmo_client import RetryPolicy, transport
from rtmo_client.cli._common import urls
from rtmo_client.endpoints import Pin, Targets, resolve_addresses
from rtmo_client.transport import channel_options

PHOTO = Path(__file__).resolve().parents[2] / "data" / "photos" / "000000196141.jpg"
URLS = ["a:8001", "b:8001", "c:8001"]
NO_WAIT = RetryPolicy(max_retries=3, initial_backoff_s=0.0, max_backoff_s=0.0)


def fleet(count: int = 3, **options: Any) -> tuple[rtmo_client.Client, list[FakeTransport]]:
    fakes = [FakeTransport() for _ in range(count)]
    return rtmo_client.Client(URLS[:count], transport=fakes, retries=NO_WAIT, **options), fakes


def infers(fakes: list[FakeTransport]) -> list[int]:
    return [fake.calls.count("infer") for fake in fakes]


def test_requests_take_the_endpoints_in_turn_from_every_thread() -> None:
    client, fakes = fleet()
    client.model_info()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: client.estimate(PHOTO), range(30)))
    assert all(len(result) == 1 for result in results)
    assert infers(fakes) == [10, 10, 10]


def test_unavailable_is_retried_on_the_next_endpoint() -> None:
    client, fakes = fleet()
    client.model_info()  # on a; the next request goes to b
    fakes[1].failures = [error("UNAVAILABLE", "b is gone")]
    assert len(client.estimate(PHOTO)) == 1
    assert infers(fakes) == [0, 1, 1]  # b failed, c answered
    assert len(fakes[2].requests) == 1 and not fakes[1].requests


def test_other_errors_are_not_retried_elsewhere() -> None:
    client, fakes = fleet()
    client.model_info()
    fakes[1].failures = [error("INVALID_ARGUMENT", "bad image")]
    with pytest.raises(rtmo_client.InvalidInputError, match="bad image"):
        client.estimate(PHOTO)
    assert infers(fakes) == [0, 1, 0]


def test_a_stream_keeps_one_endpoint_and_moves_only_when_it_fails() -> None:
    client, fakes = fleet()
    client.model_info()
    assert len(list(client.stream([PHOTO] * 6, max_in_flight=3))) == 6
    assert infers(fakes) == [0, 6, 0]  # the stream was pinned to b, the next in turn
    fakes[2].failures = [error("UNAVAILABLE")]
    assert len(list(client.stream([PHOTO] * 4, max_in_flight=1))) == 4
    assert infers(fakes) == [4, 6, 1]  # pinned to c, which failed at once: the whole stream went on a


def test_async_client_balances_and_pins_streams_the_same_way() -> None:
    fakes = [FakeTransport() for _ in URLS]

    async def main() -> None:
        transports = [FakeAsyncTransport(fake) for fake in fakes]
        async with rtmo_client.AsyncClient(URLS, transport=transports, retries=NO_WAIT) as client:
            await client.model_info()
            await asyncio.gather(*(client.estimate(PHOTO) for _ in range(5)))
            fakes[0].failures = [error("UNAVAILABLE")]
            assert len([r async for r in client.stream([PHOTO] * 3)]) == 3

    asyncio.run(main())
    # model_info on a, estimates on b c a b c, stream pinned to a (fails once) then b.
    assert infers(fakes) == [2, 5, 2]
    assert all(fake.closed for fake in fakes)


def test_wait_until_ready_waits_for_every_endpoint_and_names_the_late_one() -> None:
    client, fakes = fleet()
    fakes[2].ready_answers = [False] * 100
    with pytest.raises(rtmo_client.ModelNotReadyError, match="c:8001: server not ready"):
        client.wait_until_ready(0.3)
    client, fakes = fleet()
    fakes[2].ready_answers = [False, error("UNAVAILABLE")]
    client.wait_until_ready(5)
    # An endpoint seen ready is not asked again while a later one is still starting.
    assert [fake.calls.count("is_server_ready") for fake in fakes] == [1, 1, 3]


def test_close_closes_every_endpoint_even_when_one_fails() -> None:
    client, fakes = fleet()

    def broken() -> None:
        raise RuntimeError("close failed")

    fakes[0].close = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="close failed"):
        client.close()
    assert fakes[1].closed and fakes[2].closed


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ([], "non-empty list"),
        (["a:1", "dns:///svc:1"], "give it alone"),
        (["a:1", "a:1"], "each endpoint once"),
        ("dns://svc:1", "dns:///host:port"),
        (" a:1", "without spaces"),
    ],
)
def test_bad_targets_are_refused_naming_what_is_accepted(url: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rtmo_client.Client(url, transport=[])


def test_shared_memory_and_transport_counts_are_checked_against_the_endpoints() -> None:
    with pytest.raises(ValueError, match="shared memory needs the one server"):
        fleet(shared_memory=True)
    with pytest.raises(ValueError, match="shared memory needs the one server"):
        rtmo_client.Client("dns:///svc:8001", shared_memory=True, transport=FakeTransport())
    with pytest.raises(ValueError, match="2 given for 3 endpoint"):
        rtmo_client.Client(URLS, transport=[FakeTransport(), FakeTransport()])


def test_channel_options_keep_tritonclients_defaults_and_add_round_robin_for_dns_targets() -> None:
    defaults = grpcclient.KeepAliveOptions()
    options = dict(channel_options())
    assert options["grpc.max_send_message_length"] == options["grpc.max_receive_message_length"] == 2**31 - 1
    assert options["grpc.keepalive_time_ms"] == defaults.keepalive_time_ms
    assert options["grpc.keepalive_timeout_ms"] == defaults.keepalive_timeout_ms
    assert options["grpc.keepalive_permit_without_calls"] == defaults.keepalive_permit_without_calls
    assert options["grpc.http2.max_pings_without_data"] == defaults.http2_max_pings_without_data
    assert "grpc.lb_policy_name" not in options
    assert dict(channel_options(round_robin=True))["grpc.lb_policy_name"] == "round_robin"
    assert dict(channel_options(tls_target_name="svc"))["grpc.ssl_target_name_override"] == "svc"


def test_a_dns_target_builds_one_round_robin_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, dict[str, Any]]] = []

    def fake_client(url: str, **kwargs: Any) -> FakeTransport:
        made.append((url, dict(kwargs["channel_args"])))
        return FakeTransport()

    monkeypatch.setattr(transport, "GrpcTransport", fake_client)
    rtmo_client.Client("dns:///rtmo-grpc.default.svc:8001")
    rtmo_client.Client(["a:8001", "b:8001"])
    assert [url for url, _ in made] == ["dns:///rtmo-grpc.default.svc:8001", "a:8001", "b:8001"]
    assert made[0][1]["grpc.lb_policy_name"] == "round_robin"
    assert "grpc.lb_policy_name" not in made[1][1]


def test_streams_on_a_dns_target_pin_to_one_resolved_address_each(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, FakeTransport]] = []
    lock = threading.Lock()

    def fake_client(url: str, **kwargs: Any) -> FakeTransport:
        with lock:
            made.append((url, FakeTransport()))
            return made[-1][1]

    def pods(host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        assert (host, port) == ("rtmo-grpc", 8001)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (f"10.0.0.{i}", port)) for i in (1, 2, 3)]

    monkeypatch.setattr(transport, "GrpcTransport", fake_client)
    monkeypatch.setattr(socket, "getaddrinfo", pods)
    client = rtmo_client.Client("dns:///rtmo-grpc:8001")
    client.model_info()
    for _ in range(2):
        assert len(list(client.stream([PHOTO] * 3))) == 3
    shared, *per_stream = made
    assert shared[0] == "dns:///rtmo-grpc:8001" and shared[1].calls.count("infer") == 0
    # Each stream had a channel per address (gRPC connects lazily: only the pinned one is used), closed at its end;
    # the streams took the addresses in turn.
    assert [url for url, _ in per_stream] == ["10.0.0.1:8001", "10.0.0.2:8001", "10.0.0.3:8001"] * 2
    assert [fake.calls.count("infer") for _, fake in per_stream] == [3, 0, 0, 0, 3, 0]
    assert all(fake.closed for _, fake in per_stream)


def test_resolve_addresses_formats_ipv4_and_ipv6() -> None:
    assert "127.0.0.1:8001" in resolve_addresses("dns:///127.0.0.1:8001")
    assert resolve_addresses("dns:///[::1]:8001") == ["[::1]:8001"]
    with pytest.raises(ValueError, match="dns:///host:port"):
        resolve_addresses("dns:///no-port")


def test_pin_moves_once_for_concurrent_failures_of_the_same_endpoint() -> None:
    pin = Pin(1, 3)
    assert [pin.move_from(1), pin.move_from(1)] == [2, 2]
    with pytest.raises(ValueError, match="0 <= endpoint < 3"):
        Pin(3, 3)


def test_targets_and_the_cli_accept_lists_and_commas() -> None:
    assert str(Targets.parse(["a:1", "b:1"])) == "a:1, b:1" and Targets.parse("dns:///s:1").dns
    split: Callable[[list[str] | None], list[str]] = urls
    assert split(None) == ["localhost:8001"]
    assert split(["a:1,b:1", "c:1"]) == ["a:1", "b:1", "c:1"]
