"""System shared memory for raw frames: the client writes a batch into ``/dev/shm`` and sends only its name.

Only useful when client and server share a host. One region per request in flight; a region too small for a batch
is replaced by a larger one. Registration with the server is I/O, so the clients do it; this module only keeps the
regions.

Regions are POSIX shared memory made with the standard library's ``multiprocessing.shared_memory`` (what
Triton's ``register_system_shared_memory`` opens by key). ``tritonclient.utils.shared_memory`` does the same
through a C helper, but in tritonclient 2.50 (which the server pins) it imports ``pkg_resources``, which
setuptools >= 81 no longer ships.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing import shared_memory

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient

from rtmo_client.errors import SharedMemoryError
from rtmo_client.images import Frame
from rtmo_contract import FRAME_INPUT

SERVER_FLAG_HINT = (
    "system shared memory needs the client and the server on one host sharing /dev/shm; "
    "Triton >= 2.69 also refuses client shared memory unless started with --allow-client-shm=true"
)
_MIN_REGION_BYTES = 1 << 20


@dataclass(eq=False)
class Region:
    """One mapped ``/dev/shm`` region; ``registered`` is whether the server currently knows it."""

    name: str
    key: str
    byte_size: int
    memory: shared_memory.SharedMemory = field(repr=False)
    registered: bool = False


class FramePool:
    """Shared memory regions for frame batches, lent to one request at a time; thread-safe."""

    def __init__(self) -> None:
        self._prefix = f"rtmo_client_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._free: list[Region] = []
        self._all: list[Region] = []
        self._lock = threading.Lock()
        self._count = 0

    def checkout(self, byte_size: int) -> tuple[Region, Region | None]:
        """A region of at least ``byte_size`` bytes, and a smaller one it replaces (to unregister and destroy) or None.

        Raises:
            SharedMemoryError: ``/dev/shm`` refused the new region.
        """
        with self._lock:
            fitting = [region for region in self._free if region.byte_size >= byte_size]
            if fitting:
                region = fitting[0]
                self._free.remove(region)
                return region, None
            stale = self._free.pop() if self._free else None
            if stale is not None:
                self._all.remove(stale)
            self._count += 1
            name = f"{self._prefix}_{self._count}"
        size = max(byte_size, _MIN_REGION_BYTES)
        try:
            memory = shared_memory.SharedMemory(name=name, create=True, size=size)
        except OSError as error:
            raise SharedMemoryError(f"cannot create a {size}-byte shared memory region /{name}: {error}") from None
        region = Region(name=name, key="/" + name, byte_size=size, memory=memory)
        with self._lock:
            self._all.append(region)
        return region, stale

    def release(self, region: Region) -> None:
        """Give ``region`` back for the next request."""
        with self._lock:
            if region in self._all:
                self._free.append(region)

    def mark_unregistered(self) -> None:
        """Forget the server's registrations (it may have restarted); each region registers again before use."""
        with self._lock:
            for region in self._all:
                region.registered = False

    def regions(self) -> list[Region]:
        """Every live region."""
        with self._lock:
            return list(self._all)

    def destroy(self, region: Region) -> None:
        """Unmap and unlink ``region`` (after the server has unregistered it)."""
        with self._lock:
            if region in self._all:
                self._all.remove(region)
            if region in self._free:
                self._free.remove(region)
        region.memory.close()
        region.memory.unlink()


def frame_input_in(region: Region, frames: Sequence[Frame]) -> grpcclient.InferInput:
    """Write a frame batch into ``region`` and return the ``frame`` input that points at it."""
    shape = (len(frames), *frames[0].array.shape)
    view: npt.NDArray[np.uint8] = np.ndarray(shape, dtype=np.uint8, buffer=region.memory.buf)
    for row, frame in enumerate(frames):
        view[row] = frame.array
    del view  # the region cannot be closed while a view of its buffer exists
    tensor = grpcclient.InferInput(FRAME_INPUT.name, list(shape), FRAME_INPUT.data_type)
    tensor.set_shared_memory(region.name, batch_bytes(frames))
    return tensor


def batch_bytes(frames: Sequence[Frame]) -> int:
    """Bytes a frame batch takes."""
    return sum(frame.array.nbytes for frame in frames)
