"""rtmo.runtime.triton: output packing and the per-request response loop, with a fake triton_python_backend_utils."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from fake_triton_backend import FakeError, FakeLogger, FakeRequest, FakeTensor
from rtmo.errors import InvalidInputError
from rtmo.runtime.postprocess import Poses
from rtmo.runtime.triton import pack_people
from rtmo_contract import PEOPLE

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")


def _poses(n: int, j: int = 3, value: float = 1.0) -> Poses:
    return Poses(
        np.full((n, 4), value, np.float32),
        np.full(n, value, np.float32),
        np.full((n, j, 2), value, np.float32),
        np.full((n, j), value, np.float32),
        truncated=n == 2,
    )


def test_pack_people_pads_rows_with_zeros_to_the_largest_count() -> None:
    sizes = np.array([[640, 480], [20, 10], [1, 1]], np.int32)
    packed = pack_people([_poses(2), _poses(0), _poses(1)], sizes, num_keypoints=3)
    assert set(packed) == {tensor.name for tensor in PEOPLE}
    np.testing.assert_array_equal(packed["image_size"], sizes)
    assert packed["keypoints"].shape == (3, 2, 3, 2)
    np.testing.assert_array_equal(packed["num_people"][:, 0], [2, 0, 1])
    np.testing.assert_array_equal(packed["truncated"][:, 0], [True, False, False])
    assert packed["box_scores"][2, 1] == 0 and packed["box_scores"][2, 0] == 1
    assert pack_people([_poses(0)], np.ones((1, 2), np.int32), num_keypoints=3)["boxes"].shape == (1, 0, 4)


def test_respond_each_answers_unexpected_failures_internal_without_details_and_logs_them(
    pb_utils: types.ModuleType,
) -> None:
    from rtmo.runtime.triton import respond_each

    def run(request: FakeRequest) -> list:
        if request.inputs.get("fail") == "bug":
            raise KeyError("secret internals")
        if request.inputs.get("fail") == "input":
            raise InvalidInputError("image: empty (0 bytes)")
        return [FakeTensor("out", np.ones(2))]

    FakeLogger.messages.clear()
    responses = respond_each(
        [FakeRequest({}), FakeRequest({"fail": "bug"}), FakeRequest({"fail": "input"}), FakeRequest({})],
        run,
        step="preprocess",
        pb_utils=pb_utils,
    )
    assert [r.error is None for r in responses] == [True, False, False, True]
    assert (
        responses[1].error.code == FakeError.INTERNAL
        and responses[1].error.message == "preprocess: internal error; see the server log"
    )
    assert responses[2].error.code == FakeError.INVALID_ARG and responses[2].error.message == "image: empty (0 bytes)"
    assert any("secret internals" in message for message in FakeLogger.messages)


_FREED_BLOCK_PROBE = """
import sys, numpy as np
from rtmo.runtime.triton import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def resident_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
block = np.ones(16 * 2**20, np.uint8)  # 16 MiB, above glibc's default mmap threshold (128 KiB)
before_free = resident_mib()
del block
print(before_free - resident_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt and /proc/self/statm are glibc/Linux")
def test_keep_freed_memory_keeps_a_freed_large_block_for_reuse() -> None:
    """Without it a 16 MiB array is its own mmap, returned to the kernel on free (and faulted in afresh by the next
    request); with it the block stays in the heap."""

    def released_mib(mode: str) -> float:
        probe = subprocess.run([sys.executable, "-c", _FREED_BLOCK_PROBE, mode], capture_output=True, text=True)
        assert probe.returncode == 0, probe.stderr
        return float(probe.stdout)

    assert released_mib("default") > 15
    assert released_mib("keep") < 1
