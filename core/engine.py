"""RenderEngine: RenderRequest -> Frame, caching ws per latent and planes per ws.

A camera-only change re-renders from cached planes (no mapping, no backbone). All torch work for one
engine is serialised by a lock, so the GUI's worker thread and export jobs can share it.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from core.cameras import frontal_label
from core.latents import z_from_seed
from core.renderer import planes_table
from core.triplane import TriPlaneGenerator

NOISE_MODES: tuple[str, ...] = ("const", "random", "none")
"""StyleGAN2 noise inputs of the backbone: the stored noise_const buffers, fresh noise, or none."""


@dataclass(frozen=True)
class Latent:
    """Everything that determines ws. Hashable: it is the cache key."""

    seed: int = 0
    psi: float = 0.7
    cutoff: int | None = None
    mix_seed: int | None = None
    """Style mixing: ws[:, mix_layers] come from this seed."""
    mix_layers: tuple[int, ...] = ()
    interp_seed: int | None = None
    """Interpolation in W: ws = lerp(ws(seed), ws(interp_seed), interp_t)."""
    interp_t: float = 0.0
    directions: tuple[tuple[int, float], ...] = ()
    """W-space edits: (principal component index, amount in standard deviations)."""
    direction_layers: tuple[int, int] | None = None
    """[start, stop) range of ws the directions apply to (None: all)."""
    cond_yaw: float = 0.0
    """Conditioning pose offsets (radians) from the frontal camera, as in the original viewer."""
    cond_pitch: float = 0.0
    cond_fov: float | None = None
    """Conditioning camera FOV in degrees (None: the checkpoint's default)."""
    source: str | None = None
    """Name of ws registered with RenderEngine.set_source (an inverted latent): the ws come from there,
    rendered by the generator registered with them, instead of from the seeds; only the W directions
    still apply. None: the seeds, through the loaded generator."""


@dataclass(frozen=True)
class RenderRequest:
    latent: Latent = Latent()
    camera: tuple[float, ...] = ()
    """25-number label (OpenCV cam2world + normalised intrinsics); empty -> the frontal camera."""
    resolution: int | None = None
    """Neural rendering resolution (None: the checkpoint's)."""
    sample_scale: float = 1.0
    """Multiplier on coarse and importance depth samples."""
    coarse_scale: float = 1.0
    """Multiplier on the coarse (stratified) depth samples only, on top of sample_scale."""
    importance_scale: float = 1.0
    """Multiplier on the importance (fine) depth samples only, on top of sample_scale (0: no fine pass)."""
    noise_mode: str = "const"
    """Backbone noise (NOISE_MODES); the super-resolution keeps the checkpoint's superresolution_noise_mode."""
    noise_seed: int = 0
    """Seed of the 'random' noise: the same seed gives the same planes (ignored by the other modes)."""
    superresolution: bool = True
    stochastic: bool = False
    precision: str = "fp32"
    """'fp32' (matches the original) or 'bf16' (autocast: faster on recent CPUs and GPUs, not exact)."""
    generation: int = 0
    """Caller's stamp, returned in the Frame so stale results can be recognised."""


@dataclass
class Frame:
    """One rendered view; images in [-1, 1], batch dimension removed, on the CPU unless the engine
    was made with host_frames=False."""

    request: RenderRequest
    image: torch.Tensor | None = None
    image_raw: torch.Tensor | None = None
    depth: torch.Tensor | None = None
    opacity: torch.Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: mapping, backbone, rendering, superresolution, total."""
    cache: dict[str, bool] = field(default_factory=dict)
    """Which caches hit: ws, planes."""
    error: str | None = None


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key], True
        value = make()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value, False


class RenderEngine:
    """Holds a generator and renders requests with ws/planes caches and per-stage timings."""

    def __init__(self, G: TriPlaneGenerator, device: torch.device | str | None = None,
                 ws_cache: int = 64, planes_cache: int = 4, host_frames: bool = True):
        """host_frames=False keeps Frame tensors on the device (for CUDA-GL interop in the studio)."""
        self.lock = threading.RLock()
        self.host_frames = host_frames
        self._ws_size, self._planes_size = ws_cache, planes_cache
        self.set_generator(G, device)

    def set_generator(self, G: TriPlaneGenerator, device: torch.device | str | None = None) -> None:
        """Swap in a (re)loaded generator; caches and the registered ws source are dropped since they
        belong to the old weights."""
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        with self.lock:
            self.device = torch.device(device)
            self.base_G = G.to(self.device).eval().requires_grad_(False)
            """The loaded generator: seeds render through it (never modified by the engine)."""
            self.G = self.base_G
            """The generator of the latent rendered last (base_G, or the registered source's)."""
            self._source: tuple[str, torch.Tensor, TriPlaneGenerator] | None = None
            self._drop_caches()
            self._directions: torch.Tensor | None = None
            self._w_std: torch.Tensor | None = None

    def _drop_caches(self) -> None:
        self._ws = _LRU(self._ws_size)
        self._planes = _LRU(self._planes_size)

    def set_source(self, name: str, ws: torch.Tensor, G: TriPlaneGenerator | None = None) -> None:
        """Register ws [1,num_ws,w_dim] under `name` for latents with `source=name`, rendered by `G` (a
        copy of base_G carrying the inverted noise maps or tuned weights; None: base_G). Replaces the
        previous source; base_G and the seeds' rendering are untouched."""
        with self.lock:
            G = (G if G is not None else self.base_G).to(self.device).eval().requires_grad_(False)
            if tuple(ws.shape) != (1, G.num_ws, G.w_dim):
                raise ValueError(f"ws of shape {list(ws.shape)} do not fit this model "
                                 f"([1, {G.num_ws}, {G.w_dim}])")
            self._source = (name, ws.detach().to(self.device), G)
            self.G = self.base_G
            self._drop_caches()

    def _use(self, latent: Latent) -> None:
        """Make self.G the generator that renders `latent` (caller holds the lock)."""
        if latent.source is None:
            self.G = self.base_G
        elif self._source is not None and self._source[0] == latent.source:
            self.G = self._source[2]
        else:
            raise ValueError(f"no latent named {latent.source!r} is registered with the engine "
                             "(a new model was loaded since)")

    # ---- latents -------------------------------------------------------------------------------------
    def conditioning_label(self, latent: Latent) -> torch.Tensor:
        """The mapping network's camera: frontal around the checkpoint's pivot, offset by cond_yaw/pitch."""
        return frontal_label(self.G.options, latent.cond_fov, self.device, yaw=latent.cond_yaw,
                             pitch=latent.cond_pitch)

    def _map_seed(self, seed: int, latent: Latent) -> torch.Tensor:
        z = z_from_seed(seed, self.G.z_dim, self.device)
        return self.G.mapping(z, self.conditioning_label(latent), truncation_psi=latent.psi,
                              truncation_cutoff=latent.cutoff)

    def ws(self, latent: Latent) -> torch.Tensor:
        """[1, num_ws, w_dim] for a latent (cached)."""
        return self._cached_ws(latent)[0]

    def _cached_ws(self, latent: Latent) -> tuple[torch.Tensor, bool]:
        """Also selects the latent's generator (self.G) for the planes and rendering that follow."""
        with self.lock, torch.no_grad():
            self._use(latent)
            return self._ws.get_or(latent, lambda: self._compute_ws(latent))

    def _compute_ws(self, latent: Latent) -> torch.Tensor:
        if latent.source is not None:
            return self._edit(self._source[1], latent)
        ws = self._map_seed(latent.seed, latent)
        if latent.interp_seed is not None and latent.interp_t:
            ws = torch.lerp(ws, self._map_seed(latent.interp_seed, latent), latent.interp_t)
        if latent.mix_seed is not None and latent.mix_layers:
            layers = list(latent.mix_layers)
            ws = ws.clone()
            ws[:, layers] = self._map_seed(latent.mix_seed, latent)[:, layers]
        return self._edit(ws, latent)

    def _edit(self, ws: torch.Tensor, latent: Latent) -> torch.Tensor:
        """ws moved along the latent's W directions (the same ws when it has none)."""
        if latent.directions:
            dirs, std = self.w_directions()
            edit = sum(amount * std[k] * dirs[k] for k, amount in latent.directions)
            lo, hi = latent.direction_layers or (0, ws.shape[1])
            ws = ws.clone()
            ws[:, lo:hi] += edit
        return ws

    def w_directions(self, k: int = 16, samples: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """Principal components of W (unit rows [k, w_dim]) and their standard deviations [k] (cached)."""
        with self.lock, torch.no_grad():
            if self._directions is None or self._directions.shape[0] < k:
                gen = torch.Generator().manual_seed(0)
                z = torch.randn(samples, self.G.z_dim, generator=gen).to(self.device)
                c = self.conditioning_label(Latent()).expand(samples, -1)
                w = self.G.mapping(z, c)[:, 0]
                w = w - w.mean(0, keepdim=True)
                _, s, v = torch.linalg.svd(w, full_matrices=False)
                self._directions = v[:k]
                self._w_std = s[:k] / math.sqrt(samples - 1)
            return self._directions[:k], self._w_std[:k]

    # ---- planes and frames ---------------------------------------------------------------------------
    def planes(self, latent: Latent, noise_mode: str = "const", noise_seed: int = 0) -> torch.Tensor:
        """[1, 3, 32, H, W] tri-planes for a latent and backbone noise (cached)."""
        key = _planes_key(latent, noise_mode, noise_seed, "fp32")
        with self.lock:  # ws and planes from the same generator, even while set_generator swaps it
            return self._cached_planes(key, self.ws(latent))[0][0]

    def _cached_planes(self, key: tuple, ws: torch.Tensor):
        """key: `_planes_key(...)`, i.e. everything besides ws that changes the backbone's output."""
        _, noise_mode, noise_seed, _ = key
        with self.lock, torch.no_grad():
            def make():
                planes = self._backbone(ws, noise_mode, noise_seed)
                return planes, planes_table(planes)
            return self._planes.get_or(key, make)

    def _backbone(self, ws: torch.Tensor, noise_mode: str, noise_seed: int) -> torch.Tensor:
        """G.planes; 'random' noise comes from torch's RNG seeded with noise_seed (reproducible), inside
        fork_rng so that the RNG state of everything else is restored afterwards."""
        if noise_mode != "random":
            return self.G.planes(ws, noise_mode=noise_mode)
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            if cuda:  # only this device's generator: the noise is drawn where the planes are
                index = self.device.index if self.device.index is not None else torch.cuda.current_device()
                torch.cuda.default_generators[index].manual_seed(noise_seed)
            else:
                torch.default_generator.manual_seed(noise_seed)
            return self.G.planes(ws, noise_mode="random")

    def options_for(self, req: RenderRequest):
        """The checkpoint's rendering options with the request's depth sample multipliers applied."""
        o = self.G.options
        coarse = req.sample_scale * req.coarse_scale
        fine = req.sample_scale * req.importance_scale
        if coarse == 1.0 and fine == 1.0:
            return o
        return dataclasses.replace(
            o, depth_resolution=max(2, round(o.depth_resolution * coarse)),
            depth_resolution_importance=max(0, round(o.depth_resolution_importance * fine)))

    def camera_tensor(self, req: RenderRequest) -> torch.Tensor:
        if req.camera:
            if len(req.camera) != 25:
                raise ValueError(f"camera label must have 25 numbers, got {len(req.camera)}")
            return torch.tensor(req.camera, dtype=torch.float32, device=self.device).view(1, 25)
        return self.conditioning_label(Latent())

    def render(self, req: RenderRequest) -> Frame:
        """Render one request. Errors are returned in Frame.error rather than raised (the GUI shows them)."""
        frame = Frame(request=req)
        try:
            _check_request(req)
            with self.lock, torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                            enabled=req.precision == "bf16"):
                self._render(req, frame)
        except Exception as e:  # reported to the UI; the engine stays usable
            frame.error = f"{type(e).__name__}: {e}"
        return frame

    def _render(self, req: RenderRequest, frame: Frame) -> None:
        key = _planes_key(req.latent, req.noise_mode, req.noise_seed, req.precision)  # checks the noise mode
        t0 = time.perf_counter()
        with torch.autocast(self.device.type, enabled=False):  # ws are shared by all precisions
            ws, frame.cache["ws"] = self._cached_ws(req.latent)
        t1 = time.perf_counter()
        (planes, table), frame.cache["planes"] = self._cached_planes(key, ws)
        t2 = time.perf_counter()
        nrr = req.resolution or self.G.neural_rendering_resolution
        out = self.G.render_planes(planes, ws, self.camera_tensor(req), neural_rendering_resolution=nrr,
                                   stochastic=req.stochastic, superresolution=False,
                                   options=self.options_for(req), table=table)
        t3 = time.perf_counter()
        out_of = (lambda t: t[0].float().cpu()) if self.host_frames else (lambda t: t[0].float())
        frame.image_raw, frame.depth = out_of(out["image_raw"]), out_of(out["image_depth"])
        frame.opacity = out_of(out["image_opacity"])
        if req.superresolution:
            frame.image = out_of(self.G.superresolve(out["image_features"], ws))
        t4 = time.perf_counter()
        frame.timings = {"mapping": t1 - t0, "backbone": t2 - t1, "rendering": t3 - t2,
                         "superresolution": t4 - t3, "total": t4 - t0}


def _planes_key(latent: Latent, noise_mode: str, noise_seed: int, precision: str) -> tuple:
    """Planes cache key: the latent and what else changes the backbone's output (the seed only
    matters for random noise; bf16 autocast changes the planes too)."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise mode must be one of {', '.join(NOISE_MODES)}, not {noise_mode!r}")
    return latent, noise_mode, int(noise_seed) if noise_mode == "random" else 0, precision


def _check_request(req: RenderRequest) -> None:
    """Raise ValueError naming the first bad field of a request."""
    if req.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, not {req.precision!r}")
    if isinstance(req.noise_seed, bool) or not isinstance(req.noise_seed, int) \
            or not 0 <= req.noise_seed < 2 ** 63:
        raise ValueError(f"noise seed must be an integer in [0, 2^63), not {req.noise_seed!r}")
    for name in ("sample_scale", "coarse_scale", "importance_scale"):
        value = getattr(req, name)
        zero_ok = name == "importance_scale"  # no fine pass
        if not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
            kind = "non-negative" if zero_ok else "positive"
            raise ValueError(f"{name.replace('_', ' ')} must be a finite {kind} number, not {value!r}")
