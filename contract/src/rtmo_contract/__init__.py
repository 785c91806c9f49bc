"""The contract between the RTMO Triton models and their clients, in one place.

Model names, tensor names, dtypes and shapes, request parameters (names, defaults, accepted ranges, validation)
and the error vocabulary. Pure Python with no dependencies, so the Triton stubs, the build stage (which generates
every ``config.pbtxt`` from it), the SDK and the tests all read the same definitions.

Shapes are per batch row; a string in a shape is a size fixed when the repository is assembled:
``S`` the network input side, ``K`` candidates per image (top-K), ``J`` keypoints, ``C`` pose-vector channels;
``-1`` varies per request (people, frame height and width).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "CANDIDATES",
    "CANDIDATE_PREFIX",
    "DECODER_INPUTS",
    "DECODER_OUTPUT",
    "ENGINE",
    "ENSEMBLES",
    "FRAME_INPUT",
    "FRAME_MODEL",
    "IMAGE_INPUT",
    "IMAGE_MODEL",
    "InvalidRequestError",
    "KEYPOINTS",
    "LETTERBOX",
    "LETTERBOXED_IMAGES",
    "MODELS",
    "PEOPLE",
    "POSTPROCESS",
    "PREPROCESS",
    "RENAMED_PARAMETERS",
    "RESERVED_PARAMETER_PREFIXES",
    "RequestParameters",
    "Status",
    "TRACKER",
    "TRACKS",
    "TRACK_MODEL",
    "Tensor",
    "TrackingParameters",
    "parse_parameters",
    "parse_tracking_parameters",
]

Dim = int | str

# -- models -----------------------------------------------------------------------------------------------------

IMAGE_MODEL = "rtmo"  # ensemble: encoded images in, people out
FRAME_MODEL = "rtmo_frames"  # ensemble: raw uint8 BGR frames in, people out
PREPROCESS = "preprocess"
ENGINE = "engine"
POSTPROCESS = "postprocess"
KEYPOINTS = "keypoints"  # the DCC keypoint decoder, called by postprocess on the people that survive NMS
TRACK_MODEL = "rtmo_track"  # ensemble: the frames of one video, one per request in a sequence; people with track ids
TRACKER = "tracker"  # sequence-batched: one tracker state per correlation id (per video)
# The stateless ensembles (what clients wait for by default; a server from before tracking has no TRACK_MODEL).
ENSEMBLES = (IMAGE_MODEL, FRAME_MODEL)
MODELS = (PREPROCESS, ENGINE, KEYPOINTS, POSTPROCESS, TRACKER, *ENSEMBLES, TRACK_MODEL)


# -- tensors ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tensor:
    """One named tensor of a model's signature.

    Attributes:
        name: the tensor's name in every config.pbtxt and on the wire.
        data_type: Triton's data type without the ``TYPE_`` prefix (``FP32``, ``UINT8``, ``STRING``, ...).
        dims: per-row shape; strings are assembly-time sizes (see the module docstring).
    """

    name: str
    data_type: str
    dims: tuple[Dim, ...]

    def resolve(self, sizes: Mapping[str, int]) -> list[int]:
        """``dims`` with the assembly-time sizes filled in."""
        return [int(sizes[dim]) if isinstance(dim, str) else dim for dim in self.dims]


IMAGE_INPUT = Tensor("image", "STRING", (1,))  # one encoded JPEG/PNG/BMP/WebP/TIFF per row
FRAME_INPUT = Tensor("frame", "UINT8", (-1, -1, 3))  # one BGR HxWx3 frame per row, one size per request

# Between the steps: the letterboxed network input and where each image sits in it.
LETTERBOXED_IMAGES = Tensor("images", "UINT8", ("S", "S", 3))
LETTERBOX = Tensor("letterbox", "FP32", (6,))  # cx, cy, sx, sy, input width, input height

# The engine's outputs, best score first; the postprocess step receives them as CANDIDATE_PREFIX + name.
CANDIDATES = (
    Tensor("scores", "FP32", ("K",)),
    Tensor("boxes", "FP32", ("K", 4)),  # xyxy, network-input pixels
    Tensor("keypoint_visibility", "FP32", ("K", "J")),
    Tensor("pose_vectors", "FP32", ("K", "C")),
    Tensor("priors", "FP32", ("K", 2)),  # the anchor point of each candidate
)
CANDIDATE_PREFIX = "candidate_"

# The keypoints model: one batch row per person (of any image and request).
DECODER_INPUTS = (
    Tensor("pose_vectors", "FP32", ("C",)),
    Tensor("boxes", "FP32", (4,)),  # xyxy, network-input pixels
    Tensor("priors", "FP32", (2,)),
)
DECODER_OUTPUT = Tensor("keypoints", "FP32", ("J", 2))  # x, y in network-input pixels

# What both ensembles return per image, zero-padded to the request's largest number of people.
PEOPLE = (
    Tensor("boxes", "FP32", (-1, 4)),  # xyxy, image pixels
    Tensor("box_scores", "FP32", (-1,)),
    Tensor("keypoints", "FP32", (-1, "J", 2)),  # x, y in image pixels
    Tensor("keypoint_scores", "FP32", (-1, "J")),
    Tensor("num_people", "INT32", (1,)),  # rows beyond it are padding
    Tensor("truncated", "BOOL", (1,)),  # every top-K candidate passed the threshold: people may be missing
    Tensor("image_size", "INT32", (2,)),  # width, height of the decoded image
)

# What the tracker adds to PEOPLE, one per person row; -1 for a person on no confirmed track (and for padding).
TRACKS = (
    Tensor("track_ids", "INT64", (-1,)),  # stable within a sequence, never reused in it
    Tensor("track_ages", "INT32", (-1,)),  # frames since the track started (0 on its first frame)
)


# -- request parameters -----------------------------------------------------------------------------------------


class InvalidRequestError(ValueError):
    """A request's input or parameter is unusable; the message names it, what was wrong and what is accepted."""


# Names used before the contract had one name per concept; a request with one is refused, naming the new one.
RENAMED_PARAMETERS = {"score_thr": "score_threshold", "nms_thr": "nms_iou_threshold"}
# Keys Triton or clients add to a request's parameters, ignored rather than refused.
RESERVED_PARAMETER_PREFIXES = ("triton_", "sequence_", "priority", "timeout", "headers")


@dataclass(frozen=True)
class RequestParameters:
    """What one request asks for (each field is a request parameter of the same name).

    Attributes:
        score_threshold: keep people whose box score is strictly above this; 0 <= value < 1.
        nms_iou_threshold: suppress boxes overlapping a better one by more IoU than this; 0 < value <= 1.
        max_people: at most this many people per image, best first; None keeps all.
        pose_nms: also run MMPose's nearby-joints pose NMS.
    """

    score_threshold: float = 0.1
    nms_iou_threshold: float = 0.65
    max_people: int | None = None
    pose_nms: bool = False

    def __post_init__(self) -> None:
        _finite("score_threshold", self.score_threshold)
        _finite("nms_iou_threshold", self.nms_iou_threshold)
        object.__setattr__(self, "score_threshold", float(self.score_threshold))
        object.__setattr__(self, "nms_iou_threshold", float(self.nms_iou_threshold))
        if not 0.0 <= self.score_threshold < 1.0:
            raise InvalidRequestError(
                f"parameter score_threshold: got {self.score_threshold}; accepted: 0 <= value < 1"
            )
        if not 0.0 < self.nms_iou_threshold <= 1.0:
            raise InvalidRequestError(
                f"parameter nms_iou_threshold: got {self.nms_iou_threshold}; accepted: 0 < value <= 1"
            )
        people = self.max_people
        if people is not None and (isinstance(people, bool) or not isinstance(people, int) or people < 1):
            raise InvalidRequestError(f"parameter max_people: got {people!r}; accepted: an integer >= 1")
        if not isinstance(self.pose_nms, bool):
            raise InvalidRequestError(f"parameter pose_nms: got {self.pose_nms!r}; accepted: true or false")


@dataclass(frozen=True)
class TrackingParameters:
    """How the ``tracker`` model associates people with tracks (each field is a request parameter of the same name).

    People scoring above ``score_threshold`` (see :class:`RequestParameters`) but not above ``track_high_threshold``
    only extend existing tracks (ByteTrack's second stage); they never start one.

    Attributes:
        track_high_threshold: people scoring above this are matched first; 0 <= value < 1.
        track_new_threshold: an unmatched first-stage person scoring above this starts a track; 0 <= value < 1.
        track_min_similarity: a person and a track match only if their similarity (IoU and OKS, mixed by
            ``track_oks_weight``) is at least this; 0 < value <= 1.
        track_oks_weight: similarity = (1 - w) * box IoU + w * keypoint OKS; 0 <= value <= 1.
        track_confirm_frames: consecutive frames a new track needs before it gets an id (tracks started on a
            sequence's first frame get one at once); 1 <= value <= 30.
        track_lost_frames: frames a track that lost its person is kept, to be found again; 0 <= value <= 300.
    """

    track_high_threshold: float = 0.5
    track_new_threshold: float = 0.6
    track_min_similarity: float = 0.2
    track_oks_weight: float = 0.5
    track_confirm_frames: int = 2
    track_lost_frames: int = 30

    def __post_init__(self) -> None:
        # name: (accepted, test), for the float fields
        ranges = {
            "track_high_threshold": ("0 <= value < 1", lambda v: 0.0 <= v < 1.0),
            "track_new_threshold": ("0 <= value < 1", lambda v: 0.0 <= v < 1.0),
            "track_min_similarity": ("0 < value <= 1", lambda v: 0.0 < v <= 1.0),
            "track_oks_weight": ("0 <= value <= 1", lambda v: 0.0 <= v <= 1.0),
        }
        for name, (accepted, within) in ranges.items():
            value = getattr(self, name)
            _finite(name, value)
            object.__setattr__(self, name, float(value))
            if not within(float(value)):
                raise InvalidRequestError(f"parameter {name}: got {value}; accepted: {accepted}")
        for name, low, high in (("track_confirm_frames", 1, 30), ("track_lost_frames", 0, 300)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidRequestError(f"parameter {name}: got {value!r}; accepted: an integer {low}..{high}")


def _finite(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequestError(
            f"parameter {name}: got {value!r} ({type(value).__name__}); accepted: a finite number"
        )


def parse_parameters(parameters: Mapping[str, Any] | str | None) -> RequestParameters:
    """Validate a request's parameters: a mapping, or the JSON string the Python backend's ``parameters()`` returns.

    Unknown keys are refused so that a misspelt parameter is not silently ignored; a renamed one is refused with
    its new name; reserved keys (:data:`RESERVED_PARAMETER_PREFIXES`) are ignored. The tracking parameters are
    validated too (every step refuses an out-of-range one alike), and returned by :func:`parse_tracking_parameters`.

    Raises:
        InvalidRequestError: naming the parameter, the value given and what is accepted.
    """
    given = _known_parameters(parameters)
    TrackingParameters(**{key: value for key, value in given.items() if key in _TRACKING_FIELDS})
    return RequestParameters(**{key: value for key, value in given.items() if key in _DETECTION_FIELDS})


def parse_tracking_parameters(parameters: Mapping[str, Any] | str | None) -> TrackingParameters:
    """The tracking half of a request's parameters, validated as :func:`parse_parameters` validates all of them.

    Raises:
        InvalidRequestError: naming the parameter, the value given and what is accepted.
    """
    given = _known_parameters(parameters)
    RequestParameters(**{key: value for key, value in given.items() if key in _DETECTION_FIELDS})
    return TrackingParameters(**{key: value for key, value in given.items() if key in _TRACKING_FIELDS})


_DETECTION_FIELDS = tuple(field.name for field in fields(RequestParameters))
_TRACKING_FIELDS = tuple(field.name for field in fields(TrackingParameters))


def _known_parameters(parameters: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """The request parameters that are ours, after refusing renamed and unknown ones."""
    if parameters is None or parameters == "":
        return {}
    if isinstance(parameters, str):
        parameters = json.loads(parameters)
    renamed = sorted(key for key in parameters if key in RENAMED_PARAMETERS)
    if renamed:
        raise InvalidRequestError(
            "; ".join(f"parameter {key}: renamed; use {RENAMED_PARAMETERS[key]}" for key in renamed)
        )
    known = [*_DETECTION_FIELDS, *_TRACKING_FIELDS]
    unknown = sorted(key for key in parameters if key not in known and not key.startswith(RESERVED_PARAMETER_PREFIXES))
    if unknown:
        raise InvalidRequestError(f"parameters {unknown}: unknown; accepted: {known}")
    return {key: value for key, value in parameters.items() if key in known}


# -- errors -----------------------------------------------------------------------------------------------------


class Status:
    """The gRPC status codes the server answers with, and what each means for a client."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # this request's input or parameter; the message says which. Not retried.
    UNAVAILABLE = "UNAVAILABLE"  # the server or a model step cannot serve now; retried by idempotent calls.
    INTERNAL = "INTERNAL"  # a model step failed unexpectedly; details only in the server log.
    NOT_FOUND = "NOT_FOUND"  # no such model (not loaded, or another model repository).
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"  # the call's timeout passed.
