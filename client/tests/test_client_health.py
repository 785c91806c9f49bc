"""``rtmo-client health`` and rtmo_client.health against the fake transport: exit status, probe frame, cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fake_triton import FakeResult, FakeTransport, Request, error, outputs_for

import rtmo_client
from rtmo_client.cli import _common, main
from rtmo_client.health import PROBE_FRAME_SIZE, HealthCache


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTransport:
    def served(request: Request) -> FakeResult:
        rows = request.shape[0]
        return FakeResult(outputs_for([0] * rows, image_sizes=[(request.shape[2], request.shape[1])] * rows))

    transport = FakeTransport(handler=served)
    created: list[dict[str, object]] = []

    def client(url: str, **options: object) -> rtmo_client.Client:
        created.append({"url": url, **options})
        return rtmo_client.Client(url, transport=transport, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(_common, "Client", client)
    transport.created = created  # type: ignore[attr-defined]
    return transport


def health(tmp_path: Path, *options: str) -> int:
    return main(["health", "--url", "host:9", "--cache-file", str(tmp_path / "health.json"), *options])


def test_healthy_server_exits_0_after_readiness_and_a_tiny_frame_through_rtmo_frames(
    fake: FakeTransport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert health(tmp_path) == 0
    assert fake.calls[:3] == ["is_server_ready", "is_model_ready:rtmo", "is_model_ready:rtmo_frames"]
    (request,) = fake.requests
    assert request.model == "rtmo_frames" and request.shape == [1, PROBE_FRAME_SIZE, PROBE_FRAME_SIZE, 3]
    assert "healthy: host:9 (probe frame served)" in capsys.readouterr().out
    # A probe: no retries, a deadline shorter than the default 30 s.
    assert fake.created[0]["retries"] == 0 and fake.created[0]["timeout_s"] == 5.0  # type: ignore[attr-defined]


def test_a_server_that_is_not_ready_exits_1_without_sending_the_frame(
    fake: FakeTransport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.ready_answers = [False] * 100
    assert health(tmp_path) == 1
    assert fake.requests == []
    assert "unhealthy: host:9 was not ready within 1.0 s: server not ready" in capsys.readouterr().err


def test_a_ready_server_whose_frame_fails_exits_1_with_the_status(
    fake: FakeTransport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.failures = [error("INTERNAL", "Stub process 'engine_0_0' is not healthy")]
    assert health(tmp_path) == 1
    assert "probe frame to host:9 failed: INTERNAL: Stub process 'engine_0_0' is not healthy" in capsys.readouterr().err
    assert not (tmp_path / "health.json").exists()  # a failure is never cached


def test_a_recent_success_is_reused_but_readiness_is_asked_every_time(fake: FakeTransport, tmp_path: Path) -> None:
    assert health(tmp_path, "--cache-s", "60") == 0
    assert health(tmp_path, "--cache-s", "60") == 0
    assert len(fake.requests) == 1 and fake.calls.count("is_server_ready") == 2
    fake.ready_answers = [False] * 100  # not ready wins over the cached success
    assert health(tmp_path, "--cache-s", "60") == 1
    assert health(tmp_path, "--cache-s", "0") == 1


def test_after_a_failure_the_next_probe_sends_the_frame_again(fake: FakeTransport, tmp_path: Path) -> None:
    fake.failures = [error("NOT_FOUND", "'postprocess' has no available versions")]
    assert health(tmp_path, "--cache-s", "60") == 1
    assert health(tmp_path, "--cache-s", "60") == 0
    assert len(fake.requests) == 1  # sent by the second probe: the failure left nothing to reuse


def test_cache_records_expire_are_per_url_and_ignore_other_users_files(tmp_path: Path) -> None:
    cache = HealthCache(tmp_path / "h.json", max_age_s=5)
    assert not cache.fresh("a:1")
    cache.record_success("a:1", now_s=1000.0)
    assert cache.fresh("a:1", now_s=1004.0) and not cache.fresh("a:1", now_s=1005.5)
    assert not cache.fresh("b:2", now_s=1001.0)
    (tmp_path / "h.json").write_text("not json")
    assert not cache.fresh("a:1")
    if os.getuid() == 0:  # root can hand the file to another user and check it is not trusted
        (tmp_path / "h.json").write_text(json.dumps({"url": "a:1", "served_at_s": 1000.0}))
        os.chown(tmp_path / "h.json", 12345, 12345)
        assert not cache.fresh("a:1", now_s=1001.0)
    assert HealthCache.default_path("a:1") != HealthCache.default_path("b:2")
    with pytest.raises(ValueError, match="max_age_s=-1"):
        HealthCache(tmp_path / "h.json", max_age_s=-1)
