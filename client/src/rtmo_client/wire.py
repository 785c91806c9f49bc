"""The wire format, public: request building, response decoding, metadata parsing and the retry policy, no I/O.

:mod:`rtmo_client._base` calls them from the operations both clients run; tools that drive ``tritonclient``
themselves (the SDK benchmark) use them to build and read the same tensors. Names come from ``rtmo_contract``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient

from rtmo_client.errors import InvalidInputError, ServerError
from rtmo_client.images import EncodedImage, Frame, Payload
from rtmo_client.results import ModelInfo, Person, PoseResult, ServerInfo
from rtmo_contract import FRAME_INPUT, FRAME_MODEL, IMAGE_INPUT, IMAGE_MODEL


class InferResultLike(Protocol):
    """What the clients read from a response (``tritonclient.grpc.InferResult`` or a test fake)."""

    def as_numpy(self, name: str) -> npt.NDArray[Any] | None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff, for UNAVAILABLE and NOT_FOUND on idempotent calls only.

    Attributes:
        max_retries: Further attempts after the first one (0 = never retry).
        initial_backoff_s: Wait before the first retry.
        max_backoff_s: Longest wait between two attempts.
        multiplier: Growth of the wait per retry.
        jitter: Wait a random 50-100 % of the computed backoff, so many clients do not retry in lockstep.
    """

    max_retries: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries={self.max_retries}; accepted: an integer >= 0")
        if self.initial_backoff_s < 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(
                f"initial_backoff_s={self.initial_backoff_s}, max_backoff_s={self.max_backoff_s}; "
                "accepted: 0 <= initial_backoff_s <= max_backoff_s"
            )
        if self.multiplier < 1:
            raise ValueError(f"multiplier={self.multiplier}; accepted: >= 1")

    def backoff_s(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        delay = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**retry)
        return delay * random.uniform(0.5, 1.0) if self.jitter else delay


def retry_policy(retries: int | RetryPolicy) -> RetryPolicy:
    """``retries`` as a policy: an int is the number of retries with the default backoff."""
    if isinstance(retries, RetryPolicy):
        return retries
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise TypeError(f"retries={retries!r}; accepted: an int >= 0 or a RetryPolicy")
    return RetryPolicy(max_retries=retries)


def request_parameters(
    *,
    score_threshold: float | None,
    nms_iou_threshold: float | None,
    max_people: int | None,
    pose_nms: bool | None,
) -> dict[str, Any] | None:
    """Triton request parameters for the given options; None ones are left to the server's defaults.

    Values are sent as given: the server checks ranges and answers INVALID_ARGUMENT naming the parameter.
    """
    given = {
        "score_threshold": score_threshold,
        "nms_iou_threshold": nms_iou_threshold,
        "max_people": max_people,
        "pose_nms": pose_nms,
    }
    parameters = {name: value for name, value in given.items() if value is not None}
    return parameters or None


def model_for(payloads: Sequence[Payload]) -> str:
    """The ensemble a batch goes to; every row must be of one kind and frames must share their size.

    Raises:
        InvalidInputError: an empty batch, encoded images mixed with frames, or frames of different sizes.
    """
    if not payloads:
        raise InvalidInputError("images: empty; give at least one image")
    kinds = {type(payload) for payload in payloads}
    if len(kinds) > 1:
        raise InvalidInputError(
            "images: encoded images (paths, bytes) and numpy frames cannot share one request; send them separately"
        )
    if isinstance(payloads[0], EncodedImage):
        return IMAGE_MODEL
    shapes = {payload.array.shape for payload in payloads if isinstance(payload, Frame)}
    if len(shapes) > 1:
        raise InvalidInputError(
            f"images: frames of one request must share their shape, got {sorted(shapes)}; send them separately"
        )
    return FRAME_MODEL


def image_input(payloads: Sequence[EncodedImage]) -> grpcclient.InferInput:
    """The ``image`` BYTES ``[B, 1]`` input of the ``rtmo`` model."""
    tensor = grpcclient.InferInput(IMAGE_INPUT.name, [len(payloads), 1], "BYTES")
    rows = np.empty((len(payloads), 1), dtype=np.object_)
    for row, payload in enumerate(payloads):
        rows[row, 0] = payload.data
    tensor.set_data_from_numpy(rows)
    return tensor


def frames_array(payloads: Sequence[Frame]) -> npt.NDArray[np.uint8]:
    """The ``[B, H, W, 3]`` UINT8 batch of the ``rtmo_frames`` model's ``frame`` input."""
    if len(payloads) == 1:
        return payloads[0].array[None]
    return np.stack([payload.array for payload in payloads])


def frame_input(payloads: Sequence[Frame]) -> grpcclient.InferInput:
    """The ``frame`` UINT8 ``[B, H, W, 3]`` input of the ``rtmo_frames`` model, sent in the request body."""
    batch = frames_array(payloads)
    tensor = grpcclient.InferInput(FRAME_INPUT.name, list(batch.shape), FRAME_INPUT.data_type)
    tensor.set_data_from_numpy(batch)
    return tensor


def inputs_for(model: str, payloads: Sequence[Payload]) -> list[grpcclient.InferInput]:
    """The inputs of one request for ``payloads``, bound for ``model`` (what :func:`model_for` chose)."""
    if model == IMAGE_MODEL:
        return [image_input([p for p in payloads if isinstance(p, EncodedImage)])]
    return [frame_input([p for p in payloads if isinstance(p, Frame)])]


def build_inputs(payloads: Sequence[Payload]) -> tuple[str, list[grpcclient.InferInput]]:
    """Model name and inputs of one request for ``payloads`` (see :func:`model_for`)."""
    model = model_for(payloads)
    return model, inputs_for(model, payloads)


def _output(result: InferResultLike, name: str, rows: int) -> npt.NDArray[Any]:
    array = result.as_numpy(name)
    if array is None or array.shape[:1] != (rows,):
        shape = None if array is None else tuple(array.shape)
        raise ServerError(
            f"the server's response has output {name!r} of shape {shape}; expected {rows} rows. "
            "Is this an rtmo ensemble?"
        )
    return array


def keypoint_names_for(info: ModelInfo | None, count: int) -> tuple[str, ...]:
    """The model's keypoint names, or ``keypoint_<i>`` when the server did not give ``count`` of them."""
    if info is not None and len(info.keypoint_names) == count:
        return info.keypoint_names
    return tuple(f"keypoint_{index}" for index in range(count))


def decode_result(result: InferResultLike, payloads: Sequence[Payload], info: ModelInfo | None) -> list[PoseResult]:
    """One :class:`PoseResult` per row of a response, in request order.

    Raises:
        ServerError: the response lacks an output or has the wrong number of rows.
    """
    rows = len(payloads)
    boxes = _output(result, "boxes", rows)
    box_scores = _output(result, "box_scores", rows)
    keypoints = _output(result, "keypoints", rows)
    keypoint_scores = _output(result, "keypoint_scores", rows)
    num_people = _output(result, "num_people", rows).reshape(rows)
    truncated = _output(result, "truncated", rows).reshape(rows)
    # A server older than the image_size output leaves it out: the size is then unknown rather than guessed here.
    sizes = result.as_numpy("image_size")
    names = keypoint_names_for(info, int(keypoints.shape[2]) if keypoints.ndim == 4 else 0)
    results = []
    for row in range(rows):
        n = int(num_people[row])
        # tolist() converts a row at once: per-element float() dominated the client's time with many people.
        people = [
            Person(
                box=(b[0], b[1], b[2], b[3]),
                score=score,
                keypoints=points,
                keypoint_scores=point_scores,
                keypoint_names=names,
            )
            for b, score, points, point_scores in zip(
                boxes[row, :n].tolist(), box_scores[row, :n].tolist(), keypoints[row, :n], keypoint_scores[row, :n]
            )
        ]
        size = None if sizes is None else (int(sizes[row][0]), int(sizes[row][1]))
        results.append(PoseResult(people=people, image_size=size, truncated=bool(truncated[row])))
    return results


def _parameter(parameters: Mapping[str, Any], key: str) -> str | None:
    value = parameters.get(key)
    if isinstance(value, Mapping):
        value = value.get("string_value")
    return None if value is None else str(value)


def parse_model_info(config: Mapping[str, Any]) -> ModelInfo:
    """A :class:`ModelInfo` from ``get_model_config(name, as_json=True)``.

    Raises:
        ServerError: the ``keypoint_names`` or ``skeleton`` parameter is not the JSON the rtmo assembly writes.
    """
    body = config.get("config", config)
    raw = body.get("parameters", {}) or {}
    parameters = {key: text for key in raw if (text := _parameter(raw, key)) is not None}
    name = str(body.get("name", ""))
    try:
        names = tuple(str(n) for n in json.loads(parameters.get("keypoint_names", "[]")))
        skeleton = tuple((int(a), int(b)) for a, b in json.loads(parameters.get("skeleton", "[]")))
    except (ValueError, TypeError) as error:
        raise ServerError(
            f"model {name!r}: keypoint_names/skeleton parameters are not the expected JSON lists ({error})"
        ) from None
    input_size = parameters.get("input_size")
    return ModelInfo(
        name=name,
        keypoint_names=names,
        skeleton=skeleton,
        input_size=int(input_size) if input_size and input_size.isdigit() else None,
        max_batch_size=int(body.get("max_batch_size", 0) or 0),
        checkpoint=parameters.get("checkpoint"),
        checkpoint_sha256=parameters.get("checkpoint_sha256"),
        parameters=parameters,
    )


def parse_server_info(metadata: Mapping[str, Any]) -> ServerInfo:
    """A :class:`ServerInfo` from ``get_server_metadata(as_json=True)``."""
    return ServerInfo(
        name=str(metadata.get("name", "")),
        version=str(metadata.get("version", "")),
        extensions=tuple(str(e) for e in metadata.get("extensions", ())),
    )
