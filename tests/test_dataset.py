"""Posed datasets: loading, validation errors that name the culprit, mirroring, the synthetic set."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.cameras import camera_label, intrinsics_from_focal, lookat_pose
from core.errors import DatasetError
from training.dataset import flip_label, mirror_dataset, open_dataset
from training.synthetic import SynthSettings, write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]


def _label(yaw: float = 0.3) -> list[float]:
    cam = lookat_pose(math.pi / 2 + yaw, math.pi / 2 - 0.2, 2.7)
    return camera_label(cam, intrinsics_from_focal(4.2647))[0].tolist()


def _make(root: Path, names=("a.png", "sub/b.png"), size=(16, 16), labels=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(root / name)
    if labels is None:
        labels = [[n, _label()] for n in names]
    (root / "dataset.json").write_text(json.dumps({"labels": labels}))
    return root


def test_folder_and_zip_load_the_same(tmp_path):
    folder = _make(tmp_path / "ds")
    ds = open_dataset(folder)
    assert len(ds) == 2 and ds.resolution == 16 and ds.labels.shape == (2, 25)
    img, c = ds[1]
    assert img.dtype == torch.uint8 and img.shape == (3, 16, 16)
    assert np.array_equal(img.numpy(), np.asarray(Image.open(folder / "sub/b.png")).transpose(2, 0, 1))
    assert torch.allclose(c, torch.tensor(_label()))
    z = tmp_path / "ds.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in folder.rglob("*"):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    dz = open_dataset(z)
    assert dz.names == ds.names
    assert torch.equal(dz[1][0], img) and np.array_equal(dz.labels, ds.labels)


@pytest.mark.parametrize("case, expected", [
    ("missing_label", "sub/b.png: image has no label"),
    ("extra_label", "label for ghost.png but no such image"),
    ("short_label", "label of a.png has 24 numbers, expected 25"),
    ("nan_label", "label of a.png contains NaN"),
    ("null_labels", "'labels' is null"),
    ("non_square", "b.png: image is 16x12, images must be square"),
    ("mixed_res", "mixed resolutions"),
    ("unreadable", "b.png: unreadable image"),
    ("no_json", "no dataset.json"),
    ("bad_json", "not valid JSON"),
])
def test_bad_datasets_name_the_problem(tmp_path, case, expected):
    root = _make(tmp_path / "ds")
    labels = json.loads((root / "dataset.json").read_text())["labels"]
    if case == "missing_label":
        labels = labels[:1]
    elif case == "extra_label":
        labels.append(["ghost.png", _label()])
    elif case == "short_label":
        labels[0][1] = labels[0][1][:24]
    elif case == "nan_label":
        labels[0][1][3] = float("nan")
    elif case == "null_labels":
        labels = None
    elif case == "non_square":
        Image.new("RGB", (16, 12)).save(root / "sub/b.png")
    elif case == "mixed_res":
        Image.new("RGB", (32, 32)).save(root / "sub/b.png")
    elif case == "unreadable":
        (root / "sub/b.png").write_bytes(b"definitely not a png")
    if case == "no_json":
        (root / "dataset.json").unlink()
    elif case == "bad_json":
        (root / "dataset.json").write_text("{labels: ")
    else:
        (root / "dataset.json").write_text(json.dumps({"labels": labels}))
    with pytest.raises(DatasetError) as e:
        open_dataset(root)
    assert expected in str(e.value)


def _project(c: np.ndarray, point: np.ndarray) -> np.ndarray:
    """World point -> normalised pixel (u, v) through label c (OpenCV camera)."""
    m, k = c[:16].reshape(4, 4), c[16:].reshape(3, 3)
    p = np.linalg.inv(m) @ np.append(point, 1.0)
    uvw = k @ p[:3]
    return uvw[:2] / uvw[2]


def test_flip_label_mirrors_the_projection():
    c = np.asarray(_label(yaw=0.5), dtype=np.float64)
    f = flip_label(c).astype(np.float64)
    assert np.allclose(flip_label(flip_label(c)), c, atol=1e-6)
    assert f[3] == pytest.approx(-c[3]) and f[7] == pytest.approx(c[7]) and f[11] == pytest.approx(c[11])
    for point in ([0.1, 0.05, -0.2], [-0.3, 0.2, 0.1]):
        u, v = _project(c, np.array(point))
        u2, v2 = _project(f, np.array([-point[0], point[1], point[2]]))
        assert u2 == pytest.approx(1 - u, abs=1e-5) and v2 == pytest.approx(v, abs=1e-5)


def test_mirror_dataset_writes_flipped_copies(tmp_path):
    src = _make(tmp_path / "src")
    dst = mirror_dataset(src, tmp_path / "dst")
    ds = open_dataset(dst)
    assert len(ds) == 4
    i, j = ds.names.index("a.png"), ds.names.index("a_mirror.png")
    assert np.array_equal(ds.image(j), ds.image(i)[:, :, ::-1])
    assert np.allclose(ds.labels[j], flip_label(ds.labels[i]))


def test_synthetic_dataset_is_deterministic_and_consistent(tmp_path):
    settings = SynthSettings(kinds=("box",), max_prims=1)
    a = write_synthetic_dataset(tmp_path / "a", 6, 32, seed=3, settings=settings, batch=4)
    b = write_synthetic_dataset(tmp_path / "b", 6, 32, seed=3, settings=settings, batch=6)
    c = write_synthetic_dataset(tmp_path / "c", 6, 32, seed=4, settings=settings)
    da, db, dc = open_dataset(a), open_dataset(b), open_dataset(c)
    assert len(da) == 6 and da.resolution == 32
    assert np.allclose(da.labels, db.labels)
    assert all(np.abs(da.image(i).astype(int) - db.image(i).astype(int)).max() <= 1 for i in range(6))
    assert not np.allclose(da.labels, dc.labels)
    # Cameras sit on the sphere of the configured radius, look at the origin, with the configured focal.
    centres = da.labels[:, [3, 7, 11]]
    assert np.allclose(np.linalg.norm(centres, axis=1), settings.radius, atol=1e-5)
    forward = da.labels[:, [2, 6, 10]]
    assert np.allclose(forward, -centres / settings.radius, atol=1e-5)
    assert np.allclose(da.labels[:, 16], settings.focal) and np.allclose(da.labels[:, 18], 0.5)
    # Every image shows an object on a white background: white corners, coloured centre.
    for i in range(6):
        img = da.image(i)
        assert (img[:, 0, 0] == 255).all()
        assert (img[:, 12:20, 12:20] < 250).any()


def test_object_stays_put_across_views(tmp_path):
    """Orbiting the same object keeps it centred: the image centre is always covered."""
    from training.synthetic import orbit_cameras, random_scenes, render
    settings = SynthSettings(kinds=("box",), max_prims=1)
    scene = random_scenes(torch.Generator().manual_seed(1), 1, settings)
    yaws = torch.linspace(-math.pi, math.pi, 7)[:6]
    cams = orbit_cameras(yaws, torch.full((6,), 0.3), settings.radius)
    scenes = {k: (v if k == "present" else v.expand(6, *v.shape[1:])) for k, v in scene.items()}
    imgs = render(scenes, cams, settings.focal, 32, settings.smooth).numpy()
    assert (imgs[:, 16, 16] < 250).any(axis=-1).all()
    assert len({imgs[i].tobytes() for i in range(6)}) == 6


def test_cli_check_reports_and_fails_cleanly(tmp_path):
    good = _make(tmp_path / "good", size=(32, 32))
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "main.py"), "dataset", *a],  # noqa: E731
                                    capture_output=True, text=True, cwd=ROOT)
    r = run("check", str(good))
    assert r.returncode == 0 and "2 images, 32x32" in r.stdout
    bad = _make(tmp_path / "bad", labels=[["a.png", _label()]])
    r = run("check", str(bad))
    assert r.returncode == 2 and "error: sub/b.png: image has no label" in r.stderr


def _focal_zero_label() -> list[float]:
    label = _label()
    label[16] = 0.0
    return label


@pytest.mark.parametrize("case, expected", [
    ("focal", "sub/b.png: focal length fx = 0 in dataset.json; it must be positive"),
    ("resolution", "images are 48x48; training needs a power of two"),
])
def test_check_applies_every_rule_train_applies(tmp_path, case, expected):
    """A dataset that `train` refuses is refused by `dataset check` with the same line (issue 30)."""
    if case == "focal":
        root = _make(tmp_path / "ds", size=(32, 32), labels=[["a.png", _label()], ["sub/b.png", _focal_zero_label()]])
    else:
        root = _make(tmp_path / "ds", size=(48, 48))
    main = [sys.executable, str(ROOT / "main.py")]
    check = subprocess.run([*main, "dataset", "check", str(root)], capture_output=True, text=True, cwd=ROOT)
    train = subprocess.run([*main, "train", "--data", str(root), "--out", str(tmp_path / "run"), "--batch", "2",
                            "--kimg", "0.002", "--device", "cpu"], capture_output=True, text=True, cwd=ROOT)
    for r in (check, train):
        assert r.returncode == 2 and expected in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


# ---- hostile datasets (issue 13) ----------------------------------------------------------------------------
def _zip_of(folder: Path, dst: Path, extra: dict[str, bytes] | None = None, labels_extra=()) -> Path:
    """`folder` as a zip, plus `extra` members (labelled in dataset.json when they are images)."""
    meta = json.loads((folder / "dataset.json").read_text())
    meta["labels"] += [[n, _label()] for n in labels_extra]
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p.name != "dataset.json":
                zf.write(p, p.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        zf.writestr("dataset.json", json.dumps(meta))
    return dst


@pytest.mark.parametrize("member", ["../evil.png", "/tmp/abs_evil.png", "C:/evil.png", "sub/..\\..\\evil.png"])
def test_unsafe_zip_member_names_are_refused_by_check_mirror_and_train(tmp_path, member):
    png = (tmp_path / "p.png")
    Image.new("RGB", (16, 16)).save(png)
    z = _zip_of(_make(tmp_path / "ds"), tmp_path / "evil.zip", {member: png.read_bytes()}, [member])
    with pytest.raises(DatasetError, match="unsafe member name"):
        open_dataset(z)  # what check and train use
    out = tmp_path / "deep" / "out"
    with pytest.raises(DatasetError, match="unsafe member name"):
        mirror_dataset(z, out)
    assert not list(tmp_path.glob("**/evil*.png")) and not Path("/tmp/abs_evil.png").exists()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but carries a few bytes of pixel data (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side, match", [(20_000, "decompression bomb"), (5_000, "5000x5000, larger than")])
def test_huge_png_is_refused_before_decoding(tmp_path, side, match):
    """400 megapixels (PIL's own bomb check) and 25 megapixels (over our MAX_RESOLUTION), in a few bytes."""
    root = _make(tmp_path / "ds")
    (root / "sub/b.png").write_bytes(_png_header_only(side, side))
    for decode in (False, True):
        with pytest.raises(DatasetError, match=f"sub/b.png: .*{match}"):
            open_dataset(root, decode=decode)


def test_bad_crc_member_names_the_file(tmp_path):
    z = _zip_of(_make(tmp_path / "ds"), tmp_path / "ds.zip")
    raw = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("sub/b.png")
    raw[info.header_offset + 30 + len(info.filename) + 40] ^= 0xFF  # inside the stored PNG data
    z.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="sub/b.png: unreadable"):
        open_dataset(z)


def test_corrupt_image_data_fails_check_and_train_names_the_file(tmp_path):
    root = _make(tmp_path / "ds", size=(64, 64))
    import struct
    import zlib
    data = bytearray((root / "sub/b.png").read_bytes())
    start = data.index(b"IDAT")
    length = struct.unpack(">I", data[start - 4:start])[0]
    data[start + 4 + 20: start + 4 + length] = bytes(length - 20)  # a broken pixel stream...
    data[start + 4 + length: start + 8 + length] = struct.pack(">I", zlib.crc32(data[start:start + 4 + length]))
    (root / "sub/b.png").write_bytes(bytes(data))  # ...with correct chunk CRCs: Image.verify() passes it
    with pytest.raises(DatasetError, match="sub/b.png: unreadable image"):
        open_dataset(root, decode=True)  # dataset check
    ds = open_dataset(root)  # train reads headers up front and decodes while it runs
    with pytest.raises(DatasetError, match="sub/b.png: unreadable image") as e:
        ds.batch([0, 1])
    assert e.traceback[-1].path.name == "dataset.py"


def test_huge_dataset_json_is_refused_before_reading(tmp_path):
    root = _make(tmp_path / "ds")
    meta = (root / "dataset.json").read_text()
    with zipfile.ZipFile(tmp_path / "big.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(root.rglob("*.png")):
            zf.write(p, p.relative_to(root).as_posix())
        zf.writestr("dataset.json", meta + " " * (64 << 20))
    assert (tmp_path / "big.zip").stat().st_size < 1 << 20
    with pytest.raises(DatasetError, match="dataset.json: .* bytes, more than"):
        open_dataset(tmp_path / "big.zip")
