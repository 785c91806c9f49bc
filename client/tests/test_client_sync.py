"""Client against a fake transport: requests built, responses decoded, errors mapped, retries, streaming, shm."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fake_triton import KEYPOINT_NAMES, FakeResult, FakeTransport, Request, error, outputs_for

import rtmo_client
from rtmo_client import RetryPolicy

PHOTO = Path(__file__).resolve().parents[2] / "data" / "photos" / "000000196141.jpg"
NO_WAIT = RetryPolicy(max_retries=3, initial_backoff_s=0.0, max_backoff_s=0.0)


def make(fake: FakeTransport | None = None, **options: object) -> tuple[rtmo_client.Client, FakeTransport]:
    fake = fake or FakeTransport()
    options.setdefault("retries", NO_WAIT)
    return rtmo_client.Client("fake:1", transport=fake, **options), fake  # type: ignore[arg-type]


def frame(height: int = 4, width: int = 6, value: int = 0) -> np.ndarray:
    array = np.zeros((height, width, 3), np.uint8)
    array[..., 0], array[..., 1], array[..., 2] = value, value + 1, value + 2
    return array


def test_estimate_sends_the_file_bytes_to_rtmo_and_decodes_people_with_server_keypoint_names() -> None:
    client, fake = make()
    result = client.estimate(PHOTO)
    (request,) = fake.requests
    assert (request.model, request.input_name, request.datatype, request.shape) == ("rtmo", "image", "BYTES", [1, 1])
    assert request.rows == [PHOTO.read_bytes()]
    assert request.parameters is None and request.client_timeout == 30.0
    assert result.image_size == (640, 429) and not result.truncated
    (person,) = result.people
    expected = outputs_for([1])
    np.testing.assert_array_equal(person.keypoints, expected["keypoints"][0, 0])
    np.testing.assert_array_equal(person.keypoint_scores, expected["keypoint_scores"][0, 0])
    assert person.box == tuple(float(v) for v in expected["boxes"][0, 0])
    assert person.score == pytest.approx(0.9)
    wrist = KEYPOINT_NAMES.index("left_wrist")
    wrist_score = pytest.approx(float(expected["keypoint_scores"][0, 0, wrist]))
    assert person["left_wrist"] == (float(wrist), float(2 * wrist), wrist_score)
    assert list(person.named()) == KEYPOINT_NAMES
    assert "get_model_config:rtmo" in fake.calls


def test_estimate_sends_only_given_parameters_with_per_call_timeout_and_headers() -> None:
    client, fake = make(headers={"authorization": "Bearer t"})
    client.estimate(PHOTO.read_bytes(), score_threshold=0.3, max_people=2, pose_nms=True, timeout_s=1.5)
    (request,) = fake.requests
    assert request.parameters == {"score_threshold": 0.3, "max_people": 2, "pose_nms": True}
    assert request.client_timeout == 1.5
    assert request.headers == {"authorization": "Bearer t"}


def test_frames_go_to_rtmo_frames_and_rgb_frames_are_flipped_to_bgr() -> None:
    client, fake = make()
    bgr = frame(value=10)
    client.estimate(bgr, channels="bgr")
    client.estimate(bgr[..., ::-1], channels="rgb")
    first, second = fake.requests
    assert (first.model, first.input_name, first.datatype) == ("rtmo_frames", "frame", "UINT8")
    assert first.shape == [1, 4, 6, 3]
    np.testing.assert_array_equal(first.array[0], bgr)
    np.testing.assert_array_equal(second.array[0], bgr)


def test_a_frame_without_channels_is_refused_before_sending() -> None:
    client, fake = make()
    with pytest.raises(rtmo_client.InvalidInputError, match="channels='bgr'"):
        client.estimate(frame())
    assert fake.requests == []


def test_estimate_batch_is_one_request_with_one_result_per_row_in_order() -> None:
    client, fake = make()
    results = client.estimate_batch([PHOTO, PHOTO.read_bytes(), PHOTO])
    assert len(fake.requests) == 1 and fake.requests[0].shape == [3, 1]
    assert [len(r) for r in results] == [1, 2, 3]  # the fake gives row r r + 1 people
    assert results[2].people[2].box[0] == pytest.approx(220.0)  # row 2, person 2


def test_estimate_batch_refuses_mixed_kinds_and_frame_sizes_naming_the_problem() -> None:
    client, fake = make()
    with pytest.raises(rtmo_client.InvalidInputError, match="cannot share one request"):
        client.estimate_batch([PHOTO, frame()], channels="bgr")
    with pytest.raises(rtmo_client.InvalidInputError, match="must share their shape"):
        client.estimate_batch([frame(4, 6), frame(5, 6)], channels="bgr")
    with pytest.raises(rtmo_client.InvalidInputError, match=r"images\[1\]: got int"):
        client.estimate_batch([PHOTO, 3])  # type: ignore[list-item]
    assert fake.requests == []


def test_truncated_rows_and_padding_are_decoded_per_row() -> None:
    fake = FakeTransport(handler=lambda request: FakeResult(outputs_for([0, 2], truncated=[False, True])))
    client, _ = make(fake)
    empty, two = client.estimate_batch([PHOTO, PHOTO])
    assert (len(empty), empty.truncated, len(two), two.truncated) == (0, False, 2, True)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("INVALID_ARGUMENT", rtmo_client.InvalidInputError),
        ("INTERNAL", rtmo_client.ServerError),
        ("DEADLINE_EXCEEDED", rtmo_client.DeadlineExceededError),
    ],
)
def test_non_transient_errors_are_raised_at_once_as_their_subclass_with_the_message_intact(
    status: str, kind: type
) -> None:
    message = "in ensemble 'rtmo', parameter score_threshold: got 2.0; accepted: 0 <= value < 1"
    client, fake = make()
    client.model_info()
    fake.failures = [error(status, message)]
    with pytest.raises(kind) as raised:
        client.estimate(PHOTO)
    assert raised.value.message == message and raised.value.status == status
    assert fake.calls.count("infer") == 1


def test_unavailable_is_retried_with_backoff_until_it_succeeds() -> None:
    client, fake = make()
    client.model_info()
    fake.failures = [error("UNAVAILABLE"), error("UNAVAILABLE")]
    assert len(client.estimate(PHOTO)) == 1
    assert fake.calls.count("infer") == 3


def test_not_found_of_a_model_being_reloaded_is_retried_like_unavailable() -> None:
    client, fake = make()
    client.model_info()
    reloading = "Request for unknown model: 'engine' has no available versions"
    fake.failures = [error("NOT_FOUND", reloading), error("NOT_FOUND", reloading)]
    assert len(client.estimate(PHOTO)) == 1
    assert fake.calls.count("infer") == 3


def test_not_found_beyond_the_retry_budget_raises_model_not_ready_error_with_the_message() -> None:
    client, fake = make(retries=RetryPolicy(max_retries=1, initial_backoff_s=0.0, max_backoff_s=0.0))
    client.model_info()
    fake.failures = [error("NOT_FOUND", "has no available versions")] * 3
    with pytest.raises(rtmo_client.ModelNotReadyError, match="has no available versions") as raised:
        client.estimate(PHOTO)
    assert raised.value.status == "NOT_FOUND" and fake.calls.count("infer") == 2


def test_unavailable_beyond_the_retry_budget_raises_unavailable_error() -> None:
    client, fake = make(retries=RetryPolicy(max_retries=1, initial_backoff_s=0.0, max_backoff_s=0.0))
    client.model_info()
    fake.failures = [error("UNAVAILABLE", "connection refused")] * 3
    with pytest.raises(rtmo_client.UnavailableError, match="connection refused"):
        client.estimate(PHOTO)
    assert fake.calls.count("infer") == 2


def test_unavailable_during_registration_retries_the_whole_request_then_raises() -> None:
    fake = FakeTransport(register_error=error("UNAVAILABLE"))
    retries = RetryPolicy(max_retries=2, initial_backoff_s=0.0, max_backoff_s=0.0)
    client, _ = make(fake, shared_memory=True, retries=retries)
    with pytest.raises(rtmo_client.UnavailableError):
        client.estimate(frame(), channels="bgr")
    assert len([call for call in fake.calls if call.startswith("register:")]) == 3
    assert "infer" not in fake.calls
    client.close()


def test_retry_policy_backoff_grows_to_its_cap_and_validates() -> None:
    policy = RetryPolicy(max_retries=5, initial_backoff_s=0.1, max_backoff_s=0.5, multiplier=2.0, jitter=False)
    assert [policy.backoff_s(i) for i in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    jittered = RetryPolicy(initial_backoff_s=0.4, max_backoff_s=0.4)
    assert all(0.2 <= jittered.backoff_s(0) <= 0.4 for _ in range(50))
    with pytest.raises(ValueError, match="max_retries=-1"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(TypeError, match="retries"):
        rtmo_client.Client("fake:1", transport=FakeTransport(), retries=1.5)  # type: ignore[arg-type]


def test_model_and_server_info_come_from_the_server() -> None:
    client, _ = make()
    info = client.model_info()
    assert info.keypoint_names == tuple(KEYPOINT_NAMES) and info.skeleton[:2] == ((15, 13), (13, 11))
    assert (info.input_size, info.max_batch_size) == (416, 8)
    assert (info.checkpoint, info.checkpoint_sha256) == ("random:tiny-calibrated", "random")
    assert client.server_info().version == "2.51.0"


def test_unexpected_keypoint_count_falls_back_to_indexed_names() -> None:
    fake = FakeTransport()
    fake.get_model_config = lambda model_name, **kw: {"config": {"name": model_name, "parameters": {}}}  # type: ignore[method-assign]
    client, _ = make(fake)
    person = client.estimate(PHOTO).people[0]
    assert person.keypoint_names[0] == "keypoint_0"
    with pytest.raises(KeyError, match="no keypoint 'nose'"):
        person["nose"]


def test_wait_until_ready_polls_through_unavailable_and_not_ready() -> None:
    fake = FakeTransport(ready_answers=[error("UNAVAILABLE"), False, True])
    client, _ = make(fake)
    client.wait_until_ready(5)
    assert fake.calls[:3] == ["is_server_ready"] * 3
    assert {"is_model_ready:rtmo", "is_model_ready:rtmo_frames"} <= set(fake.calls)


def test_wait_until_ready_raises_unavailable_or_not_ready_at_the_deadline() -> None:
    client, _ = make(FakeTransport(ready_answers=[error("UNAVAILABLE", "refused")] * 100))
    with pytest.raises(rtmo_client.UnavailableError, match="refused"):
        client.wait_until_ready(0.2)
    client, _ = make(FakeTransport(ready_answers=[False] * 100))
    start = time.monotonic()
    with pytest.raises(rtmo_client.ModelNotReadyError, match="server not ready"):
        client.wait_until_ready(0.2)
    assert time.monotonic() - start < 2


def test_stream_keeps_input_order_bounds_requests_in_flight_and_reads_lazily() -> None:
    lock = threading.Lock()
    state = {"in_flight": 0, "peak": 0, "pulled": 0}

    def slow_handler(request: Request) -> FakeResult:
        index = int(request.rows[0].decode())
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
        time.sleep(0.02 * ((7 * index) % 5))  # out-of-order completion
        with lock:
            state["in_flight"] -= 1
        return FakeResult(outputs_for([index % 4]))

    def source() -> object:
        for index in range(20):
            state["pulled"] += 1
            yield str(index).encode()

    client, _ = make(FakeTransport(handler=slow_handler))
    results = client.stream(source(), max_in_flight=3)
    first = next(results)
    assert state["pulled"] <= 2 * 3 + 1  # back-pressure: at most 6 held (3 unanswered), plus the one waiting for room
    counts = [len(first)] + [len(r) for r in results]
    assert counts == [i % 4 for i in range(20)]
    assert state["peak"] <= 3


def test_stream_batches_consecutive_compatible_images_only() -> None:
    client, fake = make()
    images = [frame(4, 6), frame(4, 6), frame(4, 6), frame(5, 6), PHOTO, PHOTO]
    results = list(client.stream(images, channels="bgr", batch_size=2, max_in_flight=1))
    assert [r.shape for r in fake.requests] == [[2, 4, 6, 3], [1, 4, 6, 3], [1, 5, 6, 3], [2, 1]]
    assert [r.image_size for r in results] == [(6, 4)] * 3 + [(6, 5)] + [(640, 429)] * 2


def test_stream_raises_at_the_failing_image_after_earlier_results() -> None:
    def handler(request: Request) -> FakeResult:
        if request.rows[0] == b"bad":
            raise error("INVALID_ARGUMENT", "images[2]: not a supported image")
        return FakeResult(outputs_for([1]))

    client, _ = make(FakeTransport(handler=handler))
    seen = []
    with pytest.raises(rtmo_client.InvalidInputError, match="not a supported image"):
        for result in client.stream([b"a", b"b", b"bad", b"c"], max_in_flight=2):
            seen.append(result)
    assert len(seen) == 2


def test_stream_refuses_bad_options_before_iterating() -> None:
    client, _ = make()
    with pytest.raises(ValueError, match="max_in_flight=0"):
        client.stream([PHOTO], max_in_flight=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        client.stream([PHOTO], batch_size=0)


def test_shared_memory_frames_reach_the_server_through_a_registered_region_removed_on_close() -> None:
    client, fake = make(shared_memory=True)
    small, large = frame(4, 6, value=7), np.full((700, 600, 3), 9, np.uint8)
    client.estimate(small, channels="bgr")
    client.estimate_batch([large, large], channels="bgr")  # needs a larger region than the first
    first, second = fake.requests
    assert first.shm_region is not None and second.shm_region is not None and first.shm_region != second.shm_region
    np.testing.assert_array_equal(first.array[0], small)
    np.testing.assert_array_equal(second.array, np.stack([large, large]))
    assert f"unregister:{first.shm_region}" in fake.calls  # the outgrown region went away
    key = fake.registered[second.shm_region][0]
    assert Path("/dev/shm" + key).exists()
    client.close()
    assert fake.registered == {} and not Path("/dev/shm" + key).exists() and fake.closed


def test_a_refused_registration_raises_shared_memory_error_naming_the_server_flag() -> None:
    fake = FakeTransport(register_error=error("INVALID_ARGUMENT", "client shared memory is not allowed"))
    client, _ = make(fake, shared_memory=True)
    with pytest.raises(rtmo_client.SharedMemoryError, match="not allowed.*--allow-client-shm=true"):
        client.estimate(frame(), channels="bgr")
    client.close()


def test_already_registered_region_is_used_after_an_unavailable_retry() -> None:
    fake = FakeTransport()
    client, _ = make(fake, shared_memory=True)
    client.estimate(frame(), channels="bgr")
    fake.failures = [error("UNAVAILABLE")]  # marks regions unregistered; the server still knows them
    fake.register_error = error("ALREADY_EXISTS", "already in manager")
    assert len(client.estimate(frame(), channels="bgr")) == 1
    client.close()


def test_closed_client_refuses_calls_and_close_is_idempotent() -> None:
    with make()[0] as client:
        client.estimate(PHOTO)
    client.close()
    with pytest.raises(rtmo_client.RTMOClientError, match="closed"):
        client.estimate(PHOTO)


def test_certificates_without_ssl_are_refused() -> None:
    with pytest.raises(ValueError, match="ssl=True"):
        rtmo_client.Client("fake:1", root_certificates=b"pem", transport=FakeTransport())


def test_a_slow_request_does_not_stall_the_others_up_to_twice_max_in_flight() -> None:
    started: list[int] = []
    started_while_head_ran: list[int] = []

    def handler(request: Request) -> FakeResult:
        index = int(request.rows[0].decode())
        started.append(index)
        if index == 0:
            time.sleep(0.3)
            started_while_head_ran.extend(started)
        return FakeResult(outputs_for([index % 3]))

    client, _ = make(FakeTransport(handler=handler))
    results = list(client.stream((str(i).encode() for i in range(10)), max_in_flight=2))
    assert [len(r) for r in results] == [i % 3 for i in range(10)]
    # Requests 1, 2, 3 ran in the second slot while 0 was slow, until 2 * max_in_flight results were held.
    assert sorted(started_while_head_ran) == [0, 1, 2, 3]
