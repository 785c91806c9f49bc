"""Integration: rtmo-client against real tritonservers serving the rtmo ensembles.

Most tests use the session's shared server (``rtmo_server``). One more server, started here on the same
assembled repository with TLS (a certificate made by ``openssl`` for the test), serves the TLS test and is then
killed and restarted under a client that must ride it out with retries.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from rtmo.serving.tritonserver import TritonServer
from rtmo_contract import PEOPLE
from rtmo_serving import PHOTOS, serve_repository

rtmo_client = pytest.importorskip("rtmo_client", reason="needs rtmo-client: pip install -e './client[cli]'")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc]")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.integration

NAMES = ["000000196141.jpg", "image29590.jpg", "103319.jpg"]
OUTPUTS = tuple(tensor.name for tensor in PEOPLE[:4])  # the per-person tensors


@pytest.fixture(scope="module")
def raw(rtmo_server: TritonServer) -> Iterator[Any]:
    with grpcclient.InferenceServerClient(rtmo_server.urls.grpc) as connection:
        yield connection


@pytest.fixture(scope="module")
def client(rtmo_server: TritonServer) -> Iterator[Any]:
    with rtmo_client.Client(rtmo_server.urls.grpc, timeout_s=60) as connection:
        connection.wait_until_ready(60)
        yield connection


def raw_infer(raw: Any, images: list[bytes] | np.ndarray, **parameters: Any) -> Any:
    if isinstance(images, np.ndarray):
        tensor = grpcclient.InferInput("frame", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)
        return raw.infer("rtmo_frames", [tensor], parameters=parameters or None)
    tensor = grpcclient.InferInput("image", [len(images), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data] for data in images], dtype=np.object_))
    return raw.infer("rtmo", [tensor], parameters=parameters or None)


def assert_equals_raw(result: Any, raw_result: Any, row: int = 0) -> None:
    """The SDK's people are exactly the server's tensors of that row (same server, same input)."""
    n = int(raw_result.as_numpy("num_people")[row, 0])
    assert len(result.people) == n and n > 0, "the calibrated model must find people, or the comparison proves nothing"
    np.testing.assert_array_equal(
        np.array([p.box for p in result.people], np.float32), raw_result.as_numpy("boxes")[row, :n]
    )
    np.testing.assert_array_equal(
        np.array([p.score for p in result.people], np.float32), raw_result.as_numpy("box_scores")[row, :n]
    )
    np.testing.assert_array_equal(
        np.stack([p.keypoints for p in result.people]), raw_result.as_numpy("keypoints")[row, :n]
    )
    np.testing.assert_array_equal(
        np.stack([p.keypoint_scores for p in result.people]), raw_result.as_numpy("keypoint_scores")[row, :n]
    )
    assert result.truncated == bool(raw_result.as_numpy("truncated")[row, 0])


@pytest.mark.parametrize("name", NAMES)
def test_estimate_equals_the_servers_raw_tensors(client: Any, raw: Any, name: str) -> None:
    path = PHOTOS / name
    expected = raw_infer(raw, [path.read_bytes()], score_threshold=0.2)
    result = client.estimate(path, score_threshold=0.2)
    assert_equals_raw(result, expected)
    height, width = cv2.imread(str(path)).shape[:2]
    assert result.image_size == (width, height)


def test_frames_and_shared_memory_frames_equal_the_servers_raw_tensors(
    client: Any, raw: Any, rtmo_server: TritonServer
) -> None:
    frame = cv2.imread(str(PHOTOS / NAMES[1]))
    expected = raw_infer(raw, frame[None])
    assert_equals_raw(client.estimate(frame, channels="bgr"), expected)
    assert_equals_raw(client.estimate(np.ascontiguousarray(frame[..., ::-1]), channels="rgb"), expected)
    with rtmo_client.Client(rtmo_server.urls.grpc, shared_memory=True) as shm_client:
        assert_equals_raw(shm_client.estimate(frame, channels="bgr"), expected)
        batch = shm_client.estimate_batch([frame, frame], channels="bgr")
        assert_equals_raw(batch[1], expected)
        regions = [region.key for region in shm_client._base.pool.regions()]
        assert regions and all(Path("/dev/shm" + key).exists() for key in regions)
    assert not any(Path("/dev/shm" + key).exists() for key in regions)


def test_estimate_batch_is_one_request_equal_to_the_raw_batch(client: Any, raw: Any) -> None:
    images = [(PHOTOS / name).read_bytes() for name in NAMES]
    expected = raw_infer(raw, images, max_people=3)
    results = client.estimate_batch(images, max_people=3)
    for row, result in enumerate(results):
        assert_equals_raw(result, expected, row)
        assert len(result) <= 3


def test_stream_and_async_client_give_the_same_results_as_estimate(client: Any, rtmo_server: TritonServer) -> None:
    paths = [PHOTOS / name for name in NAMES] * 2
    expected = [client.estimate(path) for path in paths]
    streamed = list(client.stream(paths, max_in_flight=3, batch_size=2))

    async def run_async() -> tuple[list[Any], list[Any]]:
        async with rtmo_client.AsyncClient(rtmo_server.urls.grpc) as async_client:
            await async_client.wait_until_ready(30)
            single = [await async_client.estimate(path) for path in paths[:3]]
            return single, [result async for result in async_client.stream(paths, max_in_flight=4)]

    single, async_streamed = asyncio.run(run_async())
    for got in (streamed, async_streamed, single):
        for result, reference in zip(got, expected):
            assert len(result) == len(reference) and result.image_size == reference.image_size
            np.testing.assert_array_equal(
                np.stack([p.keypoints for p in result]), np.stack([p.keypoints for p in reference])
            )


@pytest.mark.parametrize(
    ("image", "parameters", "message"),
    [
        (b"this is not an image", {}, "not a supported image"),
        ((PHOTOS / NAMES[0]).read_bytes()[:20000], {}, "JPEG is truncated"),
        ((PHOTOS / NAMES[0]).read_bytes(), {"score_threshold": 1.5}, "score_threshold: got 1.5"),
        ((PHOTOS / NAMES[0]).read_bytes(), {"max_people": 0}, "max_people: got 0"),
    ],
)
def test_bad_input_raises_invalid_input_error_with_the_servers_message_intact(
    client: Any, raw: Any, image: bytes, parameters: dict[str, Any], message: str
) -> None:
    with pytest.raises(InferenceServerException) as raw_error:
        raw_infer(raw, [image], **parameters)
    with pytest.raises(rtmo_client.InvalidInputError) as raised:
        client.estimate(image, **parameters)
    assert message in raised.value.message
    assert raised.value.message == raw_error.value.message() and raised.value.status == "INVALID_ARGUMENT"


def test_model_info_is_read_from_the_server_config(client: Any, raw: Any) -> None:
    parameters = raw.get_model_config("rtmo", as_json=True)["config"]["parameters"]
    info = client.model_info()
    assert list(info.keypoint_names) == json.loads(parameters["keypoint_names"]["string_value"])
    assert [list(link) for link in info.skeleton] == json.loads(parameters["skeleton"]["string_value"])
    assert info.input_size == int(parameters["input_size"]["string_value"]) and info.max_batch_size == 8
    assert client.estimate(PHOTOS / NAMES[0]).people[0].keypoint_names == info.keypoint_names
    with pytest.raises(rtmo_client.ModelNotReadyError):
        client.model_info("no_such_model")


def test_cli_predict_prints_the_sdk_results(
    rtmo_server: TritonServer, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtmo_client.cli import main

    paths = [PHOTOS / name for name in NAMES]
    assert main(["predict", *map(str, paths), "--json", "--no-progress", "--url", rtmo_server.urls.grpc]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(line["people"]) for line in lines] == [len(client.estimate(path)) for path in paths]


# -- a TLS server of our own, killed and restarted ----------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the TLS test makes its certificate with the openssl command, which is not on PATH")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "server.pem", directory / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_server(
    rtmo_server: TritonServer, certificate: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    cert, key = certificate
    tls_args = ["--grpc-use-ssl=true", f"--grpc-server-cert={cert}", f"--grpc-server-key={key}"]
    with serve_repository(
        rtmo_server.model_repository, tmp_path_factory.mktemp("tls-serving"), extra_args=tls_args
    ) as server:
        yield server
        server.stop(timeout_s=0.0)  # a graceful shutdown takes seconds and proves nothing here


def test_tls_client_talks_to_a_tls_server_and_plaintext_is_refused(
    tls_server: TritonServer, certificate: tuple[Path, Path], client: Any
) -> None:
    cert, _ = certificate
    photo = PHOTOS / NAMES[0]
    with rtmo_client.Client(tls_server.urls.grpc, ssl=True, root_certificates=cert) as tls_client:
        tls_client.wait_until_ready(30)
        assert tls_client.server_info().version
        result = tls_client.estimate(photo)
    np.testing.assert_array_equal(
        np.stack([p.keypoints for p in result]), np.stack([p.keypoints for p in client.estimate(photo)])
    )
    with (
        rtmo_client.Client(tls_server.urls.grpc, retries=0, timeout_s=5) as plain,
        pytest.raises(rtmo_client.UnavailableError),
    ):
        plain.estimate(photo)


class CountingTransport:
    """The real transport, counting inference attempts (so the test restarts the server only once they fail)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.attempts, self.failures = inner, 0, 0

    def infer(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        try:
            return self.inner.infer(*args, **kwargs)
        except InferenceServerException:
            self.failures += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_retries_survive_a_killed_and_restarted_server(
    tls_server: TritonServer, certificate: tuple[Path, Path], client: Any
) -> None:
    from rtmo_client.transport import grpc_transport, tls_credentials

    cert, _ = certificate
    photo = PHOTOS / NAMES[1]
    transport = CountingTransport(
        grpc_transport(tls_server.urls.grpc, credentials=tls_credentials(root_certificates=cert))
    )
    policy = rtmo_client.RetryPolicy(max_retries=200, initial_backoff_s=0.05, max_backoff_s=0.5)
    retrying = rtmo_client.Client(
        tls_server.urls.grpc, ssl=True, root_certificates=cert, retries=policy, timeout_s=30, transport=transport
    )
    retrying.model_info()  # keypoint names cached: only inference calls cross the outage
    tls_server.stop(timeout_s=0.0)  # SIGKILL: no graceful shutdown
    outcome: dict[str, Any] = {}

    def estimate() -> None:
        try:
            outcome["result"] = retrying.estimate(photo)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = error

    worker = threading.Thread(target=estimate)
    worker.start()
    try:
        for _ in range(600):  # poll until the client has seen the server gone, then restart it (from this thread:
            if transport.failures >= 2 or not worker.is_alive():  # the server dies with the thread that started it)
                break
            worker.join(0.01)
    finally:
        tls_server.start()
        tls_server.wait_until_ready(120)
    worker.join(120)
    retrying.close()
    assert "error" not in outcome, outcome.get("error")
    assert transport.failures >= 2 and transport.attempts == transport.failures + 1
    reference = client.estimate(photo)
    np.testing.assert_array_equal(
        np.stack([p.keypoints for p in outcome["result"]]), np.stack([p.keypoints for p in reference])
    )
