"""Checkpoint loading: original pickles read without running their code, bad files refused clearly,
our own format round-trips atomically."""
from __future__ import annotations

import io
import os
import pickle
import sys
import types
import zipfile

import pytest
import torch

from core.checkpoint import (FORMAT, load_checkpoint, load_generator, read_network_pickle, resolve_checkpoint,
                             save_checkpoint)
from core.errors import CheckpointError


def test_original_pickle_reads_all_networks(snapshot_pkl):
    data = read_network_pickle(snapshot_pkl)
    assert set(data) >= {"G_ema", "G", "D"}
    assert data["D"]["class_name"] == "DualDiscriminator"
    assert data["training_set_kwargs"]["resolution"] == 256
    # G differs from G_ema on purpose in the fixture
    diff = [k for k in data["G"]["state_dict"]
            if not torch.equal(data["G"]["state_dict"][k], data["G_ema"]["state_dict"][k])]
    assert diff


def test_embedded_module_source_is_never_executed(tmp_path, monkeypatch):
    """A persistent object whose module_src would create a file: loading must not run it."""
    marker = tmp_path / "executed"
    fake = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("never called while dumping")
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    fake._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", fake)

    class Persistent:
        def __reduce__(self):
            src = f"open({str(marker)!r}, 'w').write('pwned')\nclass TriPlaneGenerator: pass\n"
            return (_reconstruct_persistent_obj, (dict(type="class", version=6, module_src=src,
                                                        class_name="TriPlaneGenerator", state={}),))
    path = tmp_path / "persistent.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Persistent()}))
    monkeypatch.delitem(sys.modules, "torch_utils.persistence")
    monkeypatch.delitem(sys.modules, "torch_utils")
    with pytest.raises(CheckpointError):
        load_generator(path)
    assert not marker.exists()


class _System:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/triplane_pwned",))


class _Eval:
    def __reduce__(self):
        import builtins
        return (builtins.eval, ("1+1",))


@pytest.mark.parametrize("payload,name", [(_System(), "system"), (_Eval(), "builtins.eval")])
def test_malicious_pickle_is_refused_naming_the_global(tmp_path, payload, name):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": payload}))
    with pytest.raises(CheckpointError, match=name):
        load_generator(path)
    assert not os.path.exists("/tmp/triplane_pwned")


def test_unknown_class_is_refused(tmp_path):
    path = tmp_path / "unknown.pkl"
    path.write_bytes(pickle.dumps({"G_ema": zipfile.ZipInfo("x")}))
    with pytest.raises(CheckpointError, match="zipfile.ZipInfo"):
        load_generator(path)


def test_truncated_pickle(tmp_path, snapshot_pkl):
    path = tmp_path / "truncated.pkl"
    path.write_bytes(snapshot_pkl.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_generator(path)


@pytest.mark.parametrize("content", [b"", os.urandom(4096), b"\x80" + os.urandom(4096)])
def test_random_bytes_and_empty_file(tmp_path, content):
    path = tmp_path / "junk.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_generator(path)


def test_missing_file_and_empty_run_dir(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator(tmp_path / "nope.pkl")
    with pytest.raises(CheckpointError, match="without network-snapshot"):
        load_generator(tmp_path)


def test_own_format_round_trip_and_weights_only(tmp_path, small_G):
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, small_G, training={"kimg": 1.5, "step": torch.tensor(3)})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["training"]["kimg"] == 1.5
    G = load_generator(path)
    a, b = small_G.state_dict(), G.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert G.rendering_kwargs == small_G.rendering_kwargs
    assert G.neural_rendering_resolution == small_G.neural_rendering_resolution
    assert not G.training
    assert not [p for p in tmp_path.iterdir() if p.name != "model.ckpt"]  # no temp file left


def test_run_directory_resolves_to_newest_snapshot(tmp_path, small_G):
    for kimg in (0, 4, 12):
        save_checkpoint(tmp_path / f"network-snapshot-{kimg:06d}.ckpt", small_G)
    assert resolve_checkpoint(tmp_path).name == "network-snapshot-000012.ckpt"


def test_checkpoint_with_missing_keys(tmp_path, small_G):
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, small_G)
    data = torch.load(path, weights_only=True)
    del data["G_ema"]["decoder.net.0.weight"]
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="missing weights.*decoder.net.0.weight"):
        load_generator(path)


def test_truncated_own_checkpoint(tmp_path, small_G):
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, small_G)
    path.write_bytes(path.read_bytes()[:50_000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_generator(path)


def test_foreign_torch_file_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a triplane-studio checkpoint"):
        load_checkpoint(path)


def test_failed_save_keeps_previous_file(tmp_path, small_G, monkeypatch):
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, small_G)
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, small_G)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]


def test_storage_blob_cannot_smuggle_globals(tmp_path):
    """A nested storage blob is read by torch's weights-only unpickler: code there is refused too."""
    blob = pickle.dumps(_System())
    outer = io.BytesIO()

    class Smuggle:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (blob,))
    pickle.dump({"G_ema": Smuggle()}, outer)
    path = tmp_path / "smuggle.pkl"
    path.write_bytes(outer.getvalue())
    with pytest.raises(CheckpointError, match="storage"):
        load_generator(path)
    assert not os.path.exists("/tmp/triplane_pwned")


def test_small_cpu_configuration_round_trips(tmp_path):
    """plane_resolution and sr_widths (extensions for CPU-sized models) survive save/load."""
    from core.triplane import TriPlaneGenerator
    kwargs = dict(z_dim=64, w_dim=64, c_dim=25, img_resolution=128, img_channels=3, channel_base=1024,
                  channel_max=32, plane_resolution=64, sr_kwargs={"sr_widths": [32, 16]},
                  rendering_kwargs={"superresolution_module": "training.superresolution.SuperresolutionHybrid2X",
                                    "depth_resolution": 8, "depth_resolution_importance": 8})
    G = TriPlaneGenerator(**kwargs).eval()
    G.neural_rendering_resolution = 32
    assert G.planes(G.mapping(torch.randn(1, 64), torch.zeros(1, 25))).shape == (1, 3, 32, 64, 64)
    assert "plane_resolution" not in TriPlaneGenerator(**{k: v for k, v in kwargs.items()
                                                          if k != "plane_resolution"}).init_kwargs
    save_checkpoint(tmp_path / "small.ckpt", G)
    H = load_generator(tmp_path / "small.ckpt")
    assert H.backbone.img_resolution == 64 and H.neural_rendering_resolution == 32
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), H.state_dict().values()))


def test_trained_checkpoints_keep_dataset_label_std_first(tmp_path, small_G, fixture_dir):
    """Original trained G/G_ema carry an unused `dataset_label_std` buffer as their first key (ref §1.1)."""
    sd = torch.load(fixture_dir / "state_dict.pt", weights_only=True)
    label_std = torch.rand(25)
    data = {"format": FORMAT, "version": 1, "G_kwargs": small_G.init_kwargs,
            "G_ema": {"dataset_label_std": label_std, **sd}}
    torch.save(data, tmp_path / "trained.ckpt")
    G = load_generator(tmp_path / "trained.ckpt")
    keys = list(G.state_dict())
    assert keys[0] == "dataset_label_std" and keys[1:] == list(sd)
    assert torch.equal(G.dataset_label_std, label_std)
