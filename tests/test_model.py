import numpy as np
import pytest
import torch

import rtmo

# Parameter counts including training-only layers (out_kpt_reg, sigma_fc), from MMPose's architectures.
EXPECTED_PARAMS_M = {"tiny": 6.83, "small": 9.87, "medium": 22.53, "large": 44.69}


@pytest.mark.parametrize("size", list(EXPECTED_PARAMS_M))
def test_parameter_count_matches_mmpose_architecture(size):
    model = rtmo.RTMO(rtmo.RTMOConfig(backbone_config=rtmo.CSPConfig(size=size)))
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(count - EXPECTED_PARAMS_M[size]) <= 0.01, f"{size}: {count:.4f}M"


def test_forward_returns_four_per_level_lists_with_mmpose_shapes():
    model = rtmo.RTMO(rtmo.RTMOConfig(backbone_config=rtmo.CSPConfig(size="tiny"), num_keypoints=14))
    cls, bbox, vis, pose = model(torch.rand(2, 3, 416, 416) * 255)
    assert [tuple(t.shape) for t in cls] == [(2, 1, 26, 26), (2, 1, 13, 13)]
    assert [tuple(t.shape) for t in bbox] == [(2, 4, 26, 26), (2, 4, 13, 13)]
    assert [tuple(t.shape) for t in vis] == [(2, 14, 26, 26), (2, 14, 13, 13)]
    assert [tuple(t.shape) for t in pose] == [(2, 192, 26, 26), (2, 192, 13, 13)]


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.rand(3, 64, 64), r"x: expected shape \(B, 3, H, W\)"),
        (torch.rand(1, 1, 64, 64), "3 BGR channels"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "floating-point"),
        (torch.rand(1, 3, 60, 64), "multiples of 32"),
    ],
)
def test_forward_rejects_bad_tensors(x, message):
    model = rtmo.RTMO(rtmo.RTMOConfig(backbone_config=rtmo.CSPConfig(size="tiny")))
    with pytest.raises(ValueError, match=message):
        model(x)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return rtmo.RTMO(rtmo.RTMOConfig(backbone_config=rtmo.CSPConfig(size="tiny")))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10), np.uint8), r"images\[0\]: shape \[10, 10\]; accepted: \[H, W, 3\]"),
        (np.zeros((10, 10, 4), np.uint8), r"shape \[10, 10, 4\]; accepted: \[H, W, 3\]"),
        (np.zeros((10, 10, 3), np.float32), "dtype float32; accepted: UINT8"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        ("photo.jpg", "got str; accepted: a numpy.ndarray"),
    ],
)
def test_predict_rejects_bad_images_naming_the_argument(tiny_model, image, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.predict([image])


def test_predict_rejects_single_array_and_bad_thresholds(tiny_model, crowd_photo):
    with pytest.raises(ValueError, match="wrap it in a list"):
        tiny_model.predict(crowd_photo)
    with pytest.raises(ValueError, match="score_threshold: got 2.0; accepted: 0 <= value < 1"):
        tiny_model.predict([crowd_photo], score_threshold=2.0)
    with pytest.raises(ValueError, match="nms_iou_threshold: got 0.0; accepted: 0 < value <= 1"):
        tiny_model.predict([crowd_photo], nms_iou_threshold=0.0)
    with pytest.raises(TypeError, match="score_thr: renamed to score_threshold"):
        tiny_model.predict([crowd_photo], score_thr=0.2)


def _by_box(poses):
    # Random weights give near-tied scores whose order can flip between batch sizes; match people by box instead.
    order = np.lexsort(np.round(poses.boxes, 2).T[::-1])
    return poses.boxes[order], poses.keypoints[order], poses.box_scores[order]


def test_predict_batch_equals_single_images(tiny_model, crowd_photo, portrait_photo):
    together = tiny_model.predict([crowd_photo, portrait_photo], score_threshold=0.0, nms_iou_threshold=1.0)
    alone = [
        tiny_model.predict([img], score_threshold=0.0, nms_iou_threshold=1.0)[0]
        for img in (crowd_photo, portrait_photo)
    ]
    for a, b in zip(together, alone):
        assert len(a) == len(b) == 845  # every anchor of the 416 input, none suppressed
        assert not a.truncated
        for x, y in zip(_by_box(a), _by_box(b)):
            np.testing.assert_allclose(x, y, atol=1e-2)


def test_predict_max_people_keeps_the_best(tiny_model, crowd_photo):
    full = tiny_model.predict([crowd_photo], score_threshold=0.0)[0]
    capped = tiny_model.predict([crowd_photo], score_threshold=0.0, max_people=3)[0]
    assert len(capped) == 3 < len(full)
    np.testing.assert_allclose(capped.box_scores, full.box_scores[:3])


def test_predict_boxes_are_clamped_to_the_network_input_like_mmpose(tiny_model, portrait_photo):
    # MMPose clamps boxes to the letterboxed input, so they may reach into the padding beside a portrait image.
    from rtmo.runtime.preprocess import letterbox

    _, box = letterbox(portrait_photo, (416, 416))
    low, high = box.center - box.scale / 2, box.center + box.scale / 2
    poses = tiny_model.predict([portrait_photo], score_threshold=0.0)[0]
    corners = poses.boxes.reshape(-1, 2, 2)
    assert (corners >= low - 1e-3).all() and (corners <= high + 1e-3).all()
    assert (corners[..., 0] < 0).any()  # some do reach into the padding, so the clamp bound is really exercised


def _decoder_inputs(num_people: int, channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    pose = rng.normal(size=(num_people, channels)).astype(np.float32)
    xy = rng.uniform(0, 300, size=(num_people, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(20, 200, size=(num_people, 2)).astype(np.float32)], axis=1)
    priors = rng.uniform(0, 416, size=(num_people, 2)).astype(np.float32)
    return torch.from_numpy(pose), torch.from_numpy(boxes), torch.from_numpy(priors)


def test_keypoint_decoder_computes_the_dcc_function_exactly_in_float64(tiny_model):
    import copy

    model = copy.deepcopy(tiny_model).double()
    # The float32 linspace of the checkpoint's bins is uneven by ~3e-8 (float32 noise, which the decoder's evenly
    # spaced blocks do not reproduce); evenly spaced float64 bins isolate the algebra.
    dcc = model.head.dcc
    dcc.x_bins = torch.linspace(-0.5, 0.5, len(dcc.x_bins), dtype=torch.float64)
    dcc.y_bins = torch.linspace(-0.5, 0.5, len(dcc.y_bins), dtype=torch.float64)
    inputs = [t.double() for t in _decoder_inputs(7, model.config.pose_vec_channels)]
    with torch.no_grad():
        expected = dcc(*inputs)
        got = model.keypoint_decoder()(*inputs)
    # Re-association and angle addition change only rounding: in float64 the two agree to far below a pixel's 1e-6.
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-6, rtol=0)
    assert np.ptp(got[..., 0].numpy()) > 1.0  # keypoints actually spread out: the comparison is not trivial


def test_keypoint_decoder_in_float32_stays_within_float_noise_of_the_dcc(tiny_model):
    inputs = _decoder_inputs(7, tiny_model.config.pose_vec_channels)
    with torch.no_grad():
        expected = tiny_model.head.dcc(*inputs).numpy()
        got = tiny_model.keypoint_decoder()(*inputs).numpy()
    np.testing.assert_allclose(got, expected, atol=5e-3)  # float32 rounding, summation order differ


def test_keypoint_decoder_refuses_bins_that_blocks_do_not_divide(tiny_model):
    import copy

    from rtmo.keypoint_decoder import KeypointDecoder

    dcc = copy.deepcopy(tiny_model.head.dcc)
    dcc.x_bins = torch.linspace(-0.5, 0.5, 190)
    with pytest.raises(ValueError, match="x_bins: 190 bins; accepted: a multiple of 64"):
        KeypointDecoder(dcc, bbox_padding=1.25)
