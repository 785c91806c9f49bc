"""The Triton model repository without a server: configs, assembly, decoding, parameters, model.py adapters."""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from google.protobuf import text_format

from image_files import jpeg_claiming, png_claiming, tiff_claiming, webp_claiming
from rtmo.build.assemble import MODELS, assemble_repository, copy_templates, main
from rtmo.errors import BuildError, InvalidInputError
from rtmo.runtime.pose_nms import nearby_joints_nms
from rtmo.runtime.postprocess import Poses
from rtmo.runtime.preprocess import decode_image, header_size, validate_frame
from rtmo.runtime.triton import pack_people
from rtmo_contract import PEOPLE

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
PHOTO = Path(__file__).resolve().parents[1] / "data" / "photos" / "000000196141.jpg"


# ---------------------------------------------------------------------------------------------- encoded images
def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    return cv2.imencode(ext, image)[1].tobytes()


def jpeg_with_exif_orientation(image: np.ndarray, orientation: int) -> bytes:
    """A JPEG of ``image`` carrying an EXIF APP1 segment with the given orientation tag."""
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += b"\x00\x00\x00\x00"
    app1 = b"Exif\x00\x00" + tiff
    jpeg = encode(image, ".jpg")
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_header_size_reads_every_accepted_format_without_decoding() -> None:
    assert header_size(PHOTO.read_bytes()) == ("jpeg", 640, 429)
    assert header_size(png_claiming(30000, 30000)) == ("png", 30000, 30000)
    assert header_size(webp_claiming(16000, 9000)) == ("webp", 16000, 9000)
    # The three WebP headers: lossy VP8, lossless VP8L, and extended VP8X (here: lossy with an alpha chunk).
    for channels, quality, chunk in [(3, 80, b"VP8 "), (3, 101, b"VP8L"), (4, 80, b"VP8X")]:
        webp = cv2.imencode(".webp", np.zeros((123, 457, channels), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, quality])[1].tobytes()
        assert webp[12:16] == chunk and header_size(webp) == ("webp", 457, 123)
    assert header_size(tiff_claiming(30000, 20000)) == ("tiff", 30000, 20000)
    assert header_size(encode(np.zeros((5, 7, 3), np.uint8), ".bmp")) == ("bmp", 7, 5)


BOMBS = {
    "png": (png_claiming(30000, 30000), "30000x30000 = 900000000"),
    "jpeg": (jpeg_claiming(30000, 30000), "30000x30000 = 900000000"),
    "webp": (webp_claiming(16384, 16384), "16384x16384 = 268435456"),
    "tiff": (tiff_claiming(30000, 30000), "30000x30000 = 900000000"),
}


@pytest.mark.parametrize("kind", list(BOMBS))
def test_decode_image_refuses_decompression_bomb_before_decoding(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decode(*args: object) -> None:
        raise AssertionError("cv2.imdecode must not run")

    data, pixels = BOMBS[kind]
    assert len(data) < 1000
    monkeypatch.setattr(cv2, "imdecode", no_decode)
    with pytest.raises(InvalidInputError, match=rf"image: {kind.upper()} of {pixels} pixels is too large; accepted: at most 50000000"):
        decode_image(data)


@pytest.mark.parametrize("ext", [".webp", ".tiff", ".bmp", ".png"])
def test_decode_image_accepts_lossless_webp_tiff_bmp_and_png_unchanged(ext: str) -> None:
    image = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []
    np.testing.assert_array_equal(decode_image(cv2.imencode(ext, image, params)[1].tobytes()), image)


@pytest.mark.parametrize("ext", [".webp", ".tiff"])
def test_decode_image_refuses_truncated_webp_and_tiff(ext: str) -> None:
    data = encode(np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8), ext)
    with pytest.raises(InvalidInputError, match=rf"image: {ext[1:].upper()} .*(truncated|corrupt)"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", r"image: empty \(0 bytes\)"),
        (b"hello, world", r"image: not a supported image .* accepted: JPEG, PNG, BMP, WebP or TIFF"),
        (PHOTO.read_bytes()[:5000], r"image: JPEG is truncated"),
        (PHOTO.read_bytes()[:100], r"image: JPEG header is truncated or corrupt"),
        (png_claiming(0, 5), r"image: PNG header is truncated or corrupt"),
    ],
    ids=["empty", "not-an-image", "truncated-jpeg", "truncated-jpeg-header", "zero-width"],
)
def test_decode_image_refuses_bad_data_with_a_message_naming_it(data: bytes, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        decode_image(data)


def test_decode_image_refuses_truncated_png() -> None:
    data = encode(np.full((64, 64, 3), 7, np.uint8))
    with pytest.raises(InvalidInputError, match="PNG is truncated"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.full((1, 1, 3), 9, np.uint8), np.full((1, 1, 3), 9, np.uint8)),
        (np.full((5, 7), 200, np.uint8), np.full((5, 7, 3), 200, np.uint8)),
        (np.dstack([np.full((4, 6, 3), 50, np.uint8), np.zeros((4, 6), np.uint8)]), np.full((4, 6, 3), 50, np.uint8)),
        (np.full((3, 3, 3), 65535, np.uint16), np.full((3, 3, 3), 255, np.uint8)),
    ],
    ids=["1x1", "grayscale", "rgba", "16-bit"],
)
def test_decode_image_returns_uint8_bgr_when_png_is_unusual_but_valid(image: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(decode_image(encode(image)), expected)


def test_decode_image_applies_exif_orientation() -> None:
    image = np.zeros((20, 40, 3), np.uint8)
    decoded = decode_image(jpeg_with_exif_orientation(image, 6))  # 6: rotate 90° clockwise to display
    assert decoded.shape == (40, 20, 3)


def test_validate_frame_refuses_wrong_shape_dtype_and_size() -> None:
    with pytest.raises(InvalidInputError, match=r"frame: shape \[4, 4\]; accepted: \[H, W, 3\]"):
        validate_frame(np.zeros((4, 4), np.uint8))
    with pytest.raises(InvalidInputError, match="frame: dtype float32"):
        validate_frame(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InvalidInputError, match="too large"):
        validate_frame(np.zeros((10, 10, 3), np.uint8), max_pixels=99)


def _poses(n: int, j: int = 3, value: float = 1.0) -> Poses:
    return Poses(np.full((n, 4), value, np.float32), np.full(n, value, np.float32), np.full((n, j, 2), value, np.float32),
                 np.full((n, j), value, np.float32), truncated=n == 2)


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


# ---------------------------------------------------------------------------------------------- pose NMS
def test_nearby_joints_nms_suppresses_a_shifted_duplicate_and_keeps_a_distant_pose() -> None:
    rng = np.random.default_rng(0)
    pose = rng.uniform(0, 100, (17, 2))
    keypoints = np.stack([pose, pose + 0.5, pose + 300])
    keep = nearby_joints_nms(keypoints, np.array([0.5, 0.9, 0.4]), num_nearby_joints_thr=17 // 3)
    np.testing.assert_array_equal(keep, [1, 2])


def test_nearby_joints_nms_limits_to_max_dets_best_first() -> None:
    keypoints = np.stack([np.full((5, 2), i * 1000.0) + np.arange(10).reshape(5, 2) for i in range(40)])
    scores = np.linspace(0.1, 0.9, 40)
    keep = nearby_joints_nms(keypoints, scores, num_nearby_joints_thr=1, max_dets=30)
    np.testing.assert_array_equal(keep, np.arange(39, 9, -1))


# ---------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("model", MODELS)
def test_checked_in_config_parses_as_model_config(model: str) -> None:
    config = text_format.Parse((REPOSITORY / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == model
    assert config.max_batch_size == 8
    if config.platform != "ensemble":
        assert config.HasField("dynamic_batching")


def test_ensemble_steps_name_existing_tensors() -> None:
    configs = {m: text_format.Parse((REPOSITORY / m / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()) for m in MODELS}
    for ensemble in ("rtmo", "rtmo_frames"):
        for step in configs[ensemble].ensemble_scheduling.step:
            composing = configs[step.model_name]
            assert set(step.input_map) <= {t.name for t in composing.input}
            assert set(step.output_map) <= {t.name for t in composing.output}
    assert (REPOSITORY / "rtmo" / "1").is_dir() and not (REPOSITORY / "rtmo" / "1" / "model.py").exists()


@pytest.fixture(scope="module")
def export_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rtmo.build.export import export_onnx, load_model

    model, provenance = load_model("random:tiny")
    return export_onnx(model, tmp_path_factory.mktemp("export") / "tiny", provenance=provenance).onnx_path.parent


@pytest.fixture()
def repo_copy(tmp_path: Path) -> Path:
    return copy_templates(REPOSITORY, tmp_path / "model_repository")


def test_assemble_repository_writes_parseable_cpu_configs_with_patched_dims(export_tiny: Path, repo_copy: Path) -> None:
    written = assemble_repository(export_tiny, target="cpu", repository=repo_copy, max_batch_size=4)
    assert (repo_copy / "engine" / "1" / "model.onnx").is_file() and (repo_copy / "postprocess" / "1" / "dcc.npz").is_file()
    configs = {m: text_format.Parse((repo_copy / m / "configs" / "cpu.pbtxt").read_text(), model_config_pb2.ModelConfig())
               for m in MODELS}
    assert len(written) == 2 + len(MODELS)
    engine = configs["engine"]
    assert engine.backend == "python" and engine.platform == "" and engine.max_batch_size == 4
    assert list(engine.input[0].dims) == [416, 416, 3]
    assert {t.name: list(t.dims) for t in engine.output}["pose_vectors"] == [256, 192]
    assert list(engine.model_warmup[0].inputs["images"].dims) == [416, 416, 3]
    assert configs["preprocess"].parameters["input_size"].string_value == "416"
    assert configs["postprocess"].parameters["num_anchors"].string_value == "845"
    rtmo = configs["rtmo"]
    assert json.loads(rtmo.parameters["keypoint_names"].string_value)[0] == "nose"
    assert rtmo.parameters["checkpoint"].string_value == "random:tiny"
    assert len(json.loads(rtmo.parameters["skeleton"].string_value)) == 19


def test_assemble_repository_refuses_a_config_that_drifts_from_the_contract(export_tiny: Path, repo_copy: Path) -> None:
    config = repo_copy / "engine" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "priors"', 'name: "anchors"'))
    with pytest.raises(BuildError, match=r"engine: config declares \[.*'anchors'.*\]; the contract has \[.*'priors'.*\]"):
        assemble_repository(export_tiny, target="cpu", repository=repo_copy)
    assert not (repo_copy / "engine" / "configs").exists()
    assert not (repo_copy / "engine" / "1" / "model.onnx").exists()
    postprocess = repo_copy / "postprocess" / "config.pbtxt"
    config.write_text((REPOSITORY / "engine" / "config.pbtxt").read_text())
    text = postprocess.read_text()
    postprocess.write_text(text.replace('"num_people", data_type: TYPE_INT32', '"num_people", data_type: TYPE_INT64'))
    with pytest.raises(BuildError, match="postprocess: num_people is TYPE_INT64 in the config; the contract says TYPE_INT32"):
        assemble_repository(export_tiny, target="cpu", repository=repo_copy)


def test_assemble_repository_refuses_onnx_whose_tensor_names_differ(export_tiny: Path, repo_copy: Path, tmp_path: Path) -> None:
    import onnx

    export = tmp_path / "export"
    shutil.copytree(export_tiny, export)
    model = onnx.load(str(export / "model.onnx"))
    renamed = {"priors": "anchors"}
    for node in model.graph.node:
        node.output[:] = [renamed.get(name, name) for name in node.output]
    for output in model.graph.output:
        output.name = renamed.get(output.name, output.name)
    onnx.save(model, str(export / "model.onnx"))
    with pytest.raises(BuildError, match=r"outputs .*'anchors'.* declares .*'priors'"):
        assemble_repository(export, target="cpu", repository=repo_copy)
    assert not (repo_copy / "engine" / "1" / "model.onnx").exists()


def test_assemble_repository_refuses_a_float32_nchw_export(export_tiny: Path, repo_copy: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(export_tiny, export)
    metadata = json.loads((export / "metadata.json").read_text())
    metadata["input"].update(dtype="float32", layout="NCHW")
    (export / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(BuildError, match="takes a float32 NCHW input; the repository's preprocess sends uint8 NHWC"):
        assemble_repository(export, target="cpu", repository=repo_copy)
    assert not (repo_copy / "engine" / "configs").exists()


def test_assemble_repository_gpu_refuses_plan_profile_below_max_batch(export_tiny: Path, repo_copy: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(export_tiny, export)
    with pytest.raises(BuildError, match="needs a TensorRT plan"):
        assemble_repository(export, target="gpu", repository=repo_copy)
    (export / "model.plan").write_bytes(b"plan")
    (export / "model.plan.json").write_text(json.dumps({"profile": {"min_batch": 1, "opt_batch": 2, "max_batch": 4}}))
    with pytest.raises(BuildError, match="max batch is 4, below max_batch_size 8"):
        assemble_repository(export, target="gpu", repository=repo_copy)
    assemble_repository(export, target="gpu", repository=repo_copy, max_batch_size=4)
    gpu = text_format.Parse((repo_copy / "engine" / "configs" / "gpu.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert gpu.platform == "tensorrt_plan" and (repo_copy / "engine" / "1" / "model.plan").read_bytes() == b"plan"


def test_assemble_main_returns_1_with_message_when_export_is_missing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["--export-dir", str(tmp_path), "--target", "cpu", "--repository", str(REPOSITORY)]) == 1
    assert "missing ['model.onnx', 'dcc.npz', 'metadata.json']" in caplog.text


# ---------------------------------------------------------------------------------------------- model.py adapters
class FakeTensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class FakeResponse:
    def __init__(self, output_tensors: list | None = None, error: object | None = None) -> None:
        self.tensors = {t.name(): t.as_numpy() for t in output_tensors or []}
        self.error = error


class FakeError:
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        self.message, self.code = message, code


class FakeRequest:
    def __init__(self, inputs: dict[str, np.ndarray], parameters: dict | None = None) -> None:
        self.inputs, self._parameters = inputs, json.dumps(parameters or {})

    def parameters(self) -> str:
        return self._parameters


class FakeLogger:
    messages: list[str] = []

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls.messages.append(message)

    log_error = log_info = log_warn


@pytest.fixture()
def pb_utils(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = FakeTensor
    module.InferenceResponse = FakeResponse
    module.TritonError = FakeError
    module.Logger = FakeLogger
    module.get_input_tensor_by_name = lambda request, name: (
        FakeTensor(name, request.inputs[name]) if name in request.inputs else None
    )
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


def load_adapter(repository: Path, model: str, target: str = "cpu", config: str = "config.pbtxt") -> object:
    path = repository / model / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"adapter_{model}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config_path = repository / model / ("configs/cpu.pbtxt" if (repository / model / "configs" / "cpu.pbtxt").exists() else config)
    from google.protobuf import json_format

    message = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    instance = module.TritonPythonModel()
    instance.initialize({"model_config": json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True)),
                         "model_repository": str(repository / model), "model_version": "1"})
    return instance


def test_preprocess_adapter_answers_bad_request_with_invalid_arg_and_serves_its_batch_mates(pb_utils: object) -> None:
    model = load_adapter(REPOSITORY, "preprocess")
    good = np.array([[PHOTO.read_bytes()], [encode(np.zeros((32, 32, 3), np.uint8))]], dtype=object)
    responses = model.execute([
        FakeRequest({"image": good}),
        FakeRequest({"image": np.array([[b"nope"]], dtype=object)}),
        FakeRequest({"frame": np.zeros((1, 10, 20, 3), np.uint8)}),
        FakeRequest({"frame": np.zeros((1, 10, 20, 3), np.uint8)}, {"max_people": -1}),
        FakeRequest({}),
    ])
    assert len(responses) == 5
    assert responses[0].error is None and responses[0].tensors["images"].shape == (2, 640, 640, 3)
    np.testing.assert_allclose(responses[0].tensors["letterbox"][0], [320, 214.5, 640, 640, 640, 640])
    assert responses[1].error.code == FakeError.INVALID_ARG and "not a supported image" in responses[1].error.message
    assert responses[2].error is None and responses[2].tensors["letterbox"].shape == (1, 6)
    assert responses[3].error.code == FakeError.INVALID_ARG and "max_people" in responses[3].error.message
    assert "send exactly one of them" in responses[4].error.message


def test_postprocess_adapter_pads_outputs_and_refuses_bad_parameters(pb_utils: object, export_tiny: Path, repo_copy: Path) -> None:
    assemble_repository(export_tiny, target="cpu", repository=repo_copy)
    model = load_adapter(repo_copy, "postprocess")
    k, j, c = 256, 17, 192
    rng = np.random.default_rng(0)
    boxes = np.sort(rng.uniform(0, 400, (2, k, 4)).reshape(2, k, 2, 2), axis=2).reshape(2, k, 4).astype(np.float32)
    inputs = {
        "candidate_scores": np.sort(rng.uniform(0, 0.3, (2, k)).astype(np.float32))[:, ::-1].copy(),
        "candidate_boxes": boxes,
        "candidate_keypoint_visibility": rng.uniform(0, 1, (2, k, j)).astype(np.float32),
        "candidate_pose_vectors": rng.normal(size=(2, k, c)).astype(np.float32),
        "candidate_priors": rng.uniform(0, 400, (2, k, 2)).astype(np.float32),
        "letterbox": np.tile(np.array([[208, 208, 416, 416, 416, 416]], np.float32), (2, 1)),
    }
    inputs["candidate_scores"][1] = 0.0
    responses = model.execute([
        FakeRequest(inputs, {"score_threshold": 0.2, "max_people": 3}),
        FakeRequest(inputs, {"nms_iou_threshold": 2}),
        FakeRequest(inputs, {"score_threshold": 0.2, "pose_nms": True}),
    ])
    first = responses[0].tensors
    assert responses[0].error is None
    np.testing.assert_array_equal(first["num_people"][:, 0], [3, 0])
    assert first["keypoints"].shape == (2, 3, j, 2) and not first["keypoints"][1].any()
    assert responses[1].error.code == FakeError.INVALID_ARG and "nms_iou_threshold: got 2.0" in responses[1].error.message
    assert responses[2].error is None and 1 <= responses[2].tensors["num_people"][0, 0] <= 30


def test_respond_each_answers_unexpected_failures_internal_without_details_and_logs_them(pb_utils: types.ModuleType) -> None:
    from rtmo.runtime.triton import respond_each

    def run(request: FakeRequest) -> list:
        if request.inputs.get("fail") == "bug":
            raise KeyError("secret internals")
        if request.inputs.get("fail") == "input":
            raise InvalidInputError("image: empty (0 bytes)")
        return [FakeTensor("out", np.ones(2))]

    FakeLogger.messages.clear()
    responses = respond_each([FakeRequest({}), FakeRequest({"fail": "bug"}), FakeRequest({"fail": "input"}), FakeRequest({})],
                             run, step="preprocess", pb_utils=pb_utils)
    assert [r.error is None for r in responses] == [True, False, False, True]
    assert responses[1].error.code == FakeError.INTERNAL and responses[1].error.message == "preprocess: internal error; see the server log"
    assert responses[2].error.code == FakeError.INVALID_ARG and responses[2].error.message == "image: empty (0 bytes)"
    assert any("secret internals" in message for message in FakeLogger.messages)
