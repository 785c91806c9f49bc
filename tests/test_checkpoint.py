import hashlib
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import rtmo
from mmpose_reference import run_reference
from rtmo import zoo
from rtmo.build.export import load_model
from rtmo.checkpoint import read_state_dict
from rtmo.checkpoint_pickle import Placeholder
from rtmo.cli import build_parser
from rtmo.serving.cpu import artifact_dir

FORMATS = {"zip": True, "legacy": False}  # _use_new_zipfile_serialization


def _save_mmpose_style(model: rtmo.RTMO, path, *, zip_format: bool = True, **extra_meta) -> None:
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
    torch.save({"meta": meta, "state_dict": model.state_dict()}, path, _use_new_zipfile_serialization=zip_format)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    model = rtmo.RTMO(rtmo.RTMOConfig(backbone_config=rtmo.CSPConfig(size="tiny"), num_keypoints=14))
    path = tmp_path_factory.mktemp("ckpt") / "rtmo-t_random.pth"
    _save_mmpose_style(model, path)
    return model, path


@pytest.mark.parametrize("form", FORMATS)
def test_load_checkpoint_infers_size_keypoints_and_input_and_restores_weights(tmp_path, tiny_checkpoint, form):
    original, _ = tiny_checkpoint
    path = tmp_path / f"rtmo-t_{form}.pth"
    _save_mmpose_style(original, path, zip_format=FORMATS[form], torch_version=torch.__version__)
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


class _WritesAFile:
    """What a malicious checkpoint holds: unpickling it with plain pickle would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


class _WritesOnSetState:
    """Pickled by NEWOBJ + BUILD; plain pickle would call ``__setstate__``, which creates the marker."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __setstate__(self, state):
        open(state["marker"], "w").close()


class _SetWithState:
    """An allow-listed call (``set``) followed by a BUILD the restricted unpickler does not do."""

    def __reduce__(self):
        return (set, ([1, 2],), {"attribute": 1})


@pytest.mark.parametrize("form", FORMATS)
def test_load_checkpoint_never_runs_pickled_code_and_loads_the_weights(tmp_path, tiny_checkpoint, form):
    original, _ = tiny_checkpoint
    opened, executed, built = tmp_path / "opened", tmp_path / "executed", tmp_path / "built"
    path = tmp_path / "evil.pth"
    meta = {
        "hook": _WritesAFile(opened),
        "nested": [{"payload": _RunsCode(executed)}, _WritesOnSetState(built)],
        "entry": zoo.ZooEntry("x", None),
    }
    torch.save({"meta": meta, "state_dict": original.state_dict()}, path, _use_new_zipfile_serialization=FORMATS[form])
    loaded = rtmo.load_checkpoint(path)
    assert not opened.exists() and not executed.exists() and not built.exists()
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), loaded.state_dict().values()))
    torch.load(path, weights_only=False)  # the payloads are live: plain unpickling runs all three
    assert opened.exists() and executed.exists() and built.exists()


@pytest.mark.parametrize("form", FORMATS)
def test_load_checkpoint_skips_objects_outside_the_allow_list_and_reports_them_at_debug(
    tmp_path, tiny_checkpoint, form, caplog
):
    original, _ = tiny_checkpoint
    path = tmp_path / f"{form}.pth"
    meta = {"torch_version": torch.__version__, "odd": _SetWithState(), "model": torch.nn.Linear(2, 2)}
    torch.save({"meta": meta, "state_dict": original.state_dict()}, path, _use_new_zipfile_serialization=FORMATS[form])
    with caplog.at_level(logging.DEBUG, logger="rtmo.checkpoint"):
        state, meta = read_state_dict(path)
    assert set(state) == set(original.state_dict())
    assert isinstance(meta["torch_version"], Placeholder)
    assert meta["torch_version"].global_name == "torch.torch_version.TorchVersion"
    assert meta["torch_version"].args == (str(torch.__version__),)
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("meta.torch_version: skipped torch.torch_version.TorchVersion" in m for m in debug), debug
    assert any("meta.odd: skipped refused: setting the state of a set" in m for m in debug), debug
    assert any(m.startswith(f"{path}: meta.model: skipped") for m in debug), debug
    assert not list(tmp_path.glob("*.patch"))  # the legacy format's module-source check never ran


def test_load_checkpoint_names_where_a_non_tensor_sits_in_the_weights(tmp_path, tiny_checkpoint):
    original, _ = tiny_checkpoint
    state = dict(original.state_dict())
    state["backbone.stem.conv.conv.weight"] = torch.__version__
    state["head.extra"] = _SetWithState()
    path = tmp_path / "odd_weights.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(rtmo.CheckpointError) as info:
        rtmo.load_checkpoint(path)
    message = str(info.value)
    assert (
        "state_dict.backbone.stem.conv.conv.weight: torch.torch_version.TorchVersion (not on the allow-list" in message
    )
    assert "state_dict.head.extra: refused: setting the state of a set" in message


def test_load_checkpoint_refuses_torchscript_archives_without_loading_them(tmp_path, monkeypatch):
    path = tmp_path / "scripted.pth"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))

    def jit_load(*args, **kwargs):
        raise AssertionError("torch.jit.load must not run")

    monkeypatch.setattr(torch.jit, "load", jit_load)
    with pytest.raises(rtmo.CheckpointError, match="a TorchScript archive .* loading it would run its code"):
        rtmo.load_checkpoint(path)


def test_load_checkpoint_refuses_pre_0_4_tar_checkpoints(tmp_path):
    payload = tmp_path / "storages"
    payload.write_bytes(b"torch would extract this member to disk")
    path = tmp_path / "old.pth"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(payload, arcname="storages")
    with pytest.raises(rtmo.CheckpointError, match="a tar archive .PyTorch < 0.4 torch.save., not supported"):
        rtmo.load_checkpoint(path)


def test_load_checkpoint_reports_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_bytes(b"not a pickle at all\n" * 10)
    with pytest.raises(rtmo.CheckpointIntegrityError, match="truncated or corrupt checkpoint file"):
        rtmo.load_checkpoint(path)
    torch.save(torch.zeros(3), path)
    with pytest.raises(rtmo.CheckpointError, match="expected a dict checkpoint, got Tensor"):
        rtmo.load_checkpoint(path)


def _ema_hook_layout(ema: dict, source: dict) -> dict:
    # What MMEngine's EMAHook.before_save_checkpoint leaves: EMA weights in state_dict, source in ema_state_dict.
    return {
        "state_dict": ema,
        "ema_state_dict": {"steps": torch.tensor(7), **{f"module.{k}": v for k, v in source.items()}},
    }


def test_checkpoint_weights_choose_ema_or_source_and_say_which_is_served(tmp_path, tiny_checkpoint, caplog):
    original, _ = tiny_checkpoint
    source = {k: v + 1 if v.is_floating_point() else v for k, v in original.state_dict().items()}
    path = tmp_path / "epoch_3.pth"
    torch.save(_ema_hook_layout(original.state_dict(), source), path)
    with caplog.at_level(logging.INFO, logger="rtmo.checkpoint"):
        ema = rtmo.load_checkpoint(path)
        from_source = rtmo.load_checkpoint(path, checkpoint_weights="source")
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), ema.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(source.values(), from_source.state_dict().values()))
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("serving the EMA weights (state_dict" in m for m in info), info
    assert any("serving the source weights (ema_state_dict" in m for m in info), info


def test_checkpoint_weights_reach_the_export_provenance_the_serve_cache_and_the_clis(tmp_path, tiny_checkpoint):
    original, _ = tiny_checkpoint
    source = {k: v * 2 if v.is_floating_point() else v for k, v in original.state_dict().items()}
    path = tmp_path / "epoch_1.pth"
    torch.save(_ema_hook_layout(original.state_dict(), source), path)
    model, provenance = load_model(str(path), checkpoint_weights="source")
    assert provenance["checkpoint_weights"] == "source"
    assert all(torch.equal(a, b) for a, b in zip(source.values(), model.state_dict().values()))
    assert load_model(str(path))[1]["checkpoint_weights"] == "ema"
    sha = model.checkpoint_sha256
    assert artifact_dir(str(path), sha, top_k=256, checkpoint_weights="source") != artifact_dir(
        str(path), sha, top_k=256
    )
    assert build_parser().parse_args(["serve", "--checkpoint-weights", "source"]).checkpoint_weights == "source"
    assert build_parser().parse_args(["serve"]).checkpoint_weights == "ema"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--checkpoint-weights", "averaged"])


def test_checkpoint_weights_source_needs_the_ema_hook_section(tiny_checkpoint):
    _, path = tiny_checkpoint
    with pytest.raises(rtmo.CheckpointError, match="checkpoint_weights='source' needs the ema_state_dict"):
        rtmo.load_checkpoint(path, checkpoint_weights="source")
    with pytest.raises(rtmo.CheckpointError, match="checkpoint_weights='averaged': accepted ema, source"):
        rtmo.load_checkpoint(path, checkpoint_weights="averaged")


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


# Checkpoints made by MMPose's own code in the reference environment (tests/mmpose_ref/run_reference.py).


@pytest.mark.parametrize("options", [(), ("--format", "zip")], ids=["zoo-legacy", "zoo-zip"])
def test_mmpose_zoo_checkpoints_load_in_either_format(mmpose_checkpoint, options):
    path, _ = mmpose_checkpoint("body7", "t", *options)
    # make-checkpoint's meta holds only NumPy and plain types, so plain torch.load can say what the weights are
    expected = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    state, meta = read_state_dict(path)
    assert meta["dataset_meta"]["num_keypoints"] == 17
    assert isinstance(meta["dataset_meta"]["sigmas"], np.ndarray)
    assert set(state) == set(expected) and all(torch.equal(state[k], expected[k]) for k in expected)
    assert rtmo.load_checkpoint(path).config.backbone_config.size == "tiny"


@pytest.fixture(scope="module")
def runner_checkpoints(mmpose_python, tmp_path_factory):
    """``ema_hook -> make-runner-checkpoint's report``: epoch_1.pth and best_coco_AP_epoch_1.pth written by MMEngine's
    runner and CheckpointHook while "training" RTMO-t, with and without the config's EMAHook."""
    made = {}

    def make(ema_hook: bool) -> dict:
        if ema_hook not in made:
            out = tmp_path_factory.mktemp("runner-ema" if ema_hook else "runner")
            options = () if ema_hook else ("--no-ema-hook",)
            made[ema_hook] = run_reference(
                mmpose_python,
                "make-runner-checkpoint",
                "--dataset",
                "body7",
                "--size",
                "t",
                "--out-dir",
                str(out),
                *options,
            )
        return made[ema_hook]

    return make


def _assert_same_weights(model: rtmo.RTMO, expected: dict) -> None:
    state = model.state_dict()
    assert set(state) == set(expected)
    assert all(torch.equal(state[k], expected[k]) for k in state)


@pytest.mark.parametrize("form", ["epoch_checkpoint", "best_checkpoint"])
def test_runner_checkpoints_with_ema_hook_serve_the_chosen_weights(runner_checkpoints, form, caplog):
    made = runner_checkpoints(True)
    assert made["ema_differs"] and made["message_hub_types"] == ["HistoryBuffer"]
    sections = made["sections"][Path(made[form]).name]
    assert {"meta", "state_dict", "ema_state_dict", "message_hub"} <= set(sections)
    assert ("optimizer" in sections) == (form == "epoch_checkpoint")
    expected = torch.load(made["expected_weights"], weights_only=True)
    with caplog.at_level(logging.DEBUG, logger="rtmo.checkpoint"):
        ema = rtmo.load_checkpoint(made[form])
    _assert_same_weights(ema, expected["ema"])
    assert any(
        "message_hub.log_scalars.train/loss: skipped mmengine.logging.history_buffer.HistoryBuffer" in r.message
        for r in caplog.records
    )
    _assert_same_weights(rtmo.load_checkpoint(made[form], checkpoint_weights="source"), expected["source"])


def test_runner_checkpoint_without_ema_hook_serves_its_state_dict(runner_checkpoints):
    made = runner_checkpoints(False)
    assert "ema_state_dict" not in made["sections"]["epoch_1.pth"]
    expected = torch.load(made["expected_weights"], weights_only=True)
    _assert_same_weights(rtmo.load_checkpoint(made["epoch_checkpoint"]), expected["source"])
    with pytest.raises(rtmo.CheckpointError, match="checkpoint_weights='source' needs the ema_state_dict"):
        rtmo.load_checkpoint(made["epoch_checkpoint"], checkpoint_weights="source")


def test_load_checkpoint_walks_a_container_that_holds_itself(tmp_path, tiny_checkpoint):
    original, _ = tiny_checkpoint
    loop: list = [torch.__version__]
    loop.append(loop)
    path = tmp_path / "loop.pth"
    torch.save({"meta": {"loop": loop}, "state_dict": original.state_dict()}, path)
    _, meta = read_state_dict(path)
    assert meta["loop"][1] is meta["loop"] and isinstance(meta["loop"][0], Placeholder)
