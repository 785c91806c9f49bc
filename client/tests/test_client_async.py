"""AsyncClient against the fake transport: the same results as Client, bounded ordered streams, retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from fake_triton import FakeAsyncTransport, FakeResult, FakeTransport, Request, error, outputs_for

import rtmo_client
from rtmo_client import RetryPolicy

PHOTO = Path(__file__).resolve().parents[2] / "data" / "photos" / "000000196141.jpg"
NO_WAIT = RetryPolicy(max_retries=3, initial_backoff_s=0.0, max_backoff_s=0.0)


def make(
    fake: FakeAsyncTransport | None = None, **options: object
) -> tuple[rtmo_client.AsyncClient, FakeAsyncTransport]:
    fake = fake or FakeAsyncTransport()
    options.setdefault("retries", NO_WAIT)
    return rtmo_client.AsyncClient("fake:1", transport=fake, **options), fake  # type: ignore[arg-type]


def test_async_estimate_and_batch_equal_the_sync_client() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    sync = rtmo_client.Client("fake:1", transport=FakeTransport())
    expected = [sync.estimate(PHOTO), sync.estimate(frame, channels="rgb"), *sync.estimate_batch([PHOTO, PHOTO])]

    async def main() -> tuple[list[rtmo_client.PoseResult], FakeAsyncTransport]:
        async with make()[0] as client:
            got = [
                await client.estimate(PHOTO),
                await client.estimate(frame, channels="rgb"),
                *await client.estimate_batch([PHOTO, PHOTO]),
            ]
            return got, client._transports[0]  # type: ignore[return-value]

    got, fake = asyncio.run(main())
    assert [r.image_size for r in got] == [r.image_size for r in expected]
    for a, b in zip(got, expected):
        assert len(a) == len(b)
        for p, q in zip(a.people, b.people):
            assert p.box == q.box and p.score == q.score and p.keypoint_names == q.keypoint_names
            np.testing.assert_array_equal(p.keypoints, q.keypoints)
    np.testing.assert_array_equal(fake.sync.requests[1].array[0], frame[..., ::-1])
    assert fake.sync.closed


def test_async_stream_keeps_order_and_bounds_in_flight_with_an_async_source() -> None:
    pulled = []

    async def source() -> AsyncIterator[bytes]:
        for index in range(12):
            pulled.append(index)
            yield str(index).encode()

    def delay(request: Request) -> float:
        return 0.01 * ((5 * int(request.rows[0])) % 4)

    sync = FakeTransport(handler=lambda r: FakeResult(outputs_for([int(r.rows[0]) % 3])))
    fake = FakeAsyncTransport(sync, delay_s=delay)

    async def main() -> list[int]:
        client, _ = make(fake)
        counts = []
        async for result in client.stream(source(), max_in_flight=3):
            if not counts:
                assert len(pulled) <= 2 * 3 + 1
            counts.append(len(result))
        await client.aclose()
        return counts

    assert asyncio.run(main()) == [i % 3 for i in range(12)]
    assert fake.max_in_flight == 3


def test_async_retries_unavailable_and_maps_invalid_argument() -> None:
    async def main() -> None:
        client, fake = make()
        await client.model_info()
        fake.sync.failures = [error("UNAVAILABLE")]
        assert len(await client.estimate(PHOTO)) == 1
        fake.sync.failures = [error("INVALID_ARGUMENT", "image: empty (0 bytes)")]
        with pytest.raises(rtmo_client.InvalidInputError, match=r"^image: empty \(0 bytes\)$"):
            await client.estimate(b"")
        assert fake.sync.calls.count("infer") == 3

    asyncio.run(main())


def test_async_wait_until_ready_and_shared_memory() -> None:
    async def main() -> None:
        fake = FakeAsyncTransport(FakeTransport(ready_answers=[error("UNAVAILABLE"), True]))
        client, _ = make(fake, shared_memory=True)
        await client.wait_until_ready(5)
        frame = np.full((5, 7, 3), 3, np.uint8)
        await client.estimate(frame, channels="bgr")
        (request,) = fake.sync.requests
        assert request.shm_region is not None
        np.testing.assert_array_equal(request.array[0], frame)
        await client.close()
        assert fake.sync.registered == {}

    asyncio.run(main())
