import numpy as np
import pytest

from rtmo.candidates import make_priors
from rtmo.runtime.dcc import DCCWeights
from rtmo.runtime.postprocess import nms
from rtmo.runtime.preprocess import Letterbox, letterbox, unletterbox


def test_priors_are_centred_row_major_per_level():
    priors, strides = make_priors((640, 640))
    assert priors.shape == (2000, 2) and strides.shape == (2000,)
    np.testing.assert_array_equal(priors[0], [7.5, 7.5])
    np.testing.assert_array_equal(priors[1], [23.5, 7.5])  # x varies fastest
    np.testing.assert_array_equal(priors[40], [7.5, 23.5])
    np.testing.assert_array_equal(priors[1600], [15.5, 15.5])
    assert set(strides[:1600]) == {16} and set(strides[1600:]) == {32}


def test_letterbox_centres_image_and_pads_with_114():
    image = np.full((100, 200, 3), 7, np.uint8)
    canvas, box = letterbox(image, (640, 640))
    assert canvas.shape == (640, 640, 3)
    assert (canvas[:157] == 114).all() and (canvas[481:] == 114).all()  # 320 rows of image, centred
    assert (canvas[160:477, :-3] == 7).all()  # bilinear blends the last source pixels with the pad (MMPose geometry)
    np.testing.assert_allclose(box.center, [100, 50])
    np.testing.assert_allclose(box.scale, [200, 200])


def test_unletterbox_inverts_the_letterbox_geometry():
    _, box = letterbox(np.zeros((429, 640, 3), np.uint8), (640, 640))
    image_points = np.array([[0.0, 0.0], [640.0, 429.0], [320.0, 214.5]])
    r = 1.0
    input_points = (image_points - box.center) * r + 320
    np.testing.assert_allclose(unletterbox(input_points, box), image_points, atol=1e-4)


def test_letterbox_round_trips_through_array_form():
    _, box = letterbox(np.zeros((333, 500, 3), np.uint8), (416, 416))
    again = Letterbox.from_array(box.as_array())
    np.testing.assert_array_equal(again.center, box.center)
    np.testing.assert_array_equal(again.scale, box.scale)
    assert again.input_size == (416, 416)


def test_nms_suppresses_only_overlaps_above_threshold():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 10.5]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    keep = nms(boxes, scores, 0.65)
    assert keep.tolist() == [3, 2]
    assert nms(boxes, scores, 0.99).tolist() == [3, 0, 1, 2]


def test_dcc_weights_round_trip_through_npz(tmp_path):
    rng = np.random.default_rng(1)
    fields = {name: rng.normal(size=(3,)).astype(np.float32) for name in DCCWeights.__dataclass_fields__}
    fields.update(bn_eps=1e-5, gau_g=1.5, bbox_padding=1.25)
    weights = DCCWeights(**fields)
    weights.save(tmp_path / "dcc.npz")
    loaded = DCCWeights.load(tmp_path / "dcc.npz")
    np.testing.assert_array_equal(loaded.gau_uv, weights.gau_uv)
    assert loaded.gau_g == pytest.approx(1.5)


def test_dcc_weights_load_rejects_other_npz(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a DCC weights file"):
        DCCWeights.load(tmp_path / "other.npz")
