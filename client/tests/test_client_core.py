"""The operations both clients share (rtmo_client._base, _effects): each test runs under Client and AsyncClient.

The parametrized ``driven`` fixture gives the same calls on either client, so every assertion here holds for both
drivers: the transport calls made, the sleeps taken, the errors raised and the close semantics are one behaviour.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from fake_triton import FakeAsyncTransport, FakeTransport, error

import rtmo_client
from rtmo_client import RetryPolicy, _base
from rtmo_client._effects import Call, Method, Operation, Sleep, Steps, StreamMethod, call
from rtmo_client.transport import AsyncStream, AsyncTransport, SyncStream, SyncTransport

PHOTO = Path(__file__).resolve().parents[2] / "data" / "photos" / "000000196141.jpg"
BACKOFF = RetryPolicy(max_retries=3, initial_backoff_s=0.001, max_backoff_s=0.004, multiplier=2.0, jitter=False)


class Driven:
    """One client of either kind over a fake transport; ``call`` runs a method to completion and returns its value."""

    def __init__(self, kind: str, sleeps: list[float], **options: Any) -> None:
        self.kind = kind
        self.fake = FakeTransport()
        self.sleeps = sleeps
        options.setdefault("retries", BACKOFF)
        if kind == "sync":
            self.client: Any = rtmo_client.Client("fake:1", transport=self.fake, **options)
        else:
            self.client = rtmo_client.AsyncClient("fake:1", transport=FakeAsyncTransport(self.fake), **options)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        bound = getattr(self.client, method)
        if self.kind == "sync":
            return bound(*args, **kwargs)

        async def main() -> Any:
            return await bound(*args, **kwargs)

        return asyncio.run(main())


@pytest.fixture(params=["sync", "async"])
def driven(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Driven]]:
    """Make a :class:`Driven` client; both drivers' sleeps are recorded (and shortened) in ``Driven.sleeps``."""
    sleeps: list[float] = []
    real_sleep, real_async_sleep = time.sleep, asyncio.sleep

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        real_sleep(0)

    async def async_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await real_async_sleep(0)

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(asyncio, "sleep", async_sleep)
    yield lambda **options: Driven(request.param, sleeps, **options)


def test_unavailable_is_retried_with_the_policys_backoff_until_it_succeeds(driven: Callable[..., Driven]) -> None:
    d = driven()
    d.call("model_info")
    d.fake.failures = [error("UNAVAILABLE"), error("UNAVAILABLE")]
    assert len(d.call("estimate", PHOTO)) == 1
    assert d.fake.calls == ["get_model_config:rtmo", "infer", "infer", "infer"]
    assert d.sleeps == [0.001, 0.002]


def test_not_found_while_a_model_reloads_is_retried_with_the_same_backoff(driven: Callable[..., Driven]) -> None:
    d = driven()
    d.call("model_info")
    d.fake.failures = [error("NOT_FOUND", "'rtmo_frames' has no available versions")]
    assert len(d.call("estimate", PHOTO)) == 1
    assert d.fake.calls == ["get_model_config:rtmo", "infer", "infer"] and d.sleeps == [0.001]


def test_retries_stop_at_the_budget_and_other_statuses_are_never_retried(driven: Callable[..., Driven]) -> None:
    d = driven(retries=RetryPolicy(max_retries=1, initial_backoff_s=0.003, max_backoff_s=0.003, jitter=False))
    d.fake.failures = [error("UNAVAILABLE", "refused")] * 3
    with pytest.raises(rtmo_client.UnavailableError, match="refused"):
        d.call("server_info")
    assert d.fake.calls == ["get_server_metadata"] * 2 and d.sleeps == [0.003]
    d.fake.failures = [error("RESOURCE_EXHAUSTED", "queue full")]
    with pytest.raises(rtmo_client.ServerError, match="queue full") as raised:
        d.call("model_info", "rtmo_frames")
    assert raised.value.status == "RESOURCE_EXHAUSTED"
    assert d.fake.calls[2:] == ["get_model_config:rtmo_frames"] and d.sleeps == [0.003]


def test_wait_until_ready_polls_with_growing_pauses_through_transient_answers(driven: Callable[..., Driven]) -> None:
    d = driven()
    d.fake.ready_answers = [error("UNAVAILABLE"), False, error("DEADLINE_EXCEEDED"), True]
    d.call("wait_until_ready", 5, models=["rtmo"])
    assert d.fake.calls == ["is_server_ready"] * 4 + ["is_model_ready:rtmo"]
    assert d.sleeps == [0.05, 0.1, 0.2]


def test_wait_until_ready_raises_a_non_transient_error_at_once(driven: Callable[..., Driven]) -> None:
    d = driven()
    d.fake.ready_answers = [error("INTERNAL", "broken")]
    with pytest.raises(rtmo_client.ServerError, match="broken"):
        d.call("wait_until_ready", 5)
    assert d.sleeps == []


def test_model_info_is_read_once_and_the_model_chosen_once_per_request(
    driven: Callable[..., Driven], monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen: list[str] = []

    def counting_model_for(payloads: Any) -> str:
        chosen.append(_model_for(payloads))
        return chosen[-1]

    _model_for = _base.model_for
    monkeypatch.setattr(_base, "model_for", counting_model_for)
    d = driven()
    d.call("estimate", PHOTO)
    d.call("estimate_batch", [PHOTO, PHOTO])
    d.call("estimate", np.zeros((4, 6, 3), np.uint8), channels="bgr")
    assert chosen == ["rtmo", "rtmo", "rtmo_frames"]
    assert d.fake.calls == ["get_model_config:rtmo", "infer", "infer", "get_model_config:rtmo_frames", "infer"]


def test_close_unregisters_regions_then_closes_the_transport_once_and_is_idempotent(
    driven: Callable[..., Driven],
) -> None:
    d = driven(shared_memory=True)
    d.call("estimate", np.zeros((4, 6, 3), np.uint8), channels="bgr")
    (region,) = d.fake.registered
    closes: list[str] = []
    d.fake.close = lambda: closes.append("close")  # type: ignore[method-assign]
    d.call("close")
    d.call("close")
    assert d.fake.calls[-1] == f"unregister:{region}" and d.fake.calls.count(f"unregister:{region}") == 1
    assert closes == ["close"] and d.fake.registered == {}
    with pytest.raises(rtmo_client.RTMOClientError, match="closed"):
        d.call("estimate", PHOTO)


def test_close_closes_the_transport_even_when_dropping_a_region_fails(driven: Callable[..., Driven]) -> None:
    d = driven(shared_memory=True)
    d.call("estimate", np.zeros((4, 6, 3), np.uint8), channels="bgr")
    pool = d.client._base.pool
    (region,) = pool.regions()

    def refuse(region: Any) -> None:
        raise OSError("cannot unlink")

    destroy, pool.destroy = pool.destroy, refuse
    with pytest.raises(OSError, match="cannot unlink"):
        d.call("close")
    assert d.fake.closed
    destroy(region)


def test_a_refused_registration_releases_its_region_for_the_next_request(driven: Callable[..., Driven]) -> None:
    d = driven(shared_memory=True)
    d.fake.register_error = error("INVALID_ARGUMENT", "not allowed")
    with pytest.raises(rtmo_client.SharedMemoryError):
        d.call("estimate", np.zeros((4, 6, 3), np.uint8), channels="bgr")
    d.fake.register_error = None
    d.call("estimate", np.zeros((4, 6, 3), np.uint8), channels="bgr")
    assert len(d.client._base.pool.regions()) == 1  # the first region was lent back, not leaked
    d.call("close")


def test_every_effect_method_is_a_method_of_both_transports() -> None:
    for name in get_args(Method):
        assert callable(getattr(SyncTransport, name))
        assert inspect.iscoroutinefunction(getattr(AsyncTransport, name))


def _echo_twice() -> Operation[list[Any]]:
    got = [(yield from call("infer", "a", [], client_timeout=1.0))]
    try:
        yield Sleep(0.5)
        got.append((yield from call("close")))
    except ValueError as refused:
        got.append(str(refused))
    return got


def test_steps_send_results_throw_errors_and_return_the_operations_value() -> None:
    steps = Steps(_echo_twice())
    effects = []
    for effect in steps:
        effects.append(effect)
        with steps.outcome():
            if effect == Call("close", (), {}):
                raise ValueError("refused")
            steps.result = "answer" if isinstance(effect, Call) else None
    assert effects == [Call("infer", ("a", []), {"client_timeout": 1.0}), Sleep(0.5), Call("close", (), {})]
    assert steps.value == ["answer", "refused"]


def test_steps_raise_what_the_operation_does_not_handle_after_its_cleanup() -> None:
    cleaned: list[bool] = []

    def operation() -> Operation[None]:
        try:
            yield from call("close")
        finally:
            cleaned.append(True)

    steps = Steps(operation())
    with pytest.raises(KeyboardInterrupt):
        for _ in steps:
            with steps.outcome():
                raise KeyboardInterrupt
    assert cleaned == [True]


def test_every_stream_effect_method_is_a_method_of_both_stream_protocols() -> None:
    for name in get_args(StreamMethod):
        assert callable(getattr(SyncStream, name))
        assert inspect.iscoroutinefunction(getattr(AsyncStream, name))
