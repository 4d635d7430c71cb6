"""Checkpoint loading: original pickles read without running their code, bad files refused clearly,
our own format round-trips atomically."""
from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import time
import types
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from core.checkpoint import FORMAT, load_checkpoint, load_generator, resolve_checkpoint, save_checkpoint
from core.errors import CheckpointError
from core.network_pickle import read_network_pickle

ROOT = Path(__file__).resolve().parents[1]


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
    del data["digest"]  # as a file written before digests existed (else the digest check fires first)
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


# ---- hostile files (issue 13): one test per finding -------------------------------------------------------
def _numpy_scalar_exploit() -> bytes:
    """145 bytes that crashed the earlier loader (SIGSEGV): numpy dtype 'V8' rebuilt by BUILD with one object
    field and its flags cleared, so `hasobject` is false, then a scalar of it whose .item() dereferences a
    pointer taken from the file."""
    P = pickle

    def s(text: str) -> bytes:
        return P.SHORT_BINUNICODE + bytes([len(text)]) + text.encode()

    def dtype(name: str) -> bytes:
        return s("numpy") + s("dtype") + P.STACK_GLOBAL + s(name) + P.NEWFALSE + P.NEWTRUE + P.TUPLE3 + P.REDUCE
    fields = P.MARK + s("f0") + dtype("O8") + P.BININT1 + b"\x00" + P.TUPLE2 + P.DICT
    state = (P.MARK + P.BININT1 + b"\x03" + s("|") + P.NONE + s("f0") + P.TUPLE1 + fields
             + P.BININT1 + b"\x08" + P.BININT1 + b"\x01" + P.BININT1 + b"\x00" + P.TUPLE)
    return (P.PROTO + b"\x04" + P.EMPTY_DICT + s("training_set_kwargs")
            + s("numpy.core.multiarray") + s("scalar") + P.STACK_GLOBAL + dtype("V8") + state + P.BUILD
            + P.SHORT_BINBYTES + b"\x08" + (0x4141414141414141).to_bytes(8, "little") + P.TUPLE2 + P.REDUCE
            + P.SETITEM + P.STOP)


def _run_info(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "info", str(path)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, check=False)


def test_numpy_dtype_exploit_is_one_line_error_not_a_crash(tmp_path):
    path = tmp_path / "crash.pkl"
    path.write_bytes(_numpy_scalar_exploit())
    r = _run_info(path)
    assert r.returncode == 2, (r.returncode, r.stderr)  # a signal would be negative
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "numpy dtype" in r.stderr


def test_numpy_gains_still_read_as_plain_numbers(tmp_path):
    """What the original really stores (np.float64 gains) still loads, as a plain float."""
    import numpy as np
    path = tmp_path / "gain.pkl"
    path.write_bytes(pickle.dumps({"training_set_kwargs": {"gain": np.float64(0.125), "n": np.int64(-3)}}))
    with pytest.raises(CheckpointError, match="no G_ema"):
        read_network_pickle(path)
    from core.safe_unpickle import PICKLE_GLOBALS, SafeUnpickler
    value = SafeUnpickler(io.BytesIO(path.read_bytes()), PICKLE_GLOBALS).load()["training_set_kwargs"]
    assert value == {"gain": 0.125, "n": -3} and type(value["gain"]) is float


def test_stride_zero_tensor_in_pickle_is_refused_before_materialising(tmp_path):
    path = tmp_path / "amplify.pkl"
    path.write_bytes(pickle.dumps({"G_ema": torch.zeros(1).expand(1_000_000_000)}))
    assert path.stat().st_size < 2000
    with pytest.raises(CheckpointError, match=r"view of a storage of 1 elements"):
        read_network_pickle(path)


def test_stride_zero_label_std_in_ckpt_is_refused_before_materialising(tmp_path, small_G):
    path = tmp_path / "amplify.ckpt"
    save_checkpoint(path, small_G)
    data = torch.load(path, weights_only=True)
    data["G_ema"]["dataset_label_std"] = torch.zeros(1).expand(1_000_000_000)
    del data["digest"]
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=r"view of a storage of 1 elements"):
        load_generator(path)


def _persistent_pickle(monkeypatch, tmp_path, state: dict, name: str = "G.pkl"):
    """A snapshot pickle whose G_ema is a persistent TriPlaneGenerator with the given state."""
    fake = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("never called while dumping")
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    fake._reconstruct_persistent_obj = _reconstruct_persistent_obj
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
        m.setitem(sys.modules, "torch_utils.persistence", fake)

        class Persistent:
            def __reduce__(self):
                return (_reconstruct_persistent_obj, ({"type": "class", "version": 6, "module_src": "",
                                                       "class_name": "TriPlaneGenerator", "state": state},))
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"G_ema": Persistent()}))
    return path


def test_cyclic_kwargs_are_a_checkpoint_error(tmp_path, monkeypatch):
    cycle: list = []
    cycle.append(cycle)
    path = _persistent_pickle(monkeypatch, tmp_path, {"_init_kwargs": {"z_dim": cycle}, "_modules": {}})
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_generator(path)


@pytest.mark.parametrize("bad, match", [
    ({"w_dim": -1}, r"w_dim = -1 \(expected an integer in 1..4096\)"),
    ({"img_resolution": 2 ** 40}, "img_resolution"),
    ({"channel_base": 0}, "channel_base"),
    ({"z_dim": 1.5}, "z_dim"),
    ({"rendering_kwargs": {"box_warp": float("nan")}}, "box_warp"),
    ({"mapping_kwargs": {"num_layers": 10 ** 6}}, "num_layers"),
    ({"rendering_kwargs": {"superresolution_module": "os.system"}}, "superresolution"),
])
def test_bad_constructor_kwargs_are_refused_before_building(fixture_dir, bad, match):
    from core.generator_build import build_generator
    kwargs = {k: v for k, v in json.loads((fixture_dir / "config.json").read_text())["G_kwargs"].items()}
    kwargs.update(bad)
    with pytest.raises(CheckpointError, match=match):
        build_generator(kwargs, {}, source="bad")


def test_fifty_thousand_key_dict_fails_fast(tmp_path):
    path = tmp_path / "keys.pkl"
    t = torch.zeros(1)  # pickled once, then referenced from the memo
    path.write_bytes(pickle.dumps({"G_ema": {f"k{i}": t for i in range(50_000)}}))
    with pytest.raises(CheckpointError, match="more than 10,000 items"):
        read_network_pickle(path)


_M61 = (1 << 61) - 1  # integers i * _M61 + 1 all hash to 1


def _equal_hash_ints(n: int, batch: int, close: bytes) -> bytes:
    """MARK, n LONG1 integers of one hash, `close`; repeated in batches of `batch` items."""
    out = []
    for start in range(0, n, batch):
        out.append(pickle.MARK)
        for i in range(start, min(n, start + batch)):
            raw = (1 + i * _M61).to_bytes(16, "little")
            out.append(pickle.LONG1 + bytes([len(raw)]) + raw)
        out.append(close)
    return b"".join(out)


def _flood(kind: str, n: int) -> bytes:
    """A network pickle {'G_ema': <container of n equal-hash integers>} built opcode by opcode."""
    head = pickle.PROTO + b"\x04" + pickle.EMPTY_DICT + pickle.SHORT_BINUNICODE + b"\x05G_ema"
    if kind == "set":  # one ADDITEMS
        body = pickle.EMPTY_SET + _equal_hash_ints(n, n, pickle.ADDITEMS)
    elif kind == "set-batches":  # ADDITEMS of 1,000 (as pickle writes them)
        body = pickle.EMPTY_SET + _equal_hash_ints(n, 1000, pickle.ADDITEMS)
    elif kind == "set-small-batches":  # ADDITEMS of 50: no batch repeats many hashes, the set does
        body = pickle.EMPTY_SET + _equal_hash_ints(n, 50, pickle.ADDITEMS)
    elif kind == "frozenset":
        body = _equal_hash_ints(n, n, pickle.FROZENSET)
    else:  # set(list) / frozenset(list) calls
        name = kind.split("-")[0]
        body = (pickle.GLOBAL + b"builtins\n" + name.encode() + b"\n" + pickle.MARK + pickle.EMPTY_LIST
                + _equal_hash_ints(n, 1000, pickle.APPENDS) + pickle.TUPLE + pickle.REDUCE)
    return head + body + pickle.SETITEM + pickle.STOP


@pytest.mark.parametrize("kind", ["set", "set-batches", "set-small-batches", "frozenset", "set-call",
                                  "frozenset-call"])
@pytest.mark.parametrize("n", [50_000, 200_000])
def test_equal_hash_set_floods_are_refused_in_seconds(tmp_path, kind, n):
    """Sets of integers that all share one hash (insertion is quadratic) are refused before the set grows."""
    path = tmp_path / "flood.pkl"
    path.write_bytes(_flood(kind, n))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="more than 10,000 items|share one hash"):
        read_network_pickle(path)
    assert time.perf_counter() - t0 < 3.0


def test_equal_hash_dict_keys_are_refused(tmp_path):
    head = pickle.PROTO + b"\x04" + pickle.EMPTY_DICT + pickle.SHORT_BINUNICODE + b"\x05G_ema" + pickle.EMPTY_DICT
    items = b"".join(pickle.LONG1 + b"\x10" + (1 + i * _M61).to_bytes(16, "little") + pickle.NONE
                     for i in range(5000))
    path = tmp_path / "keys.pkl"
    path.write_bytes(head + pickle.MARK + items + pickle.SETITEMS + pickle.SETITEM + pickle.STOP)
    with pytest.raises(CheckpointError, match="share one hash"):
        read_network_pickle(path)


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.pkl"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_generator(fifo)
    from core.network_pickle import read_network_pickle as read
    with pytest.raises(CheckpointError, match="not a regular file"):
        read(fifo)


def test_digest_detects_changed_weights_and_old_files_still_load(tmp_path, small_G):
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, small_G)
    data = torch.load(path, weights_only=True)
    assert data["digest"].startswith("sha256:")
    data["G_ema"]["decoder.net.0.weight"][0, 0] += 1e-3  # a valid zip (good CRCs) with one changed weight
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="do not match the digest"):
        load_generator(path)
    del data["digest"]  # files written before digests existed load without the check
    torch.save(data, path)
    assert torch.equal(load_generator(path).state_dict()["decoder.net.0.weight"], data["G_ema"]["decoder.net.0.weight"])


def test_flipped_byte_in_ckpt_weights_is_detected(tmp_path, small_G):
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, small_G)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x10  # somewhere in the weight records
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        load_generator(path)


def test_nan_weights_are_reported(tmp_path, small_G):
    path = tmp_path / "nan.pkl"
    state = {k: v.clone() for k, v in small_G.state_dict().items()}
    state["decoder.net.0.weight"][1, 2] = float("nan")
    from core.generator_build import build_generator
    with pytest.raises(CheckpointError, match="decoder.net.0.weight contains NaN"):
        build_generator(small_G.init_kwargs, state, source=str(path))


def test_torch_error_text_becomes_one_line():
    from core.errors import one_line
    e = RuntimeError("shape mismatch\nException raised from foo at /pytorch/c10/x.cpp:12\nframe #0: bar")
    assert one_line(e) == "shape mismatch"
    assert one_line(ValueError()) == "ValueError"


def test_views_repeated_over_one_storage_cannot_inflate_memory(tmp_path, small_G):
    """Each view fits its storage, but 500 full views of one storage would be 500 copies once loaded."""
    big = torch.zeros(100_000)
    from core.safe_unpickle import check_amplification
    with pytest.raises(CheckpointError, match="claim"):
        check_amplification([big[:] for _ in range(500)])
    ckpt = tmp_path / "views.ckpt"
    save_checkpoint(ckpt, small_G)
    data = torch.load(ckpt, weights_only=True)
    data["training"] = {"views": [big[:] for _ in range(500)]}
    del data["digest"]
    torch.save(data, ckpt)
    with pytest.raises(CheckpointError, match="claim"):
        load_checkpoint(ckpt)


_SHARED = list(range(10_000))
with warnings.catch_warnings():  # TypedStorage is deprecated, but it is what EG3D's pickles hold
    warnings.simplefilter("ignore", UserWarning)
    _BLOB = torch.arange(1000, dtype=torch.float32).storage().__reduce__()[1][0]  # a legacy storage blob


class _SetOfShared:
    def __reduce__(self):
        return (set, (_SHARED,))


class _StorageOfShared:
    def __reduce__(self):
        return (torch.storage._load_from_bytes, (_BLOB,))


def test_shared_references_cannot_amplify_memory_or_time(tmp_path):
    """A few bytes that reference one object many times: a 2**30-node DAG, one blob turned into storages
    1,000 times, one list copied into sets 200 times."""
    from core.safe_unpickle import PICKLE_GLOBALS, SafeUnpickler
    dag: list = [0]
    for _ in range(30):
        dag = [dag, dag]
    path = tmp_path / "dag.pkl"
    path.write_bytes(pickle.dumps({"training_set_kwargs": dag}))
    assert path.stat().st_size < 1000
    with pytest.raises(CheckpointError, match="kwargs too large"):
        read_network_pickle(path)
    storages = SafeUnpickler(io.BytesIO(pickle.dumps([_StorageOfShared() for _ in range(1000)])),
                              PICKLE_GLOBALS).load()
    assert all(s is storages[0] for s in storages) and storages[0].flat[999] == 999
    path.write_bytes(pickle.dumps({"G_ema": [_SetOfShared() for _ in range(200)]}))
    with pytest.raises(CheckpointError, match="sets with more than"):
        read_network_pickle(path)
