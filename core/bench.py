"""Benchmarks behind `python main.py bench`: per-stage medians on a released-size generator.

The model is an ffhq512-128-shaped TriPlaneGenerator with random weights (the released constructor
kwargs, EG3D ref §1.10): timings do not depend on the weights' values.
"""
from __future__ import annotations

import dataclasses
import platform
import resource
import statistics
import sys
import time
from typing import Callable

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


def ffhq_generator(device: torch.device | str = "cpu") -> TriPlaneGenerator:
    """Random-weight generator with the released ffhq512-128 configuration (30.7 M parameters)."""
    torch.manual_seed(0)
    G = TriPlaneGenerator(**FFHQ512_128).eval().requires_grad_(False)
    G.neural_rendering_resolution = 128
    return G.to(device)


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of `fn` after one warm-up call (synchronising CUDA)."""
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_benchmarks(device: torch.device, repeats: int = 3, bf16: bool = False,
                   log: Callable[[str], None] = print) -> dict[str, float]:
    """Run every scenario; returns {name: median seconds} (plus 'peak RSS GB' on CPU)."""
    G = ffhq_generator(device)
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


def _mesh_256(G: TriPlaneGenerator, ws: torch.Tensor) -> None:
    """The headless mesh command's work for one latent: planes, coarse-to-fine density, marching cubes,
    decoder colours, PLY. A random model has no surface at the usual level 10; use its 90th percentile."""
    import tempfile

    import numpy as np

    from core.mesh import MeshOptions, density_volume, extract_mesh, write_mesh
    planes = G.planes(ws)
    probe = density_volume(G, planes, MeshOptions(resolution=32), dense=True)
    options = MeshOptions(resolution=256, level=float(np.percentile(probe, 90)))
    mesh = extract_mesh(G, planes, ws, options)
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
