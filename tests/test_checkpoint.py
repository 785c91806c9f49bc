import hashlib

import numpy as np
import pytest
import torch

import rtmo
from rtmo import zoo


def _save_mmpose_style(model: rtmo.RTMO, path, **extra_meta) -> None:
    # Zoo files hold {'meta': {... numpy arrays and scalars from dataset_meta ...}, 'state_dict': {...}}.
    meta = {
        "epoch": 600,
        "mmengine_version": "0.10.7",
        "dataset_meta": {
            "sigmas": np.array([0.026] * 17, np.float32),
            "num_keypoints": 17,
            "keypoint_colors": np.zeros((17, 3), np.uint8),
            "flip_indices": [0, 2, 1],
            "joint_weights": np.ones(17, np.float32),
            "area": np.float64(1.5),
        },
        **extra_meta,
    }
    torch.save({"meta": meta, "state_dict": model.state_dict()}, path)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    model = rtmo.RTMO(rtmo.RTMOConfig(backbone_config=rtmo.CSPConfig(size="tiny"), num_keypoints=14))
    path = tmp_path_factory.mktemp("ckpt") / "rtmo-t_random.pth"
    _save_mmpose_style(model, path)
    return model, path


def test_load_checkpoint_infers_size_keypoints_and_input_and_restores_weights(tiny_checkpoint):
    original, path = tiny_checkpoint
    loaded = rtmo.load_checkpoint(path)
    assert loaded.config.backbone_config.size == "tiny"
    assert loaded.config.num_keypoints == 14
    assert loaded.config.input_size == 416
    for (name, a), b in zip(original.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert loaded.checkpoint_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_checkpoint_strips_module_prefix(tmp_path, tiny_checkpoint):
    original, _ = tiny_checkpoint
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in original.state_dict().items()}}, path)
    assert rtmo.load_checkpoint(path).config.num_keypoints == 14


def test_load_checkpoint_lists_missing_and_unexpected_keys(tmp_path, tiny_checkpoint):
    original, _ = tiny_checkpoint
    state = dict(original.state_dict())
    state.pop("head.dcc.gau.o.weight")
    state["head.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad_keys.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(rtmo.CheckpointError) as info:
        rtmo.load_checkpoint(path)
    assert "missing keys (1): ['head.dcc.gau.o.weight']" in str(info.value)
    assert "unexpected keys (1): ['head.extra.weight']" in str(info.value)


def test_load_checkpoint_refuses_arbitrary_pickled_objects(tmp_path, tiny_checkpoint):
    original, _ = tiny_checkpoint
    path = tmp_path / "evil.pth"
    torch.save({"meta": {"hook": zoo.ZooEntry("x", None)}, "state_dict": original.state_dict()}, path)
    with pytest.raises(rtmo.CheckpointError, match="refused to unpickle"):
        rtmo.load_checkpoint(path)


def test_load_checkpoint_reports_truncated_file(tmp_path, tiny_checkpoint):
    _, good = tiny_checkpoint
    path = tmp_path / "cut.pth"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(rtmo.CheckpointIntegrityError, match="truncated or corrupt"):
        rtmo.load_checkpoint(path)


def test_load_checkpoint_reports_non_rtmo_checkpoint(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(3)}}, path)
    with pytest.raises(rtmo.CheckpointError, match="not an RTMO checkpoint: missing 'backbone.stem.conv.conv.weight'"):
        rtmo.load_checkpoint(path)


def test_load_checkpoint_reports_missing_file_and_unknown_name():
    with pytest.raises(rtmo.CheckpointError, match="no such file, and not a zoo name"):
        rtmo.load_checkpoint("rtmo-x_nowhere")


def test_load_checkpoint_builds_seeded_random_weights_as_rtmo_serve_accepts():
    model = rtmo.load_checkpoint("random:tiny:14", seed=1)
    again = rtmo.load_checkpoint("random:tiny:14", seed=1)
    assert model.config.num_keypoints == 14 and model.checkpoint_sha256 == "random"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(rtmo.CheckpointError, match="accepted random:<size> or random:<size>:<keypoints>"):
        rtmo.load_checkpoint("random:tiny:many")
