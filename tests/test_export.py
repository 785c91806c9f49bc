"""ONNX export: ONNX Runtime equals PyTorch, batches really work, and the graph suits TensorRT 10."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from rtmo.build.export import MAX_TOP_K, check_tensorrt_compatible, export_onnx, load_model, tensorrt_supported_ops
from rtmo.candidates import CANDIDATE_OUTPUTS, CandidateNet
from rtmo.errors import BuildError
from rtmo.runtime.preprocess import letterbox


@pytest.fixture(scope="module", params=["tiny", "small"])
def exported(request, tmp_path_factory):
    model, provenance = load_model(f"random:{request.param}", seed=5)
    result = export_onnx(model, tmp_path_factory.mktemp("export") / "out", top_k=256, provenance=provenance)
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    return model, result, session


def _canvases(photos: list[np.ndarray], size: int) -> np.ndarray:
    return np.stack([letterbox(p, (size, size))[0] for p in photos])


def _assert_close(got: np.ndarray, want: np.ndarray, name: str) -> None:
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def test_onnxruntime_equals_pytorch_on_real_photos(exported, crowd_photo, portrait_photo):
    model, result, session = exported
    batch = _canvases([crowd_photo, portrait_photo], model.config.input_size)
    got = dict(zip(CANDIDATE_OUTPUTS, session.run(None, {"images": batch})))
    with torch.no_grad():
        want = dict(
            zip(CANDIDATE_OUTPUTS, (t.numpy() for t in CandidateNet(model, top_k=256)(torch.from_numpy(batch))))
        )
    _assert_close(got["scores"], want["scores"], "scores")
    for b in range(len(batch)):
        # Anchors over the uniform 114 padding score exactly alike, so which of them fill the last top-K slots is
        # arbitrary; match candidates by their anchor point instead of by rank (the sorted scores matched above).
        want_index = {tuple(p): i for i, p in enumerate(want["priors"][b])}
        pairs = [(i, want_index[tuple(p)]) for i, p in enumerate(got["priors"][b]) if tuple(p) in want_index]
        assert len(pairs) >= 128
        g, w = zip(*pairs)
        for name in ("boxes", "keypoint_visibility", "pose_vectors"):
            _assert_close(got[name][b][list(g)], want[name][b][list(w)], name)


def test_batch_of_four_equals_four_single_runs(exported, photo_paths):
    import cv2

    model, _, session = exported
    photos = [cv2.imread(str(p)) for p in list(photo_paths.values())[:4]]
    batch = _canvases(photos, model.config.input_size)
    together = session.run(None, {"images": batch})
    for i in range(4):
        alone = session.run(None, {"images": batch[i : i + 1]})
        for name, t, a in zip(CANDIDATE_OUTPUTS, together, alone):
            _assert_close(t[i], a[0], name)


def test_graph_uses_only_tensorrt10_ops_and_static_non_batch_dims(exported):
    _, result, _ = exported
    graph = onnx.load(str(result.onnx_path))
    ops = {node.op_type for node in graph.graph.node}
    assert ops <= tensorrt_supported_ops(), ops - tensorrt_supported_ops()
    assert graph.opset_import[0].version >= 17
    for value in [*graph.graph.input, *graph.graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch"
        assert all(d.HasField("dim_value") for d in dims[1:]), value.name
    onnx.checker.check_model(graph, full_check=True)


def test_export_writes_the_keypoint_decoder_and_metadata(exported):
    model, result, _ = exported
    meta = json.loads(result.metadata_path.read_text())
    assert meta["top_k"] == 256 and meta["num_keypoints"] == 17
    assert meta["input_size"] == [model.config.input_size] * 2
    assert meta["checkpoint_sha256"] == "random"
    assert len(meta["keypoint_names"]) == 17 and meta["keypoint_names"][0] == "nose"
    c = model.config.pose_vec_channels
    assert meta["keypoint_decoder"]["inputs"] == {
        "pose_vectors": ["people", c],
        "boxes": ["people", 4],
        "priors": ["people", 2],
    }
    # ONNX Runtime on keypoints.onnx equals the PyTorch decoder for any number of people (0 included).
    session = ort.InferenceSession(str(result.keypoints_onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for people in (0, 1, 40):
        xy = rng.uniform(0, 300, (people, 2)).astype(np.float32)
        feed = {
            "pose_vectors": rng.normal(size=(people, c)).astype(np.float32),
            "boxes": np.concatenate([xy, xy + rng.uniform(20, 200, (people, 2)).astype(np.float32)], axis=1),
            "priors": (xy + 10).astype(np.float32),
        }
        (got,) = session.run(None, feed)
        with torch.no_grad():
            want = model.keypoint_decoder()(*(torch.from_numpy(feed[name]) for name in feed)).numpy()
        assert got.shape == (people, 17, 2)
        if people:
            # float32 in another summation order, which random weights' chaotic DCC amplifies for a few people:
            # judge the median and p90 person, not the worst.
            per_person = np.abs(got - want).reshape(people, -1).max(axis=1)
            assert np.median(per_person) <= 1e-3 and np.percentile(per_person, 90) <= 2e-3, per_person


def test_tensorrt_check_rejects_unsupported_op_and_dynamic_dim():
    from onnx import TensorProto, helper

    def graph_with(op: str, out_dims: list) -> onnx.ModelProto:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)
        return helper.make_model(helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g", [x], [y]))

    with pytest.raises(BuildError, match=r"cannot parse: \['Unique'\]"):
        check_tensorrt_compatible(graph_with("Unique", ["batch", 3]))
    with pytest.raises(BuildError, match="data-dependent non-batch dimension"):
        check_tensorrt_compatible(graph_with("Relu", ["batch", "n"]))


@pytest.mark.parametrize("top_k", [0, MAX_TOP_K + 1])
def test_export_rejects_bad_top_k_before_writing_anything(tmp_path, top_k):
    model, _ = load_model("random:tiny")
    with pytest.raises(BuildError, match="top_k"):
        export_onnx(model, tmp_path / "out", top_k=top_k)
    assert list(tmp_path.iterdir()) == []


def test_float32_nchw_export_gives_the_same_candidates_as_the_served_uint8_nhwc_one(crowd_photo, tmp_path):
    """The layout benchmark compares two graphs; they must compute the same thing for its figures to mean anything."""
    model, provenance = load_model("random:tiny", seed=5)
    sessions = {}
    for layout in ("uint8_nhwc", "float32_nchw"):
        result = export_onnx(model, tmp_path / layout, top_k=64, provenance=provenance, input_layout=layout)
        assert result.metadata["input"]["dtype"] == layout[:-5]
        sessions[layout] = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    canvas = _canvases([crowd_photo], model.config.input_size)
    as_uint8 = sessions["uint8_nhwc"].run(None, {"images": canvas})
    as_float = sessions["float32_nchw"].run(
        None, {"images": np.ascontiguousarray(canvas.transpose(0, 3, 1, 2), dtype=np.float32)}
    )
    for name, got, want in zip(CANDIDATE_OUTPUTS, as_float, as_uint8):
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_export_refuses_unknown_input_layout(tmp_path):
    model, _ = load_model("random:tiny")
    with pytest.raises(BuildError, match="input_layout: got 'nchw'; accepted: uint8_nhwc, float32_nchw"):
        export_onnx(model, tmp_path / "out", input_layout="nchw")
    assert not (tmp_path / "out").exists()
