"""Time a textured mesh export phase by phase: planes -> density grid -> marching cubes -> decimation ->
normals -> UV atlas -> texture bake -> GLB file, on the default model or an ffhq512-128-size one.

    python -m scripts.bench_textured_mesh --model default --faces 50000 --texture 1024
    python -m scripts.bench_textured_mesh --model ffhq512 --faces 50000 --texture 1024 --device cuda

The ffhq512 model has random weights (as `main.py bench` uses; timings do not depend on the values) and
no surface at the usual level 10, so its level is the density's 90th percentile, as in `main.py bench`.
Also the end-to-end CUDA path of the texture pipeline (--device cuda, --texture-from views).
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import torch

from core.progress import Progress

PHASES = ("coarse", "refining", "marching cubes", "decimation", "normals", "unwrap", "view", "bake")


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class PhaseTimer(Progress):
    """Wall and CPU seconds spent in each phase (a phase runs from its first progress message to the next
    phase's). On a shared machine the wall time grows with the load; the CPU time much less, and it bounds
    the wall time the same work takes on an idle machine (nothing here waits on anything but the CPU)."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device, self.current, self.start, self.cpu = device, None, time.perf_counter(), cpu_seconds()
        self.seconds: dict[str, tuple[float, float]] = {}

    def mark(self, phase: str | None) -> None:
        if phase == self.current:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now, cpu = time.perf_counter(), cpu_seconds()
        if self.current is not None:
            wall0, cpu0 = self.seconds.get(self.current, (0.0, 0.0))
            self.seconds[self.current] = (wall0 + now - self.start, cpu0 + cpu - self.cpu)
        self.current, self.start, self.cpu = phase, now, cpu

    def update(self, done: int, total: int, message: str = "") -> None:
        self.mark(next((p for p in PHASES if p in message), self.current))
        super().update(done, total, message)


def main() -> None:
    from core.bench import bench_generator, random_model_level
    from core.checkpoint import load_generator
    from core.images import seed_ws
    from core.mesh import MeshOptions, extract_mesh, write_mesh
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("default", "ffhq512"), default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--faces", type=int, default=50_000, help="decimate to about N faces (0: keep all)")
    p.add_argument("--texture", type=int, default=1024)
    p.add_argument("--texture-from", choices=("decoder", "views"), default="decoder")
    p.add_argument("--views", type=int, default=7)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="keep the GLB here (default: a temporary directory)")
    args = p.parse_args()
    device = torch.device(args.device)
    t0 = time.perf_counter()
    if args.model == "default":
        G = load_generator(Path(__file__).resolve().parents[1] / "assets" / "default_model.ckpt", device)
    else:
        G = bench_generator("ffhq512", device)
    load_s = time.perf_counter() - t0
    timer = PhaseTimer(device)
    with torch.no_grad():
        ws = seed_ws(G, args.seed, 0.7)
        planes = G.planes(ws)
        level = random_model_level(G, planes) if args.model == "ffhq512" else 10.0
        timer.mark("planes")
        options = MeshOptions(resolution=args.res, level=level, faces=args.faces or None, texture=args.texture,
                              texture_from=args.texture_from, num_views=args.views)
        mesh = extract_mesh(G, planes, ws, options, timer)
        timer.mark("GLB file")
        with tempfile.TemporaryDirectory() as tmp:
            out = args.out or Path(tmp)
            out.mkdir(parents=True, exist_ok=True)
            path = write_mesh(mesh, out / f"{args.model}_seed{args.seed}.glb")
            size = path.stat().st_size
        timer.mark(None)
    print(f"{args.model} on {device}: {args.res}³ -> {len(mesh.faces)} faces, {len(mesh.vertices)} vertices, "
          f"{args.texture}² texture from {args.texture_from}, GLB {size / 2**20:.1f} MB (load {load_s:.1f} s)")
    print(f"  {'phase':<16} {'wall s':>7} {'CPU s':>7}")
    for phase, (wall, cpu) in timer.seconds.items():
        print(f"  {phase:<16} {wall:7.2f} {cpu:7.2f}")
    wall, cpu = (sum(v[k] for v in timer.seconds.values()) for k in (0, 1))
    print(f"  {'total':<16} {wall:7.2f} {cpu:7.2f}  (planes to file; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
