"""Load tests against the shared server: perf_analyzer with real photos, and headless Locust runs through the SDK."""

from __future__ import annotations

import base64
import csv
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LOADTEST = ROOT / "loadtest"
sys.path.insert(0, str(LOADTEST))

from perf_input_data import engine_input_data, ensemble_input_data  # noqa: E402
from run_perf_analyzer import parse_csv, sweep  # noqa: E402

from rtmo_bench.serving import letterboxed, load_photos  # noqa: E402

PHOTOS = ROOT / "data" / "photos"
PERF_CSV = """\
Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,\
Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,Avg latency,\
request/response,response wait,\
Avg GPU Utilization,Avg GPU Power Usage,Max GPU Memory Usage,Total GPU Memory
2,8.31353,73,2125,68591,153,159938,1561,8,225165,327730,336455,369938,232452,81,232293,,,,
"""


def test_ensemble_input_data_carries_each_photo_as_a_length_prefixed_bytes_element() -> None:
    photos = load_photos(PHOTOS)
    data = ensemble_input_data(photos)["data"]
    assert len(data) == len(photos)
    for entry, photo in zip(data, photos):
        assert entry["image"]["shape"] == [1]
        raw = base64.b64decode(entry["image"]["content"]["b64"])
        assert struct.unpack("<I", raw[:4])[0] == len(photo) and raw[4:] == photo
    with pytest.raises(ValueError, match="at least one"):
        ensemble_input_data([])


def test_engine_input_data_is_the_letterboxed_canvas_the_preprocessor_makes() -> None:
    photos = load_photos(PHOTOS)[:2]
    data = engine_input_data(photos, input_size=416)["data"]
    for entry, canvas in zip(data, letterboxed(photos, 416)):
        assert entry["images"]["shape"] == [416, 416, 3]
        decoded = np.frombuffer(base64.b64decode(entry["images"]["content"]["b64"]), np.uint8).reshape(416, 416, 3)
        np.testing.assert_array_equal(decoded, canvas[0])


def test_parse_csv_reads_numbers_and_leaves_empty_gpu_columns_none(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    path.write_text(PERF_CSV)
    (row,) = parse_csv(path)
    assert (
        row["Concurrency"] == 2 and row["Inferences/Second"] == pytest.approx(8.31353) and row["p99 latency"] == 369938
    )
    assert row["Avg GPU Utilization"] is None
    path.write_text("not,a perf_analyzer file\n")
    with pytest.raises(RuntimeError, match="no perf_analyzer results"):
        parse_csv(path)


@pytest.mark.integration
def test_perf_analyzer_sweeps_real_photos_over_grpc_for_the_ensemble_and_the_engine(
    rtmo_server, tmp_path: Path
) -> None:
    urls = rtmo_server.urls
    results = []
    for model, concurrency in (("rtmo", [1, 2]), ("engine", [1])):
        results += sweep(
            url=urls.grpc,
            models=[model],
            concurrency=concurrency,
            photos=load_photos(PHOTOS),
            out_dir=tmp_path,
            metrics_url=urls.metrics.removeprefix("http://"),
            measurement_request_count=4,
            stability_percentage=100.0,
            max_trials=8,
            timeout_s=120.0,
        )
    assert [(r["model"], r["concurrency"]) for r in results] == [("rtmo", 1), ("rtmo", 2), ("engine", 1)]
    for r in results:
        assert Path(r["csv"]).is_file()
        assert r["images_per_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"] and r["server_compute_infer_ms"] > 0
        # perf_analyzer sent real requests: Triton counted them, one image per request, none failed.
        server = r["server"][r["model"]]
        assert server["requests"] > 0 and server["images"] == server["requests"] and server["failures"] == 0
    for r in results[:2]:
        # keypoints: called by postprocess (BLS) for the people found, so it appears only when there are some.
        assert (
            {"rtmo", "preprocess", "engine", "postprocess"}
            <= set(r["server"])
            <= {"rtmo", "preprocess", "engine", "postprocess", "keypoints"}
        )
        # Every ensemble request went through each step (give or take one in flight when the statistics were read).
        assert all(
            abs(fig["requests"] - r["server"]["rtmo"]["requests"]) <= r["concurrency"] for fig in r["server"].values()
        ), r["server"]
    assert set(results[2]["server"]) == {"engine"}


def _locust(
    server_url: str, work: Path, user_class: str, *, users: int = 3, run_time_s: int = 6
) -> tuple[int, str, dict[str, dict[str, str]]]:
    prefix = work / user_class
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOADTEST / "locustfile.py"),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{run_time_s}s",
        "-H",
        server_url,
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--only-summary",
        "--photos",
        str(PHOTOS),
        user_class,
    ]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=run_time_s + 45, check=False)
    with open(f"{prefix}_stats.csv", newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    assert Path(f"{prefix}.html").stat().st_size > 0
    return done.returncode, done.stdout + done.stderr, rows


@pytest.mark.integration
def test_locust_headless_run_through_the_sdk_has_requests_and_no_failures(rtmo_server, tmp_path: Path) -> None:
    code, log, rows = _locust(rtmo_server.urls.grpc, tmp_path, "RTMOUser")
    assert code == 0, log[-3000:]
    assert int(rows["Aggregated"]["Request Count"]) > 0 and int(rows["Aggregated"]["Failure Count"]) == 0
    assert int(rows["estimate"]["Request Count"]) > 0
    # Locust's size column is people per request: the calibrated model finds people in every photo.
    assert float(rows["estimate"]["Average Content Size"]) > 0
    # gevent-enabled gRPC: the three users' calls were in flight at the same time (a blocking channel gives 1).
    assert "peak concurrent gRPC calls: 3" in log


@pytest.mark.integration
def test_locust_bad_images_in_the_mix_fail_only_their_own_requests(rtmo_server, tmp_path: Path) -> None:
    code, log, rows = _locust(rtmo_server.urls.grpc, tmp_path, "RTMOMixedInputUser")
    assert code == 1, log[-3000:]  # Locust exits 1 when any request failed
    bad = {name: row for name, row in rows.items() if name.startswith("bad:")}
    good = {name: row for name, row in rows.items() if name in ("estimate", "estimate_batch[4]")}
    assert bad and "estimate" in good
    for name, row in bad.items():
        assert int(row["Request Count"]) > 0 and row["Failure Count"] == row["Request Count"], name
    for name, row in good.items():
        assert int(row["Request Count"]) > 0 and int(row["Failure Count"]) == 0, name
    with open(tmp_path / "RTMOMixedInputUser_failures.csv", newline="") as handle:
        failures = list(csv.DictReader(handle))
    assert failures and all(f["Name"].startswith("bad:") and "InvalidInputError" in f["Error"] for f in failures)
