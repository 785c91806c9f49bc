"""The contract's request parameters: defaults, parsing, ranges, renamed and unknown names."""

from __future__ import annotations

import json

import pytest

from rtmo_contract import (
    RENAMED_PARAMETERS,
    InvalidRequestError,
    RequestParameters,
    TrackingParameters,
    parse_parameters,
    parse_tracking_parameters,
)


def test_parse_parameters_defaults_when_none_are_sent() -> None:
    assert parse_parameters("{}") == RequestParameters(0.1, 0.65, None, False)


def test_parse_parameters_reads_json_string() -> None:
    params = parse_parameters(
        json.dumps({"score_threshold": 0.3, "nms_iou_threshold": 1, "max_people": 4, "pose_nms": True})
    )
    assert params == RequestParameters(0.3, 1.0, 4, True)


@pytest.mark.parametrize(
    ("parameters", "match"),
    [
        ({"score_threshold": 1.5}, r"score_threshold: got 1.5; accepted: 0 <= value < 1"),
        ({"score_threshold": "high"}, r"score_threshold: got 'high' \(str\); accepted: a finite number"),
        ({"score_threshold": True}, r"score_threshold"),
        ({"nms_iou_threshold": 0}, r"nms_iou_threshold: got 0.0; accepted: 0 < value <= 1"),
        ({"max_people": 0}, r"max_people: got 0; accepted: an integer >= 1"),
        ({"max_people": 2.5}, r"max_people"),
        ({"pose_nms": "yes"}, r"pose_nms: got 'yes'; accepted: true or false"),
        ({"score_thresold": 0.2}, r"\['score_thresold'\]: unknown; accepted"),
    ],
)
def test_parse_parameters_refuses_invalid_values(parameters: dict, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        parse_parameters(parameters)


def test_parse_parameters_refuses_renamed_names_naming_the_new_one() -> None:
    with pytest.raises(InvalidRequestError, match="parameter score_thr: renamed; use score_threshold"):
        parse_parameters({"score_thr": 0.3})
    assert RENAMED_PARAMETERS["nms_thr"] == "nms_iou_threshold"


def test_parse_parameters_ignores_keys_triton_and_clients_reserve() -> None:
    assert parse_parameters(
        {"triton_enable_empty_final_response": True, "sequence_id": 3, "score_threshold": 0.2}
    ) == RequestParameters(score_threshold=0.2)


def test_tracking_parameters_travel_with_the_detection_ones_and_every_step_validates_them() -> None:
    sent = {"score_threshold": 0.2, "track_high_threshold": 0.4, "track_lost_frames": 10}
    assert parse_parameters(sent) == RequestParameters(score_threshold=0.2)
    assert parse_tracking_parameters(sent) == TrackingParameters(track_high_threshold=0.4, track_lost_frames=10)
    assert parse_tracking_parameters(None) == TrackingParameters()
    for parse in (parse_parameters, parse_tracking_parameters):
        with pytest.raises(InvalidRequestError, match="parameter track_lost_frames: got 1000; accepted: an integer"):
            parse({"track_lost_frames": 1000})
        with pytest.raises(InvalidRequestError, match="score_threshold: got 2"):
            parse({"score_threshold": 2})
        with pytest.raises(InvalidRequestError, match=r"\['track_buffer'\]: unknown; accepted: \[.*track_lost_frames"):
            parse({"track_buffer": 30})


def test_request_parameters_validate_when_built_directly() -> None:
    with pytest.raises(InvalidRequestError, match="max_people: got -1"):
        RequestParameters(max_people=-1)


def test_exports_are_sorted_and_exist() -> None:
    import rtmo_contract

    assert rtmo_contract.__all__ == sorted(rtmo_contract.__all__)
    assert all(hasattr(rtmo_contract, name) for name in rtmo_contract.__all__)
