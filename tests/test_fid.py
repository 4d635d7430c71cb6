"""FID/KID: the FID Inception-v3 layout loads strictly from a saved file, wrong files give one line,
the statistics match direct numpy/scipy formulas, and a training run with --inception logs fid/kid."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

import main
import training.fid as fid
from core.errors import StudioError
from training.fid import (
    FeatureStats,
    InceptionV3Features,
    frechet_distance,
    kernel_inception_distance,
    load_inception,
)
from training.synthetic import SynthSettings, write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A random-weight file in the pytorch-fid layout (He-initialised so features keep their scale)."""
    torch.manual_seed(0)
    net = InceptionV3Features()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "pt_inception-random.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_layout_loads_strictly_and_extracts_pool_features(weights):
    net = load_inception(weights)
    saved = torch.load(weights, weights_only=True)
    assert len(saved) == len(net.state_dict())
    for k, v in net.state_dict().items():
        assert torch.equal(v, saved[k]), k
    # a few names and shapes of the FID variant's published layout
    assert saved["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert saved["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert saved["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert saved["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert saved["fc.weight"].shape == (1008, 2048)
    assert not any(k.startswith("AuxLogits") for k in saved)
    # the FID variant's 3x3 average pools do not count the padding: a constant map stays constant at the border
    pooled = fid._avg3(torch.full((1, 1, 5, 5), 2.0))
    assert torch.equal(pooled, torch.full((1, 1, 5, 5), 2.0))
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        feats = net(images)
        same = net(images.flip(0))
    assert feats.shape == (3, 2048) and torch.isfinite(feats).all() and feats.std() > 0
    assert torch.allclose(same.flip(0), feats, atol=1e-5)
    # the pool features are non-negative (the last block ends in ReLUs) and differ between images
    assert (feats >= 0).all() and (feats[0] - feats[1]).abs().max() > 1e-3


@pytest.mark.parametrize("damage", ["missing", "unexpected", "shape", "garbage", "code", "absent", "folder"])
def test_wrong_inception_file_is_one_line(weights, tmp_path, damage):
    bad = tmp_path / "bad.pth"
    if damage in ("missing", "unexpected", "shape"):
        state = torch.load(weights, weights_only=True)
        if damage == "missing":
            del state["Mixed_7c.branch_pool.bn.running_var"]
        elif damage == "unexpected":
            state["AuxLogits.fc.weight"] = torch.zeros(1008, 768)
        else:
            state["fc.weight"] = torch.zeros(1000, 2048)
        torch.save(state, bad)
    elif damage == "garbage":
        bad.write_bytes(os.urandom(4096))
    elif damage == "code":
        import pickle

        class Evil:
            def __reduce__(self):
                return (os.system, ("touch " + str(tmp_path / "pwned"),))
        bad.write_bytes(pickle.dumps(Evil()))
    elif damage == "folder":
        bad.mkdir()
    with pytest.raises(StudioError) as e:
        load_inception(bad)
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg
    assert not (tmp_path / "pwned").exists()
    expected = {"missing": "missing", "unexpected": "unexpected", "shape": "wrongly shaped",
                "garbage": "not a readable", "code": "not a readable", "absent": "no such file",
                "folder": "not a file"}[damage]
    assert expected in msg


def _gaussian(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) * 0.3 + np.eye(d)
    return (rng.standard_normal((n, d)) @ mix * scale + shift).astype(np.float32)


def _stats(x: np.ndarray, chunk: int, budget: int = 4096) -> FeatureStats:
    st = FeatureStats(dim=x.shape[1], kid_budget=budget)
    for i in range(0, len(x), chunk):
        st.add(torch.from_numpy(x[i:i + chunk]))
    return st


def test_streaming_moments_equal_all_at_once():
    x = _gaussian(203, 12, seed=0, shift=5.0)
    chunked, whole = _stats(x, chunk=7).mean_cov(), _stats(x, chunk=len(x)).mean_cov()
    ref_mu, ref_cov = x.astype(np.float64).mean(0), np.cov(x.astype(np.float64), rowvar=False)
    for mu, cov in (chunked, whole):
        np.testing.assert_allclose(mu, ref_mu, rtol=1e-12)
        np.testing.assert_allclose(cov, ref_cov, rtol=1e-9, atol=1e-12)
    # the KID sample is bounded and made of real rows, spread over the whole stream
    st = _stats(x, chunk=7, budget=50)
    rows = {tuple(r) for r in x}
    assert len(st.sample) == 50 and all(tuple(r) in rows for r in st.sample.numpy())
    assert any(tuple(r) in {tuple(q) for q in x[150:]} for r in st.sample.numpy())


def test_fid_matches_direct_scipy_and_closed_form():
    a, b = _gaussian(400, 10, seed=1), _gaussian(400, 10, seed=2, shift=0.7, scale=1.5)
    sa, sb = _stats(a, 64), _stats(b, 64)
    assert abs(frechet_distance(*sa.mean_cov(), *_stats(a, 33).mean_cov())) < 1e-6
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = np.cov(a64, rowvar=False), np.cov(b64, rowvar=False)
    direct = (np.sum((a64.mean(0) - b64.mean(0)) ** 2) + np.trace(c1 + c2)
              - 2 * np.trace(scipy.linalg.sqrtm(c1 @ c2).real))
    ours = frechet_distance(*sa.mean_cov(), *sb.mean_cov())
    assert ours > 1 and ours == pytest.approx(direct, rel=1e-6)
    # diagonal covariances: sum of (m1-m2)^2 + (s1 - s2)^2 per dimension (standard deviations s)
    m1, m2, s1, s2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0]), np.array([1.0, 2.0, 3.0]), np.ones(3)
    closed = np.sum((m1 - m2) ** 2) + np.sum((s1 - s2) ** 2)
    assert frechet_distance(m1, np.diag(s1 ** 2), m2, np.diag(s2 ** 2)) == pytest.approx(closed, rel=1e-9)


def test_kid_matches_direct_unbiased_mmd():
    x, y = _gaussian(30, 6, seed=3).astype(np.float64), _gaussian(30, 6, seed=4, shift=0.5).astype(np.float64)
    m, d = len(x), x.shape[1]

    def k(u, v):
        return (float(np.dot(u, v)) / d + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    direct = xx + yy - 2 * xy
    assert direct > 0.01
    assert kernel_inception_distance(x, y, subsets=3, subset_size=m) == pytest.approx(direct, rel=1e-9)
    # two samples of one distribution: near zero (unbiased), far below the shifted pair
    z = _gaussian(400, 6, seed=3).astype(np.float64)
    same = kernel_inception_distance(z[:200], z[200:], subsets=20, subset_size=100)
    other = kernel_inception_distance(z[:200], z[200:] + 0.5, subsets=20, subset_size=100)
    assert abs(same) < other / 10


def test_training_run_with_inception_logs_fid_and_kid(weights, tmp_path, capsys):
    data = write_synthetic_dataset(tmp_path / "shapes", 8, 128, seed=1,
                                   settings=SynthSettings(kinds=("box",), max_prims=1))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    base = [sys.executable, str(ROOT / "main.py"), "train", "--data", str(data), "--config", "tiny",
            "--batch", "2", "--kimg", "0.002", "--snap", "0.002", "--tick", "0.002", "--swd-images", "0",
            "--grid", "1x1", "--device", "cpu"]
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(3)}, bad)
    assert main.main(base[2:] + ["--out", str(tmp_path / "refused"), "--inception", str(bad)]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--inception" in err and "missing" in err
    assert not (tmp_path / "refused").exists()  # refused before the run directory is created
    run = tmp_path / "run"
    r = subprocess.run(base + ["--out", str(run), "--inception", str(weights), "--fid-images", "4"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    snaps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    snap = [e for e in snaps if e["event"] == "snapshot"][-1]
    assert np.isfinite(snap["fid"]) and snap["fid"] > 0 and np.isfinite(snap["kid"])
    assert "swd" not in snap
