"""EG3D posed-image datasets: a folder or zip of images with a root dataset.json (ref §5.1).

`dataset.json` = {"labels": [[relative_path, [25 floats]], ...]}; the 25 numbers are the OpenCV
cam2world matrix and normalised intrinsics (ref §4.1). `open_dataset` validates everything up front
and raises DatasetError naming the offending file or field; `mirror_dataset` writes the x-flipped
copy with correctly flipped cameras (ref §5.2).

Datasets come from the internet: member names that would escape the dataset (`../`, absolute, drive
letters, backslashes) are refused, sizes are bounded before anything is read or decoded (decompression
bombs), and every read or decode error names the file.
"""
from __future__ import annotations

import io
import json
import math
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.errors import DatasetError, one_line
from core.fileio import atomic_path
from core.progress import Progress, report

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
LABEL_DIM = 25
CACHE_LIMIT_BYTES = 1 << 30
MAX_RESOLUTION = 4096
"""Largest image side (EG3D trains at 512; bigger images are refused before they are decoded)."""
MAX_IMAGE_BYTES = 64 << 20
"""Largest image file."""
MAX_JSON_BYTES_PER_IMAGE = 4096
"""dataset.json may hold this much per image (a label is about 600 bytes) plus 1 MB."""
MAX_FILES = 10_000_000


def _unsafe_name(name: str) -> bool:
    """A member name that could resolve outside the dataset: absolute, a drive, '..', or odd characters."""
    unified = name.replace("\\", "/")
    parts = unified.split("/")
    return (unified.startswith("/") or re.match(r"^[A-Za-z]:", unified) is not None or ".." in parts
            or any(ord(c) < 32 for c in name))


class _Container:
    """Uniform read access to a folder or a zip archive (paths use '/')."""

    def __init__(self, path: Path):
        self.path = path
        self._zip = None
        if path.is_dir():
            self.names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        elif path.is_file() and zipfile.is_zipfile(path):
            try:
                self._zip = zipfile.ZipFile(path)
                infos = self._zip.infolist()
            except (zipfile.BadZipFile, OSError, ValueError) as e:
                raise DatasetError(f"{path}: unreadable zip archive ({e})") from None
            if len(infos) > MAX_FILES:
                raise DatasetError(f"{path}: more than {MAX_FILES:,} files")
            bad = [i.filename for i in infos if _unsafe_name(i.filename)]
            if bad:
                raise DatasetError(f"{path}: unsafe member name {bad[0][:120]!r} (it would resolve outside the "
                                   "dataset); refusing the archive")
            self.names = sorted(i.filename for i in infos if not i.filename.endswith("/"))
            self._sizes = {i.filename: i.file_size for i in infos}
        elif not path.exists():
            raise DatasetError(f"{path}: no such dataset folder or zip")
        else:
            raise DatasetError(f"{path}: not a folder or a zip archive")

    def size(self, name: str) -> int:
        if self._zip is not None:
            return self._sizes[name]
        return (self.path / name).stat().st_size

    def read(self, name: str, limit: int) -> bytes:
        """The bytes of `name` (at most `limit`, else DatasetError); CRC and I/O errors name the file."""
        try:
            size = self.size(name)
            if size > limit:
                raise DatasetError(f"{name}: {size:,} bytes, more than the {limit:,} allowed")
            if self._zip is not None:
                return self._zip.read(name)
            return (self.path / name).read_bytes()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
            raise DatasetError(f"{name}: unreadable in {self.path.name} ({e})") from None


def _parse_labels(raw: bytes, where: str) -> dict[str, np.ndarray]:
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or "labels" not in meta:
        raise DatasetError(f"{where}: missing the 'labels' field")
    entries = meta["labels"]
    if entries is None:
        raise DatasetError(f"{where}: 'labels' is null (the dataset tool found images without labels)")
    if not isinstance(entries, list):
        raise DatasetError(f"{where}: 'labels' must be a list of [path, [25 numbers]]")
    labels: dict[str, np.ndarray] = {}
    for i, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise DatasetError(f"{where}: labels[{i}] must be [relative_path, [25 numbers]]")
        name = entry[0].replace("\\", "/")
        value = entry[1]
        if not isinstance(value, list) or not all(isinstance(v, (int, float)) for v in value):
            raise DatasetError(f"{where}: label of {name} must be a list of numbers")
        if len(value) != LABEL_DIM:
            raise DatasetError(f"{where}: label of {name} has {len(value)} numbers, expected {LABEL_DIM}")
        arr = np.asarray(value, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise DatasetError(f"{where}: label of {name} contains NaN or infinity")
        if name in labels:
            raise DatasetError(f"{where}: {name} is labelled twice")
        labels[name] = arr
    return labels


@dataclass(frozen=True)
class DatasetInfo:
    path: Path
    count: int
    resolution: int
    label_mean_radius: float

    def describe(self) -> str:
        return (f"{self.path}: {self.count} images, {self.resolution}x{self.resolution}, 25-number camera labels "
                f"(mean camera distance {self.label_mean_radius:.3f})")


class PosedDataset:
    """Validated EG3D dataset. ds[i] -> (uint8 image [3,R,R], float32 label [25])."""

    def __init__(self, path: str | Path, progress: Progress | None = None, decode: bool = False):
        self.path = Path(path)
        self._store = _Container(self.path)
        if "dataset.json" not in self._store.names:
            raise DatasetError(f"{self.path}: no dataset.json at the root")
        images = [n for n in self._store.names if Path(n).suffix.lower() in IMAGE_EXTENSIONS]
        json_limit = (1 << 20) + MAX_JSON_BYTES_PER_IMAGE * len(images)
        labels = _parse_labels(self._store.read("dataset.json", json_limit), f"{self.path.name}/dataset.json")
        if not images:
            raise DatasetError(f"{self.path}: contains no images")
        unlabelled = [n for n in images if n not in labels]
        if unlabelled:
            raise DatasetError(f"{unlabelled[0]}: image has no label in dataset.json "
                               f"({len(unlabelled)} unlabelled images)")
        present = set(images)
        missing = [n for n in labels if n not in present]
        if missing:
            raise DatasetError(f"dataset.json: label for {missing[0]} but no such image "
                               f"({len(missing)} labels without images)")
        self.names = images
        self.labels = np.stack([labels[n] for n in images])
        self.resolution = self._check_images(progress, decode)
        self._cache: dict[int, np.ndarray] | None = (
            {} if len(images) * 3 * self.resolution ** 2 <= CACHE_LIMIT_BYTES else None)

    def _check_images(self, progress: Progress | None, decode: bool) -> int:
        """Every image's header (size, square, one resolution); with `decode` also all of its pixels."""
        resolution = None
        for i, name in enumerate(self.names):
            if decode:
                w, h = self._decode(name).shape[1:][::-1]
            else:
                with self._open_image(name) as im:
                    try:
                        im.verify()
                    except Exception as e:  # noqa: BLE001  (PIL raises many types on corrupt data)
                        raise DatasetError(f"{name}: unreadable image ({one_line(e, 160)})") from None
                    w, h = im.size
            if w != h:
                raise DatasetError(f"{name}: image is {w}x{h}, images must be square")
            if resolution is None:
                resolution, first = w, name
            elif w != resolution:
                raise DatasetError(f"{name}: image is {w}x{h} but {first} is {resolution}x{resolution} "
                                   f"(mixed resolutions)")
            if i % 256 == 0 or i == len(self.names) - 1:
                report(progress, i + 1, len(self.names), "checking images")
        return resolution

    def __len__(self) -> int:
        return len(self.names)

    def _open_image(self, name: str) -> Image.Image:
        """The image's header, checked against MAX_RESOLUTION before any pixel is decoded."""
        data = self._store.read(name, MAX_IMAGE_BYTES)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))
        except Exception as e:  # noqa: BLE001  (unknown format, decompression bomb, corrupt header: many types)
            raise DatasetError(f"{name}: unreadable image ({one_line(e, 160)})") from None
        w, h = im.size
        if not (0 < w <= MAX_RESOLUTION and 0 < h <= MAX_RESOLUTION):
            im.close()
            raise DatasetError(f"{name}: image is {w}x{h}, larger than the {MAX_RESOLUTION}x{MAX_RESOLUTION} "
                               "allowed")
        return im

    def _decode(self, name: str) -> np.ndarray:
        """All pixels of `name` as uint8 [3,H,W]; any decode error names the file."""
        with self._open_image(name) as im:
            try:
                return np.asarray(im.convert("RGB")).transpose(2, 0, 1).copy()
            except Exception as e:  # noqa: BLE001  (truncated or corrupt data: OSError, SyntaxError, ...)
                raise DatasetError(f"{name}: unreadable image data ({one_line(e, 160)})") from None

    def image(self, idx: int) -> np.ndarray:
        """uint8 [3,R,R]."""
        if self._cache is not None and idx in self._cache:
            return self._cache[idx]
        arr = self._decode(self.names[idx])
        if arr.shape[1:] != (self.resolution, self.resolution):
            raise DatasetError(f"{self.names[idx]}: decoded to {arr.shape[2]}x{arr.shape[1]}, expected "
                               f"{self.resolution}x{self.resolution}")
        if self._cache is not None:
            self._cache[idx] = arr
        return arr

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.image(idx)), torch.from_numpy(self.labels[idx])

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images [B,3,R,R] and labels [B,25] for the given indices."""
        idx = [int(i) for i in indices]
        return (torch.from_numpy(np.stack([self.image(i) for i in idx])),
                torch.from_numpy(self.labels[idx]))

    def label_std(self) -> torch.Tensor:
        """Per-dimension std of the labels (the original's `dataset_label_std` buffer)."""
        return torch.from_numpy(self.labels.std(axis=0).astype(np.float32))

    def info(self) -> DatasetInfo:
        radius = float(np.linalg.norm(self.labels[:, [3, 7, 11]], axis=1).mean())
        return DatasetInfo(self.path, len(self), self.resolution, radius)


def open_dataset(path: str | Path, progress: Progress | None = None, decode: bool = False) -> PosedDataset:
    """Open and validate a dataset; raises DatasetError naming the bad file or field.

    `decode` decodes every image now (dataset check); otherwise only headers are read and a later decode
    error names the file when the image is first used."""
    return PosedDataset(path, progress=progress, decode=decode)


def check_trainable(ds: PosedDataset) -> None:
    """The rules `train` applies to a dataset beyond its format, in one place so that `dataset check` applies
    every one of them too: a power-of-two resolution the networks can make, positive focal lengths."""
    from training.config import MIN_RESOLUTION
    res = ds.resolution
    if res < MIN_RESOLUTION or res & (res - 1):
        raise DatasetError(f"{ds.path.name}: images are {res}x{res}; training needs a power of two from "
                           f"{MIN_RESOLUTION} up (resize the dataset)")
    for col, name in ((16, "fx"), (20, "fy")):
        bad = np.flatnonzero(~(ds.labels[:, col] > 0))
        if len(bad):
            raise DatasetError(f"{ds.names[bad[0]]}: focal length {name} = {ds.labels[bad[0], col]:g} in "
                               f"dataset.json; it must be positive ({len(bad)} label(s) like this)")


def flip_label(label: np.ndarray) -> np.ndarray:
    """Label of the x-mirrored image: cam2world' = D cam2world D with D = diag(-1,1,1,1) (ref §5.2)."""
    out = np.array(label, dtype=np.float32, copy=True)
    m = out[:16].reshape(4, 4)
    d = np.diag([-1.0, 1.0, 1.0, 1.0]).astype(np.float32)
    out[:16] = (d @ m @ d).reshape(16)
    if not math.isclose(float(out[18]), 0.5, abs_tol=1e-3):
        raise DatasetError(f"mirroring assumes a centred principal point, got cx={out[18]:.4f}")
    return out


def mirror_dataset(src: str | Path, dst: str | Path, progress: Progress | None = None) -> Path:
    """Write src's images plus `<name>_mirror.png` copies (flipped image and camera) into folder dst."""
    ds = open_dataset(src)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, name in enumerate(ds.names):
        img = Image.fromarray(ds.image(i).transpose(1, 2, 0))
        stem = Path(name).with_suffix("")
        for rel, im, label in ((f"{stem}.png", img, ds.labels[i]),
                               (f"{stem}_mirror.png", img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                                flip_label(ds.labels[i]))):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dst / rel) as tmp:
                im.save(tmp, format="PNG")
            entries.append([rel, [float(v) for v in label]])
        report(progress, i + 1, len(ds), "mirroring")
    with atomic_path(dst / "dataset.json") as tmp:
        tmp.write_text(json.dumps({"labels": entries}))
    return dst
