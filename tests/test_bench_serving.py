"""The serving benchmark: its statistics arithmetic, its load loop, and a short real run against the shared server.

Timings are never asserted; the smoke runs check that every figure exists, is positive and is consistent.
"""

from __future__ import annotations

import json
import threading

import pytest

from rtmo_bench.closed_loop import LoadResult, run_closed_loop
from rtmo_bench.memory import RssSampler, group_rss_bytes, process_rss_bytes
from rtmo_bench.serving import main
from rtmo_bench.triton_stats import Counters, delta, difference, ensemble_breakdown, figures, parse_counters, total


def _counters(**values: int) -> Counters:
    fields = dict(
        requests=0, failures=0, images=0, executions=0, request_ns=0, queue_ns=0, compute_ns=0, batch_compute_ns=0
    )
    return Counters(**{**fields, **values})


def test_parse_counters_sums_compute_parts_per_request_and_per_execution() -> None:
    entry = {
        "name": "engine",
        "inference_count": "6",
        "execution_count": "2",
        "inference_stats": {
            "success": {"count": "6", "ns": "600"},
            "fail": {"count": "1", "ns": "5"},
            "queue": {"count": "6", "ns": "60"},
            "compute_input": {"count": "6", "ns": "6"},
            "compute_infer": {"count": "6", "ns": "480"},
            "compute_output": {"count": "6", "ns": "12"},
        },
        "batch_stats": [
            {
                "batch_size": "3",
                "compute_input": {"count": "2", "ns": "2"},
                "compute_infer": {"count": "2", "ns": "160"},
                "compute_output": {"count": "2", "ns": "4"},
            }
        ],
    }
    assert parse_counters(entry) == Counters(
        requests=6,
        failures=1,
        images=6,
        executions=2,
        request_ns=600,
        queue_ns=60,
        compute_ns=498,
        batch_compute_ns=166,
    )


def test_difference_charges_a_batched_execution_once_per_image() -> None:
    # Four requests ran as one batch of 4 taking 40 ms: each request is charged 40 ms, each image costs 10 ms.
    before = _counters(
        requests=10, images=10, executions=10, request_ns=10**9, compute_ns=10**9, batch_compute_ns=10**9
    )
    after = _counters(
        requests=14,
        images=14,
        executions=11,
        request_ns=10**9 + 4 * 50_000_000,
        queue_ns=4 * 10_000_000,
        compute_ns=10**9 + 4 * 40_000_000,
        batch_compute_ns=10**9 + 40_000_000,
    )
    figures = difference(before, after)
    assert (figures.requests, figures.images, figures.executions) == (4, 4, 1)
    assert figures.mean_batch == 4.0
    assert figures.compute_ms == pytest.approx(40.0)
    assert figures.compute_ms_per_image == pytest.approx(10.0)
    assert figures.request_ms == pytest.approx(50.0)
    assert figures.queue_ms == pytest.approx(10.0)


def test_rounds_add_up_counters_and_load_results() -> None:
    first = delta(
        _counters(requests=1, images=1), _counters(requests=3, images=6, executions=2, batch_compute_ns=60_000_000)
    )
    second = delta(_counters(), _counters(requests=1, images=2, executions=1, batch_compute_ns=30_000_000))
    assert total([first, second]) == _counters(requests=3, images=7, executions=3, batch_compute_ns=90_000_000)
    assert figures(total([first, second])).compute_ms_per_image == pytest.approx(90 / 7)
    merged = LoadResult.merged(
        [
            LoadResult(2, 1.0, [10.0, 30.0], images=2),
            LoadResult(2, 2.0, [20.0], images=4, failures=1, first_error="InvalidInputError: x"),
        ]
    )
    assert (merged.elapsed_s, merged.images, merged.requests, merged.failures) == (3.0, 6, 3, 1)
    assert (
        merged.images_per_s == 2.0 and merged.percentile_ms(50) == 20.0 and merged.first_error == "InvalidInputError: x"
    )
    with pytest.raises(ValueError, match="same concurrency"):
        LoadResult.merged([LoadResult(1, 1.0), LoadResult(2, 1.0)])


def test_rss_report_measures_growth_after_warmup_and_its_late_slope() -> None:
    sampler = RssSampler(pid=1)
    # idle 100 MiB, +50 MiB in the first requests, then +1 MiB per minute for 4 minutes, then flat for 4 minutes
    series = [(0.0, 100.0)] + [(60.0 * t, 150.0 + min(t, 4.0) - 1.0) for t in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)]
    sampler.samples = [(s, int(m * 2**20)) for s, m in series]
    report = sampler.report(warmup_s=60.0)
    assert (report["rss_idle_mib"], report["rss_start_mib"], report["rss_end_mib"], report["growth_mib"]) == (
        100.0,
        150.0,
        153.0,
        3.0,
    )
    assert 0 < report["slope_mib_per_min"] < 1.0 and report["slope_last_half_mib_per_min"] == pytest.approx(
        0.0, abs=1e-6
    )
    with pytest.raises(ValueError, match="no RSS samples"):
        RssSampler(pid=1).report()


def test_ensemble_breakdown_shares_sum_to_one_with_the_unaccounted_rest() -> None:
    def stage(request_ms: float, queue_ms: float, compute_ms: float) -> object:
        ns = int(1e6)
        return difference(
            _counters(),
            _counters(
                requests=1,
                images=1,
                executions=1,
                request_ns=int(request_ms * ns),
                queue_ns=int(queue_ms * ns),
                compute_ns=int(compute_ms * ns),
                batch_compute_ns=int(compute_ms * ns),
            ),
        )

    figures = {
        "rtmo": stage(100, 0, 100),
        "preprocess": stage(12, 2, 10),
        "engine": stage(55, 5, 50),
        "postprocess": stage(33, 3, 30),
    }
    breakdown = ensemble_breakdown(figures)  # type: ignore[arg-type]
    assert breakdown["preprocess_share"] == pytest.approx(0.10)
    assert breakdown["engine_share"] == pytest.approx(0.50)
    assert breakdown["postprocess_share"] == pytest.approx(0.30)
    assert breakdown["queue_share"] == pytest.approx(0.10)
    assert breakdown["other_ms"] == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(KeyError, match="postprocess"):
        ensemble_breakdown({"rtmo": figures["rtmo"], "preprocess": figures["preprocess"], "engine": figures["engine"]})  # type: ignore[dict-item]


def test_closed_loop_counts_failures_apart_and_keeps_concurrency() -> None:
    active, peak, lock = [0], [0], threading.Lock()

    def make(thread: int):  # noqa: ANN202 - a Caller factory
        def call(i: int) -> int:
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            threading.Event().wait(0.005)
            with lock:
                active[0] -= 1
            if i % 3 == 0 and i > 0:
                raise ValueError("bad image")
            return 2

        return call

    result = run_closed_loop(make, concurrency=3, duration_s=0.3)
    assert result.requests > 0 and result.failures > 0
    assert result.images == 2 * result.requests
    assert result.first_error == "ValueError: bad image"
    assert peak[0] == 3
    with pytest.raises(RuntimeError, match="thread 0: OSError: no server"):
        run_closed_loop(lambda t: (_ for _ in ()).throw(OSError("no server")), concurrency=1, duration_s=0.1)


@pytest.mark.integration
def test_bench_serving_reports_every_figure_against_the_shared_server(
    rtmo_server, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = rtmo_server.model_repository / "engine" / "1" / "model.onnx"
    assert (
        main(
            [
                "--url",
                rtmo_server.urls.grpc,
                "--onnx",
                str(onnx),
                "--threads",
                "1",
                "--duration-s",
                "1",
                "--rounds",
                "2",
                "--concurrency",
                "1",
                "2",
                "--sizes",
                "vga",
                "4k",
                "--size-concurrency",
                "1",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert any("rtmo/ORT" in line for line in lines[:-1])  # the table precedes the JSON
    assert report["server"]["size"] == "tiny" and report["server"]["input_size"] == 416 and report["threads"] == 1
    assert report["rounds"] == 2 and report["server"]["started_by_benchmark"] is False
    assert report["photos"] == 7 and report["people_per_image"] > 0  # the calibrated model finds people in every photo
    assert set(report["concurrency"]) == {"1", "2"}
    for c, row in report["concurrency"].items():
        for kind in ("raw_ort", "engine", "ensemble"):
            figures = row[kind]
            assert figures["concurrency"] == int(c) and figures["failures"] == 0
            assert figures["images"] > 0 and figures["images_per_s"] > 0
            assert 0 < figures["p50_ms"] <= figures["p99_ms"]
        assert row["ensemble_over_raw_ort"] == pytest.approx(
            row["ensemble"]["images_per_s"] / row["raw_ort"]["images_per_s"], rel=1e-2
        )
        breakdown = row["ensemble"]["breakdown"]
        for stage in ("preprocess", "engine", "postprocess"):
            assert breakdown[f"{stage}_ms_per_image"] > 0 and 0 < breakdown[f"{stage}_share"] < 1
            # Triton saw at least the requests the client counted (plus each thread's untimed first call).
            assert row["ensemble"]["server"][stage]["images"] >= row["ensemble"]["images"]
        assert row["engine"]["server"]["images"] >= row["engine"]["images"]
    sizes = report["image_sizes"]
    assert list(sizes) == ["vga", "4k"]
    assert (
        sizes["4k"]["jpeg_kib"] > sizes["vga"]["jpeg_kib"]
        and sizes["4k"]["width"] * sizes["4k"]["height"] == 3840 * 2160
    )
    for row in sizes.values():
        assert row["failures"] == 0 and row["images_per_s"] > 0 and row["breakdown"]["preprocess_ms_per_image"] > 0
    assert report["min_ensemble_over_raw_ort"] == min(
        row["ensemble_over_raw_ort"] for row in report["concurrency"].values()
    )
    assert report["meets_target"] == (report["min_ensemble_over_raw_ort"] >= report["target_ratio"])


@pytest.mark.integration
def test_bench_serving_soak_samples_server_memory(rtmo_server, capsys: pytest.CaptureFixture[str]) -> None:
    onnx = rtmo_server.model_repository / "engine" / "1" / "model.onnx"
    assert (
        main(
            [
                "--url",
                rtmo_server.urls.grpc,
                "--onnx",
                str(onnx),
                "--server-pid",
                str(rtmo_server.pid),
                "--soak",
                "0.05",
                "--soak-interval-s",
                "0.5",
                "--soak-warmup-s",
                "1",
                "--concurrency",
                "2",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    soak = report["soak"]
    assert "concurrency" not in report and soak["concurrency"] == 2 and soak["failures"] == 0 and soak["images"] > 0
    memory = soak["memory"]
    assert memory["pid"] == rtmo_server.pid and memory["samples"] == len(memory["series_mib"]) >= 5
    assert (
        0 < memory["rss_idle_mib"]
        and 0 < memory["rss_start_mib"] <= memory["rss_max_mib"]
        and memory["rss_end_mib"] <= memory["rss_max_mib"]
    )
    assert memory["growth_mib"] == pytest.approx(memory["rss_end_mib"] - memory["rss_start_mib"], abs=0.11)
    seconds = [s for s, _ in memory["series_mib"]]
    # growth is measured from the first sample after the 1 s warm-up, not from the idle server
    assert memory["rss_start_mib"] == next(m for s, m in memory["series_mib"] if s >= 1.0)
    assert seconds == sorted(seconds) and seconds[-1] >= 3.0 - 0.1
    # The server's memory includes its Python backend stubs, which run as separate processes in its group.
    assert group_rss_bytes(rtmo_server.pid) > process_rss_bytes(rtmo_server.pid) > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "127.0.0.1:1", "--soak", "1"], "--soak with --url needs --server-pid"),
        (["--onnx", "model.onnx"], "--onnx and --server-pid only apply with --url"),
        (["--concurrency", "0"], "0 is not positive"),
    ],
)
def test_bench_serving_refuses_inconsistent_options_before_starting_anything(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
