"""Benchmarks behind `python main.py bench`: per-stage medians on a released-size generator.

The model is an ffhq512-128-shaped TriPlaneGenerator with random weights (the released constructor
kwargs, EG3D ref §1.10): timings do not depend on the weights' values.

`run_frame_modes` times the interactive frames (512² orbit frames from cached planes with SR, full
G(z,c), raw 128² frames; batch 1) under execution modes such as bf16 autocast, CUDA graphs and
torch.compile, and measures how far each mode's pixels are from plain fp32.
"""
from __future__ import annotations

import dataclasses
import math
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch

from core.cameras import frontal_label
from core.renderer import planes_table
from core.triplane import TriPlaneGenerator

FFHQ512_128 = dict(
    z_dim=512, w_dim=512, c_dim=25, img_resolution=512, img_channels=3, mapping_kwargs={"num_layers": 2},
    channel_base=32768, channel_max=512, fused_modconv_default="inference_only", num_fp16_res=0,
    sr_num_fp16_res=4, conv_clamp=None,
    sr_kwargs={"channel_base": 32768, "channel_max": 512, "fused_modconv_default": "inference_only"},
    rendering_kwargs={
        "depth_resolution": 48, "depth_resolution_importance": 48, "ray_start": 2.25, "ray_end": 3.3,
        "box_warp": 1, "avg_camera_radius": 2.7, "avg_camera_pivot": [0, 0, 0.2], "image_resolution": 512,
        "disparity_space_sampling": False, "clamp_mode": "softplus",
        "superresolution_module": "training.superresolution.SuperresolutionHybrid8XDC",
        "c_gen_conditioning_zero": False, "c_scale": 1.0, "superresolution_noise_mode": "none",
        "density_reg": 0.25, "density_reg_p_dist": 0.004, "reg_type": "l1", "decoder_lr_mul": 1.0,
        "sr_antialias": True})

# The original implementation on the reference 2-core CPU (platform-notes), seconds, and our targets.
BASELINE = {"full G(z,c)": (6.4, 3.2), "backbone": (0.9, None), "neural rendering 128², 48+48": (3.5, 0.9),
            "superresolution 8XDC": (3.05, None), "orbit frame (cached planes, SR)": (6.4 - 0.9, 2.6),
            "raw preview 64², 48+48": (0.81, 0.2), "drag preview 48², 24+24": (0.81, 0.1),
            "mesh 256³ (planes → coloured PLY)": (26.6, 4.5)}


# A small model with the `tiny` training preset's shapes: lets tests run every frame mode on a CPU.
SMALL = dict(
    FFHQ512_128, img_resolution=128, channel_base=1024, channel_max=32, plane_resolution=64,
    sr_kwargs={"channel_base": 1024, "channel_max": 32, "fused_modconv_default": "inference_only",
               "sr_widths": [32, 16]},
    rendering_kwargs=dict(FFHQ512_128["rendering_kwargs"], image_resolution=128, depth_resolution=12,
                          depth_resolution_importance=12,
                          superresolution_module="training.superresolution.SuperresolutionHybrid2X"))
MODELS = {"ffhq512": (FFHQ512_128, 128), "small": (SMALL, 64)}  # kwargs, neural rendering resolution


def bench_generator(model: str = "ffhq512", device: torch.device | str = "cpu") -> TriPlaneGenerator:
    """Random-weight generator of MODELS[model]: 'ffhq512' is the released ffhq512-128 configuration (30.7 M
    parameters), 'small' the `tiny` preset's shapes (tests of the frame modes)."""
    kwargs, neural_resolution = MODELS[model]
    torch.manual_seed(0)
    G = TriPlaneGenerator(**kwargs).eval().requires_grad_(False)
    G.neural_rendering_resolution = neural_resolution
    return G.to(device)


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of `fn` after one warm-up call (synchronising CUDA)."""
    return statistics.median(_timed_frames(fn, repeats + 1, device)[1:])


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_benchmarks(device: torch.device, repeats: int = 3, bf16: bool = False,
                   log: Callable[[str], None] = print) -> dict[str, float]:
    """Run every scenario; returns {name: median seconds} (plus 'peak RSS GB' on CPU)."""
    G = bench_generator("ffhq512", device)
    z = torch.randn(1, 512, device=device)
    c = frontal_label(G.options, device=device)
    results: dict[str, float] = {}

    def measure(name: str, fn: Callable[[], object]) -> None:
        results[name] = median_time(fn, repeats, device)
        log(f"  {name:<36} {results[name]:8.3f} s")

    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=0.7)
        planes = G.planes(ws)
        table = planes_table(planes)
        feats = G.render_planes(planes, ws, c, 128, superresolution=False, table=table)["image_features"]
        fast = dataclasses.replace(G.options, depth_resolution=24, depth_resolution_importance=24)
        measure("mapping", lambda: G.mapping(z, c, truncation_psi=0.7))
        measure("backbone", lambda: G.planes(ws))
        measure("neural rendering 128², 48+48", lambda: G.render_planes(planes, ws, c, 128, superresolution=False,
                                                                          table=table))
        measure("superresolution 8XDC", lambda: G.superresolve(feats, ws))
        measure("full G(z,c)", lambda: G(z, c))
        measure("orbit frame (cached planes, SR)", lambda: G.render_planes(planes, ws, c, 128, table=table))
        measure("raw preview 64², 48+48", lambda: G.render_planes(planes, ws, c, 64, superresolution=False,
                                                                    table=table))
        measure("drag preview 48², 24+24", lambda: G.render_planes(planes, ws, c, 48, superresolution=False,
                                                                     options=fast, table=table))
        if _mesh_libraries_missing():
            log(f"  {'mesh 256³ (planes → coloured PLY)':<36} skipped: {_mesh_libraries_missing()}")
        else:
            measure("mesh 256³ (planes → coloured PLY)", lambda: _mesh_256(G, ws))
        if bf16:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                measure("bf16: full G(z,c)", lambda: G(z, c))
                measure("bf16: neural rendering 128², 48+48",
                        lambda: G.render_planes(planes, ws, c, 128, superresolution=False, table=table))
        if device.type == "cuda":
            t = median_time(lambda: G.render_planes(planes, ws, c, 128, table=table), max(repeats, 10), device)
            results["cuda 512² orbit fps"] = 1 / t
            log(f"  {'cuda 512² orbit fps':<36} {1 / t:8.1f}")
    if device.type == "cpu":
        results["peak RSS GB"] = peak_rss_gb()
        log(f"  {'peak RSS GB':<36} {results['peak RSS GB']:8.2f}")
    return results


PRECISIONS = {"fp32": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
FLAGS = ("graph", "compile", "onechunk")


@dataclasses.dataclass(frozen=True)
class FrameMode:
    """How frames are computed: `precision` (fp32, tf32 = fp32 storage with TF32 matrix units, bf16 or
    fp16 autocast) plus flags: `graph` (replay a captured CUDA graph), `compile` (torch.compile;
    with graph: mode 'reduce-overhead'), `onechunk` (the renderer takes all rays in one chunk).
    Written as 'bf16+graph'."""

    precision: str = "fp32"
    graph: bool = False
    compile: bool = False
    onechunk: bool = False

    @classmethod
    def parse(cls, text: str) -> FrameMode:
        precision, *flags = text.strip().split("+")
        if precision not in PRECISIONS:
            raise ValueError(f"frame mode {text!r}: precision must be one of {', '.join(PRECISIONS)}")
        unknown = sorted(set(flags) - set(FLAGS))
        if unknown:
            raise ValueError(f"frame mode {text!r}: unknown flag {unknown[0]!r} (flags: {', '.join(FLAGS)})")
        return cls(precision, **{f: True for f in flags})

    @property
    def name(self) -> str:
        return "+".join([self.precision] + [f for f in FLAGS if getattr(self, f)])


def _set_tf32(device: torch.device, enabled: bool) -> None:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def _frame_function(fn: Callable[[], torch.Tensor], mode: FrameMode, device: torch.device
                    ) -> Callable[[], torch.Tensor]:
    """`fn` (a frame from static inputs) wrapped in the mode's autocast, compilation and graph capture.

    Captured graphs replay on the tensors their inputs held at capture time: callers change inputs
    in place (copy_) and must not keep a returned tensor across calls.
    """
    dtype = PRECISIONS[mode.precision]

    def autocast_fn() -> torch.Tensor:
        # The autocast weight cache would hold casts made during capture: graphs need it disabled.
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None,
                            cache_enabled=not mode.graph):
            return fn()

    run = autocast_fn
    if mode.compile:
        run = torch.compile(autocast_fn, mode="reduce-overhead" if mode.graph else None, dynamic=False)
        return run
    if not mode.graph:
        return run
    if device.type != "cuda":
        raise ValueError("CUDA graphs need a CUDA device")
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up outside the capture (cuDNN/cuBLAS handles, workspaces)
        for _ in range(3):
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()

    def replay() -> torch.Tensor:
        graph.replay()
        return out
    return replay


def _difference(out: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    d = (out.detach().float() - ref).abs()
    finite = torch.isfinite(d)
    return {"max_abs": float(d[finite].max()) if finite.any() else float("nan"),
            "mean_abs": float(d[finite].mean()) if finite.any() else float("nan"),
            "nonfinite": int((~finite).sum())}


def _timed_frames(fn: Callable[[], object], frames: int, device: torch.device,
                  before: Callable[[int], None] | None = None, seconds: float = math.inf) -> list[float]:
    """Per-call wall times (synchronised): at most `frames`, stopping early after `seconds`; `before(i)`
    runs untimed before call i."""
    times: list[float] = []
    start = time.perf_counter()
    for i in range(frames):
        if before is not None:
            before(i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > seconds:
            break
    return times


def run_frame_modes(device: torch.device, modes: list[FrameMode], model: str = "ffhq512", frames: int = 100,
                    seconds: float = 10.0, warmup: int = 5, log: Callable[[str], None] = print,
                    on_update: Callable[[dict], None] | None = None) -> dict:
    """Frames per second of the interactive scenarios under each mode, batch 1.

    Per mode and scenario: median/p90 seconds per frame over up to `frames` synchronised frames
    (cameras orbiting, copied into the static input before each frame), fps = 1/median, the first
    call's seconds (compilation, capture) and the pixel difference from plain fp32 (TF32 off) at the
    same camera. A mode that fails records its error; the others still run. `on_update` gets the
    results after every scenario (so a run killed at a time limit keeps what it measured).
    """
    kwargs, nrr = MODELS[model]
    G = bench_generator(model, device)
    default_chunk = G.renderer.chunk_rays
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(1, G.z_dim, generator=gen).to(device)
    cameras = [frontal_label(G.options, device=device, yaw=0.4 * math.sin(2 * math.pi * k / 16),
                             pitch=0.15 * math.cos(2 * math.pi * k / 16)) for k in range(16)]
    c = cameras[0].clone()
    _set_tf32(device, False)
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=0.7)
        planes = G.planes(ws)
        table = planes_table(planes)
    res = kwargs["img_resolution"]
    scenarios = {
        f"orbit frame {res}² (cached planes, SR)": lambda: G.render_planes(planes, ws, c, nrr, table=table)["image"],
        "full G(z,c)": lambda: G(z, c, truncation_psi=0.7)["image"],
        f"raw frame {nrr}² (cached planes)": lambda: G.render_planes(planes, ws, c, nrr, superresolution=False,
                                                                     table=table)["image_raw"],
    }
    with torch.no_grad():
        reference = {name: fn().float().clone() for name, fn in scenarios.items()}

    def set_camera(i: int) -> None:
        c.copy_(cameras[i % len(cameras)])

    results: dict = {"model": model, "device": str(device), "neural_rendering_resolution": nrr,
                     "image_resolution": res, "modes": {}}
    for mode in modes:
        entry: dict = {}
        results["modes"][mode.name] = entry
        _set_tf32(device, mode.precision == "tf32")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        G.renderer.chunk_rays = nrr * nrr if mode.onechunk else default_chunk
        for name, scenario in scenarios.items():
            try:
                with torch.no_grad():
                    set_camera(0)
                    t = time.perf_counter()
                    fn = _frame_function(scenario, mode, device)
                    first = fn().float().clone()
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    first_s = time.perf_counter() - t
                    for i in range(warmup):
                        set_camera(i)
                        fn()
                    times = _timed_frames(fn, frames, device, set_camera, seconds)
                    set_camera(0)
                    diff = _difference(fn(), reference[name])
                    diff["first_call"] = _difference(first, reference[name])["max_abs"]
            except Exception as e:  # one failing mode must not stop the others
                entry[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
                log(f"  {mode.name:<22} {name:<36} error: {entry[name]['error']}")
            else:
                med = statistics.median(times)
                p90 = sorted(times)[min(len(times) - 1, int(0.9 * len(times)))]
                entry[name] = {"median_s": med, "p90_s": p90, "fps": 1 / med, "frames": len(times),
                               "first_call_s": first_s, "diff_vs_fp32": diff}
                log(f"  {mode.name:<22} {name:<36} {1 / med:8.1f} fps  {med * 1000:8.2f} ms  "
                    f"max|Δ| vs fp32 {diff['max_abs']:.2e}")
            if on_update is not None:
                on_update(results)
        if device.type == "cuda":
            entry["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    G.renderer.chunk_rays = default_chunk
    _set_tf32(device, False)
    return results


def _mesh_libraries_missing() -> str:
    """'' when PyMCubes and trimesh import, else why not (the bare GPU machine has neither)."""
    try:
        import mcubes  # noqa: F401
        import trimesh  # noqa: F401
    except ImportError as e:
        return f"needs PyMCubes and trimesh ({e})"
    return ""


def random_model_level(G: TriPlaneGenerator, planes: torch.Tensor) -> float:
    """An iso-level for a random-weight model, which has no surface at the usual level 10: the 90th
    percentile of its density on a 32³ grid."""
    import numpy as np

    from core.mesh import MeshOptions, density_volume
    return float(np.percentile(density_volume(G, planes, MeshOptions(resolution=32), dense=True), 90))


def _mesh_256(G: TriPlaneGenerator, ws: torch.Tensor) -> None:
    """The headless mesh command's work for one latent: planes, coarse-to-fine density, marching cubes,
    decoder colours, PLY (at `random_model_level`)."""
    import tempfile

    from core.mesh import MeshOptions, extract_mesh, write_mesh
    planes = G.planes(ws)
    mesh = extract_mesh(G, planes, ws, MeshOptions(resolution=256, level=random_model_level(G, planes)))
    with tempfile.TemporaryDirectory() as d:
        write_mesh(mesh, f"{d}/mesh.ply")


def machine_description(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    desc = f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python {sys.version.split()[0]}"
    if device.type == "cuda":
        desc += f", {torch.cuda.get_device_name(device)}"
    return desc
