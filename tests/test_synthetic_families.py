"""The toys and heads families of `dataset synth`: canonical frame, diversity, the dataset format."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import torch
from PIL import Image

from training.heads import head_sdf, random_heads
from training.primitives import scene_sdf
from training.synthetic import SynthSettings, orbit_cameras, render, write_preview, write_synthetic_dataset
from training.toys import random_toys


def test_heads_face_front_in_a_canonical_frame():
    """Heads are mirror-symmetric about x = 0 and face +z: the silhouette from yaw +a is the mirror image of
    the one from yaw -a, and the front (eyes, nose) differs from the back (a random rotation breaks both)."""
    heads = random_heads(torch.Generator().manual_seed(0), 1)
    sdf = lambda x: head_sdf(x, {k: v.expand(4, *v.shape[1:]) for k, v in heads.items()})  # noqa: E731
    cams = orbit_cameras(torch.tensor([0.5, -0.5, 0.0, math.pi]), torch.full((4,), 0.1), 1.8)
    images = render(None, cams, 1.8, 48, 0.0, sdf=sdf).numpy()
    left, right, front, back = (images < 250).any(-1)  # silhouettes (the world-fixed light is not symmetric)
    assert (left != right[:, ::-1]).mean() < 0.01
    assert (front != front[:, ::-1]).mean() < 0.01
    assert np.abs(images[2].astype(int) - images[3]).mean() > 10.0


def test_toys_differ_in_shape():
    """Mean pairwise occupancy IoU of 12 toys stays low: the family has real shape diversity."""
    scene = random_toys(torch.Generator().manual_seed(1), 12)
    t = torch.linspace(-0.5, 0.5, 32)
    grid = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1).reshape(1, -1, 3).expand(12, -1, -1)
    occupied = scene_sdf(grid.contiguous(), scene, 0.01)[0] < 0
    assert occupied.any(dim=1).all()
    ious = [float((occupied[i] & occupied[j]).sum() / (occupied[i] | occupied[j]).sum())
            for i, j in itertools.combinations(range(12), 2)]
    assert sum(ious) / len(ious) < 0.4


def test_families_write_datasets(tmp_path):
    from training.dataset import open_dataset
    for family in ("toys", "heads"):
        out = write_synthetic_dataset(tmp_path / family, 6, 32, seed=3,
                                      settings=SynthSettings(family=family, smooth=0.01, yaw_std=0.35,
                                                             yaw_range=(-0.8, 0.8)))
        ds = open_dataset(out)
        assert len(ds) == 6 and ds.resolution == 32
        meta = json.loads((out / "dataset.json").read_text())
        assert meta["synthetic"]["family"] == family
        yaws = [math.atan2(label[3], label[11]) for _, label in meta["labels"]]
        assert max(abs(y) for y in yaws) <= 0.8 + 1e-5
        for i in range(6):
            img = ds.image(i)
            assert (img[:, 0, 0] == 255).all() and (img[:, 8:24, 8:24] < 250).any()
        sheet = np.asarray(Image.open(write_preview(out, tmp_path / f"{family}.png")))
        assert sheet.shape[1] > 6 * 32
