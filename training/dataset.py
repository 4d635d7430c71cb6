"""EG3D posed-image datasets: a folder or zip of images with a root dataset.json (ref §5.1).

`dataset.json` = {"labels": [[relative_path, [25 floats]], ...]}; the 25 numbers are the OpenCV
cam2world matrix and normalised intrinsics (ref §4.1). `open_dataset` validates everything up front
and raises DatasetError naming the offending file or field; `mirror_dataset` writes the x-flipped
copy with correctly flipped cameras (ref §5.2).
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from core.errors import DatasetError
from core.fileio import atomic_path
from core.progress import Progress

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
LABEL_DIM = 25
CACHE_LIMIT_BYTES = 1 << 30


class _Container:
    """Uniform read access to a folder or a zip archive (paths use '/')."""

    def __init__(self, path: Path):
        self.path = path
        self._zip = None
        if path.is_dir():
            self.names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        elif path.is_file() and zipfile.is_zipfile(path):
            self._zip = zipfile.ZipFile(path)
            self.names = sorted(n for n in self._zip.namelist() if not n.endswith("/"))
        elif not path.exists():
            raise DatasetError(f"{path}: no such dataset folder or zip")
        else:
            raise DatasetError(f"{path}: not a folder or a zip archive")

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        return (self.path / name).read_bytes()


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

    def __init__(self, path: str | Path, progress: Progress | None = None):
        self.path = Path(path)
        self._store = _Container(self.path)
        if "dataset.json" not in self._store.names:
            raise DatasetError(f"{self.path}: no dataset.json at the root")
        labels = _parse_labels(self._store.read("dataset.json"), f"{self.path.name}/dataset.json")
        images = [n for n in self._store.names if Path(n).suffix.lower() in IMAGE_EXTENSIONS]
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
        self.resolution = self._check_images(progress)
        self._cache: dict[int, np.ndarray] | None = (
            {} if len(images) * 3 * self.resolution ** 2 <= CACHE_LIMIT_BYTES else None)

    def _check_images(self, progress: Progress | None) -> int:
        resolution = None
        for i, name in enumerate(self.names):
            try:
                with Image.open(io.BytesIO(self._store.read(name))) as im:
                    im.verify()
                    w, h = im.size
            except (UnidentifiedImageError, OSError, SyntaxError) as e:
                raise DatasetError(f"{name}: unreadable image ({e})") from None
            if w != h:
                raise DatasetError(f"{name}: image is {w}x{h}, images must be square")
            if resolution is None:
                resolution, first = w, name
            elif w != resolution:
                raise DatasetError(f"{name}: image is {w}x{h} but {first} is {resolution}x{resolution} "
                                   f"(mixed resolutions)")
            if progress is not None and (i % 256 == 0 or i == len(self.names) - 1):
                progress.update(i + 1, len(self.names), "checking images")
        return resolution

    def __len__(self) -> int:
        return len(self.names)

    def image(self, idx: int) -> np.ndarray:
        """uint8 [3,R,R]."""
        if self._cache is not None and idx in self._cache:
            return self._cache[idx]
        with Image.open(io.BytesIO(self._store.read(self.names[idx]))) as im:
            arr = np.asarray(im.convert("RGB")).transpose(2, 0, 1).copy()
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


def open_dataset(path: str | Path, progress: Progress | None = None) -> PosedDataset:
    """Open and validate a dataset; raises DatasetError naming the bad file or field."""
    return PosedDataset(path, progress=progress)


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
        if progress is not None:
            progress.update(i + 1, len(ds), "mirroring")
    with atomic_path(dst / "dataset.json") as tmp:
        tmp.write_text(json.dumps({"labels": entries}))
    return dst
