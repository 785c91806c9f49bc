"""The rtmo-client command with the fake transport in place of the network."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from fake_triton import KEYPOINT_NAMES, FakeResult, FakeTransport, Request, error, outputs_for

import rtmo_client
from rtmo_client.cli import _common, main

PHOTOS = Path(__file__).resolve().parents[2] / "data" / "photos"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTransport:
    transport = FakeTransport(handler=lambda request: FakeResult(outputs_for([2] * request.shape[0])))
    created: list[dict[str, object]] = []

    def client(url: str, **options: object) -> rtmo_client.Client:
        created.append({"url": url, **options})
        transports = [transport] * (1 if isinstance(url, str) else len(url))
        return rtmo_client.Client(url, transport=transports, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(_common, "Client", client)
    transport.created = created  # type: ignore[attr-defined]
    return transport


def test_predict_prints_json_lines_in_order_and_draws_into_out(
    fake: FakeTransport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = sorted(PHOTOS.glob("*.jpg"))[:3]
    status = main(
        [
            "predict",
            *map(str, photos),
            "--json",
            "--out",
            str(tmp_path / "drawn"),
            "--no-progress",
            "--url",
            "host:9",
            "--score-threshold",
            "0.3",
            "--header",
            "x-token=abc",
        ]
    )
    assert status == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in photos]
    assert [len(line["people"]) for line in lines] == [2, 2, 2]
    assert list(lines[0]["people"][0]["keypoints"]) == KEYPOINT_NAMES
    assert [request.parameters for request in fake.requests] == [{"score_threshold": 0.3}] * 3
    assert fake.created[0]["url"] == ["host:9"] and fake.created[0]["headers"] == {"x-token": "abc"}  # type: ignore[attr-defined]
    for photo in photos:
        drawn = cv2.imread(str(tmp_path / "drawn" / f"{photo.stem}.jpg"))
        assert drawn is not None and drawn.shape == cv2.imread(str(photo)).shape


def test_predict_expands_directories_and_prints_a_summary(
    fake: FakeTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(PHOTOS), "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(list(PHOTOS.glob("*.jpg"))) and out[0].endswith("2 people (best 0.90)")


def test_server_errors_exit_1_with_the_error_class_and_message(
    fake: FakeTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.handler = lambda request: (_ for _ in ()).throw(error("INVALID_ARGUMENT", "image: JPEG is truncated"))
    assert main(["predict", str(next(PHOTOS.glob("*.jpg"))), "--no-progress"]) == 1
    assert "InvalidInputError: image: JPEG is truncated" in capsys.readouterr().err
    assert main(["predict", "/no/such.jpg"]) == 1
    assert "/no/such.jpg: no such file or directory" in capsys.readouterr().err


def test_video_draws_every_frame_in_order(fake: FakeTransport, tmp_path: Path) -> None:
    source, out = tmp_path / "in.mp4", tmp_path / "out" / "drawn.mp4"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for index in range(6):
        writer.write(np.full((48, 64, 3), 40 * index, np.uint8))
    writer.release()

    def handler(request: Request) -> FakeResult:
        return FakeResult(outputs_for([1] * request.shape[0]))

    fake.handler = handler
    argv = ["video", str(source), "--out", str(out), "--no-progress", "--batch-size", "4", "--in-flight", "2"]
    assert main(argv) == 0
    assert [r.shape for r in fake.requests] == [[4, 48, 64, 3], [2, 48, 64, 3]]
    capture = cv2.VideoCapture(str(out))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    # Frame order survives: the background brightness grows frame by frame (corner far from the drawing).
    assert [round(float(f[47, 63].mean()) / 40) for f in frames] == list(range(6))


def test_info_prints_server_and_model_metadata(fake: FakeTransport, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "triton 2.51.0" in out and "random:tiny-calibrated" in out and "17: nose, left_eye" in out
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"]["keypoint_names"] == KEYPOINT_NAMES and data["server"]["version"] == "2.51.0"


def test_subcommands_are_registered_from_one_list() -> None:
    from rtmo_client.cli import SUBCOMMANDS, build_parser

    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert {"predict", "video", "info"} <= set(choices) and len(choices) == len(SUBCOMMANDS)
