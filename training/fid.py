"""FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) on Inception-v3 pool features.

The extractor is the FID variant of Inception-v3 (Szegedy et al. 2016) whose parameter names match the
ported TensorFlow weights that pytorch-fid distributes (`pt_inception-2015-12-05-6726825d.pth`): the
user gives that file; nothing is downloaded. Images in [-1, 1] are resized to 299x299 (bilinear) and fed
as is (the network expects [-1, 1]); the 2048-d global average pool is the feature.

FID = |mu_r - mu_f|^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) from streaming float64 moments (memory
independent of the image count). KID = mean over random subsets of the unbiased MMD^2 with the kernel
k(x, y) = (x.y / d + 1)^3, on a bounded uniform sample (reservoir) of the features.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.errors import StudioError, one_line

FEATURES = 2048
INPUT_SIZE = 299


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, as the TF graph), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pool, stride 1, padding not counted (the TF graph's pooling in the FID variant)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (c7 inner channels)."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **row)
        self.branch7x7_3 = BasicConv2d(c7, 192, **col)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, **row)
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x
        for i in range(1, 5):
            b = getattr(self, f"branch7x7x3_{i}")(b)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with expanded 1x3/3x1 outputs; the last one (Mixed_7c) max-pools its pool branch."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pooled)], 1)


class InceptionV3Features(nn.Module):
    """Inception-v3 (FID variant) up to the 2048-d pool features; `fc` (1008 classes) only to hold the
    file's classifier weights, unused."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURES, 1008)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [N,3,H,W] in [-1, 1] -> features [N, 2048] (float32)."""
        x = F.interpolate(images.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


def load_inception(path: str | Path, device: torch.device | str = "cpu") -> InceptionV3Features:
    """The extractor with the weights of `path` (a state_dict file, read with weights_only), in eval mode.
    Raises StudioError (one line) when the file is missing, unreadable or holds other weights."""
    path = Path(path)
    if not path.is_file():
        raise StudioError(f"--inception {path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file becomes one line
        raise StudioError(f"--inception {path}: not a readable weights file ({one_line(e)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StudioError(f"--inception {path}: expected a state_dict of tensors (the pytorch-fid Inception file)")
    net = InceptionV3Features()
    expected = net.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", wrong)):
        if keys:
            raise StudioError(f"--inception {path}: not the FID Inception-v3 weights ({len(keys)} {what} "
                              f"tensors, e.g. {keys[0]})")
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False).to(device)


class FeatureStats:
    """Streaming float64 moments of features (for FID) and a bounded uniform sample of them (for KID).
    Memory: a DxD matrix plus at most `kid_budget` rows, whatever the number of images."""

    def __init__(self, dim: int = FEATURES, kid_budget: int = 4096, seed: int = 0):
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)
        self.kid_budget = kid_budget
        self.sample = torch.empty(0, dim)
        self.gen = torch.Generator().manual_seed(seed)

    def add(self, feats: torch.Tensor) -> None:
        """feats [N, D] on any device."""
        f64 = feats.detach().to(torch.float64)
        self.n += len(f64)
        self.sum += f64.sum(0).cpu()
        self.outer += (f64.T @ f64).cpu()
        rows = feats.detach().float().cpu()
        room = max(0, self.kid_budget - len(self.sample))
        self.sample = torch.cat([self.sample, rows[:room]])
        rest = rows[room:]
        if len(rest):  # reservoir: row i replaces a random slot with probability budget/(i+1)
            seen = self.n - len(rest)
            slot = (torch.rand(len(rest), generator=self.gen) * (torch.arange(len(rest)) + seen + 1)).long()
            keep = slot < self.kid_budget
            self.sample[slot[keep]] = rest[keep]

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased covariance (N-1), as numpy float64."""
        if self.n < 2:
            raise ValueError("FID needs at least two images per set")
        mu = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return mu.numpy(), cov.numpy()


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """|mu1-mu2|^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)), the real part of the matrix square root."""
    import warnings

    import scipy.linalg
    with warnings.catch_warnings():  # few images give singular covariances: handled below, not worth a warning
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(root).all():  # singular product (fewer images than dimensions): regularise slightly
        eps = np.eye(len(cov1)) * 1e-6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            root = scipy.linalg.sqrtm((cov1 + eps) @ (cov2 + eps))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(root.real))


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1) ** 3


def mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 of two equally large samples from their kernel matrices (diagonals of kxx, kyy left out)."""
    m = len(kxx)
    off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(off - 2 * kxy.sum() / (m * m))


def kernel_inception_distance(x: np.ndarray, y: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> float:
    """Mean unbiased MMD^2 over random subsets (without replacement within a subset) of two feature sets.
    The kernel matrices are computed once over the (bounded) samples and indexed per subset."""
    m = min(len(x), len(y), subset_size)
    if m < 2:
        raise ValueError("KID needs at least two images per set")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        ix, iy = rng.choice(len(x), m, replace=False), rng.choice(len(y), m, replace=False)
        values.append(mmd2_unbiased(kxx[np.ix_(ix, ix)], kyy[np.ix_(iy, iy)], kxy[np.ix_(ix, iy)]))
    return float(np.mean(values))


def fid_kid(real: FeatureStats, fake: FeatureStats, seed: int = 0) -> dict[str, float]:
    """{'fid', 'kid'} between two feature sets (KID x1, as the paper; often reported x1000)."""
    fid = frechet_distance(*real.mean_cov(), *fake.mean_cov())
    kid = kernel_inception_distance(real.sample.numpy(), fake.sample.numpy(), seed=seed)
    return {"fid": fid, "kid": kid}
