"""rtmo.zoo: the model-zoo table, verified and cached downloads."""

import hashlib

import pytest

import rtmo
from rtmo import zoo


@pytest.fixture()
def some_file(tmp_path):
    path = tmp_path / "rtmo-t_random.pth"
    path.write_bytes(b"weights" * 1000)
    return path


def test_zoo_table_pins_hash_prefixes_from_file_names():
    assert len(zoo.ZOO) == 11
    assert zoo.ZOO["rtmo-s_body7"].sha256_prefix == "dac2bf74"
    assert all(e.sha256_prefix and len(e.sha256_prefix) == 8 for e in zoo.ZOO.values())


def test_download_verifies_hash_and_caches(tmp_path, monkeypatch, some_file):
    good = some_file
    monkeypatch.setenv("RTMO_CACHE_DIR", str(tmp_path / "cache"))
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    entry = zoo.ZooEntry(good.as_uri(), digest[:8])  # file:// goes through the same urllib path
    local = zoo.download(entry)
    assert local.read_bytes() == good.read_bytes()
    assert zoo.download(zoo.ZooEntry("file:///nonexistent/" + good.name, digest[:8])) == local  # cached: no fetch


def test_download_rejects_hash_mismatch_and_leaves_nothing(tmp_path, monkeypatch, some_file):
    good = some_file
    monkeypatch.setenv("RTMO_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(rtmo.CheckpointIntegrityError, match="does not start with the pinned 00000000"):
        zoo.download(zoo.ZooEntry(good.as_uri(), "00000000"))
    assert not any((tmp_path / "cache" / "checkpoints").iterdir())


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RTMO_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(rtmo.CheckpointUnavailableError, match="cannot download .*pass the local .pth path"):
        zoo.download(zoo.ZooEntry("http://127.0.0.1:9/rtmo-s.pth", None), timeout_s=2)
