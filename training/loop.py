"""The training loop (ref §6.4): phases, EMA, logging, grids, snapshots, SWD, resume.

Run directory layout (read by training/runner.py and the studio):
  training_options.json       every option of the run
  metrics.jsonl               one JSON object per line: {"event": "tick"|"snapshot", "kimg", ...}
  reals.png                   the grid's real images (once)
  fakes<nimg:09d>.png, ..._raw.png, ..._depth.png   G_ema at fixed latents and cameras
  network-snapshot-<nimg:09d>.ckpt                  core.checkpoint format with G, D, optimizer, RNG
Every file is written atomically, so a run killed at any moment leaves no partial file, and
`--resume` continues from the newest snapshot (at most one snapshot interval is lost).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import resource
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

from core.cameras import focal_to_fov
from core.checkpoint import load_checkpoint, save_checkpoint
from core.errors import CheckpointError, StudioError
from core.fileio import atomic_path
from core.imaging import grid, save_png, to_uint8
from core.progress import Progress
from core.triplane import TriPlaneGenerator
from training import distributed as dist_utils
from training.config import TrainOptions
from training.dataset import PosedDataset, open_dataset
from training.discriminator import DualDiscriminator
from training.loss import EG3DLoss, schedule
from training.metrics import swd

OPTIONS_FILE = "training_options.json"
METRICS_FILE = "metrics.jsonl"
SNAPSHOT_GLOB = "network-snapshot-*.ckpt"


def snapshot_name(nimg: int) -> str:
    return f"network-snapshot-{nimg:09d}.ckpt"


def list_snapshots(run_dir: Path) -> list[Path]:
    """Snapshots of a run, oldest first."""
    return sorted(Path(run_dir).glob(SNAPSHOT_GLOB))


@dataclasses.dataclass
class _Phase:
    name: str
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int


def _make_phases(G, D, opts: TrainOptions) -> list[_Phase]:
    """Main + lazy regularisation phases with the original lr/beta scaling for lazy regularisation."""
    phases = []
    g_reg = opts.density_reg_every if opts.density_reg > 0 else 0
    for name, module, lr, reg in (("G", G, opts.glr, g_reg), ("D", D, opts.dlr, opts.d_reg_interval)):
        ratio = reg / (reg + 1) if reg else 1
        opt = torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)
        if reg:
            phases += [_Phase(name + "main", module, opt, 1), _Phase(name + "reg", module, opt, reg)]
        else:
            phases.append(_Phase(name + ("main" if name == "G" else "both"), module, opt, 1))
    return phases


def _save_grid(path: Path, images: np.ndarray, gw: int, gh: int) -> None:
    save_png(path, grid(images[:gw * gh], gw))


@torch.no_grad()
def generate(G: TriPlaneGenerator, z: torch.Tensor, c: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
    """G(z, c) with c as conditioning and camera, in batches -> image, image_raw, image_depth (CPU)."""
    outs: dict[str, list[torch.Tensor]] = {"image": [], "image_raw": [], "image_depth": []}
    dev = next(G.parameters()).device
    for i in range(0, z.shape[0], batch):
        out = G(z[i:i + batch].to(dev), c[i:i + batch].to(dev), noise_mode="const")
        for k in outs:
            outs[k].append(out[k].float().cpu())
    return {k: torch.cat(v) for k, v in outs.items()}


def _depth_to_rgb(depth: torch.Tensor) -> torch.Tensor:
    d = -depth
    d = (d - d.min()) / (d.max() - d.min()).clamp(min=1e-8)
    return (d * 2 - 1).repeat(1, 3, 1, 1)


class Trainer:
    """One training run in one process (several processes under torchrun)."""

    def __init__(self, data: str | Path, run_dir: str | Path, opts: TrainOptions, device: torch.device,
                 resume: bool = False, progress: Progress | None = None):
        self.info = dist_utils.init_distributed(device)
        self.device = self.info.device
        self.run_dir, self.opts, self.progress = Path(run_dir), opts, progress
        self.data_path = str(data)
        if opts.batch % self.info.world_size:
            raise ValueError(f"--batch {opts.batch} must be divisible by the number of processes "
                             f"({self.info.world_size})")
        self.batch_gpu = opts.batch // self.info.world_size
        group = min(opts.mbstd_group, self.batch_gpu)
        if self.batch_gpu % group:
            raise ValueError(f"batch per process {self.batch_gpu} must be a multiple of the mbstd group {group}")
        seed = opts.seed * self.info.world_size + self.info.rank
        torch.manual_seed(seed)
        self.data_gen = torch.Generator().manual_seed(seed)
        self.ds: PosedDataset = open_dataset(data)
        res = self.ds.resolution
        resume_from = self._resume_checkpoint() if resume else None
        # A resumed run rebuilds its networks from the snapshot's own constructor kwargs.
        G_kwargs = resume_from["G_kwargs"] if resume_from else opts.G_kwargs(res)
        if not resume_from:  # the viewer's and tools' default camera FOV: the dataset's mean focal length
            G_kwargs["rendering_kwargs"]["avg_camera_fov"] = focal_to_fov(float(self.ds.labels[:, 16].mean()))
        D_kwargs = resume_from["D_kwargs"] if resume_from else opts.D_kwargs(res)
        self.G = TriPlaneGenerator(**G_kwargs).train().requires_grad_(False).to(self.device)
        self.G.neural_rendering_resolution = opts.nrr_initial
        self.D = DualDiscriminator(**D_kwargs).train().requires_grad_(False).to(self.device)
        if self.G.img_resolution != res:
            raise StudioError(f"the dataset's images are {res}x{res} but the generator makes "
                              f"{self.G.img_resolution}x{self.G.img_resolution} images")
        self.G_ema = copy.deepcopy(self.G).eval()
        self.phases = _make_phases(self.G, self.D, opts)
        self.loss = EG3DLoss(self.G, self.D, opts)
        self.cur_nimg, self.batch_idx, self.train_time = 0, 0, 0.0
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.run_dir.glob(".*.tmp*"):  # temp files of writes cut short by a kill
                stale.unlink(missing_ok=True)
        if resume_from:
            self._restore(resume_from)
        elif self.info.is_main:
            with atomic_path(self.run_dir / OPTIONS_FILE) as tmp:
                tmp.write_text(opts.to_json())
        if self.info.is_main:
            self._trim_metrics()
        for m in (self.G, self.D, self.G_ema):
            dist_utils.broadcast_module(m, self.info)
        gw, gh = opts.grid_size
        g = torch.Generator().manual_seed(123)
        self.grid_idx = torch.randperm(len(self.ds), generator=g)[:gw * gh]
        if len(self.grid_idx) < gw * gh:
            self.grid_idx = self.grid_idx.repeat(math.ceil(gw * gh / len(self.grid_idx)))[:gw * gh]
        self.grid_z = torch.randn(gw * gh, self.G.z_dim, generator=g)
        self.grid_c = torch.from_numpy(self.ds.labels[self.grid_idx.numpy()])
        self._stats: dict[str, list[float]] = {}
        self._stop_requested = False

    def request_stop(self, *_args) -> None:
        """Finish the current step, write a snapshot and return (SIGINT/SIGTERM do this; a second
        Ctrl-C interrupts at once)."""
        self._stop_requested = True
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _should_stop(self) -> bool:
        if self.info.world_size == 1:
            return self._stop_requested
        flag = torch.tensor([float(self._stop_requested)], device=self.device)
        return bool(dist_utils.all_reduce_sum(flag, self.info).item() > 0)

    # ---- resume -----------------------------------------------------------------------------------
    def _resume_checkpoint(self) -> dict | None:
        """The newest complete snapshot with training state (None for a run without snapshots)."""
        snaps = list_snapshots(self.run_dir)
        for path in reversed(snaps):
            try:
                data = load_checkpoint(path)
            except CheckpointError:
                continue
            if {"training", "G", "D", "D_kwargs"} <= set(data):
                return data
        if snaps:
            raise StudioError(f"{self.run_dir}: no snapshot with training state to resume from")
        return None

    def _restore(self, data: dict) -> None:
        t = data["training"]
        self.G.load_state_dict(data["G"])
        self.D.load_state_dict(data["D"])
        self.G_ema.load_state_dict(data["G_ema"])
        self.G.neural_rendering_resolution = self.G_ema.neural_rendering_resolution = int(
            data["neural_rendering_resolution"])
        phases_by_module = {}
        for ph in self.phases:
            phases_by_module.setdefault(ph.name[0], ph.opt)
        phases_by_module["G"].load_state_dict(t["G_opt"])
        phases_by_module["D"].load_state_dict(t["D_opt"])
        self.cur_nimg, self.batch_idx = int(t["cur_nimg"]), int(t["batch_idx"])
        self.train_time = float(t["training_time_s"])
        if self.info.world_size == 1:
            torch.set_rng_state(t["rng"]["torch"])
            self.data_gen.set_state(t["rng"]["data"])
            if self.device.type == "cuda" and "cuda" in t["rng"]:
                torch.cuda.set_rng_state(t["rng"]["cuda"], self.device)
        else:  # only rank 0's streams were saved: start fresh, distinct streams per rank
            seed = (self.opts.seed * self.info.world_size + self.info.rank) * 1_000_003 + self.cur_nimg
            torch.manual_seed(seed)
            self.data_gen.manual_seed(seed)

    def _trim_metrics(self) -> None:
        """Drop log lines written after the snapshot we resume from (and a line cut short by a kill)."""
        path = self.run_dir / METRICS_FILE
        if not path.exists():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("nimg", 0) <= self.cur_nimg:
                keep.append(line)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(k + "\n" for k in keep))

    # ---- outputs ----------------------------------------------------------------------------------
    def _log(self, entry: dict) -> None:
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()

    def _write_grids(self) -> None:
        gw, gh = self.opts.grid_size
        if not (self.run_dir / "reals.png").exists():
            reals = self.ds.batch(self.grid_idx)[0].permute(0, 2, 3, 1).numpy()
            _save_grid(self.run_dir / "reals.png", reals, gw, gh)
        out = generate(self.G_ema, self.grid_z, self.grid_c, self.batch_gpu)
        stem = f"fakes{self.cur_nimg:09d}"
        _save_grid(self.run_dir / f"{stem}.png", to_uint8(out["image"]), gw, gh)
        _save_grid(self.run_dir / f"{stem}_raw.png", to_uint8(out["image_raw"]), gw, gh)
        _save_grid(self.run_dir / f"{stem}_depth.png", to_uint8(_depth_to_rgb(out["image_depth"])), gw, gh)

    def _swd(self) -> dict[str, float]:
        n = min(self.opts.swd_images, len(self.ds))
        g = torch.Generator().manual_seed(7)
        idx = torch.randperm(len(self.ds), generator=g)[:n]
        real = self.ds.batch(idx)[0].float() / 127.5 - 1
        z = torch.randn(n, self.G.z_dim, generator=g)
        c = torch.from_numpy(self.ds.labels[torch.randint(len(self.ds), (n,), generator=g).numpy()])
        fake = generate(self.G_ema, z, c, self.batch_gpu)["image"].clamp(-1, 1)
        return swd(real, fake)

    def _snapshot(self) -> None:
        self._write_grids()
        metrics = self._swd() if self.opts.swd_images > 0 else {}
        opt = {ph.name[0]: ph.opt for ph in self.phases}
        rng = {"torch": torch.get_rng_state(), "data": self.data_gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        training = {"options": json.loads(self.opts.to_json()), "cur_nimg": self.cur_nimg,
                    "batch_idx": self.batch_idx, "training_time_s": self.train_time,
                    "G_opt": opt["G"].state_dict(), "D_opt": opt["D"].state_dict(), "rng": rng,
                    "dataset": self.data_path, "dataset_label_std": self.ds.label_std(), "metrics": metrics}
        name = snapshot_name(self.cur_nimg)
        save_checkpoint(self.run_dir / name, self.G_ema, G=self.G, D=self.D, training=training)
        self._log({"event": "snapshot", "kimg": self.cur_nimg / 1000, "nimg": self.cur_nimg,
                   "snapshot": name, **metrics})

    # ---- the loop ---------------------------------------------------------------------------------
    def _step(self) -> dict[str, float]:
        n, dev = self.batch_gpu, self.device
        idx = torch.randint(len(self.ds), (n,), generator=self.data_gen)
        real, real_c = self.ds.batch(idx)
        real = real.to(dev).float() / 127.5 - 1
        real_c = real_c.to(dev)
        k = len(self.phases)
        gen_z = torch.randn(k, n, self.G.z_dim, device=dev)
        gen_c = torch.from_numpy(self.ds.labels[torch.randint(len(self.ds), (k * n,), generator=self.data_gen)
                                 .numpy()]).to(dev).view(k, n, -1)
        stats: dict[str, float] = {}
        for i, ph in enumerate(self.phases):
            if self.batch_idx % ph.interval:
                continue
            ph.opt.zero_grad(set_to_none=True)
            ph.module.requires_grad_(True)
            stats.update(self.loss.accumulate(ph.name, real, real_c, gen_z[i], gen_c[i], ph.interval,
                                              self.cur_nimg))
            ph.module.requires_grad_(False)
            dist_utils.average_gradients(list(ph.module.parameters()), self.info)
            ph.opt.step()
        self._update_ema()
        self.cur_nimg += self.opts.batch
        self.batch_idx += 1
        return stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema_kimg = self.opts.ema_kimg if self.opts.ema_kimg is not None else self.opts.batch * 10 / 32
        ema_nimg = ema_kimg * 1000
        if self.opts.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.cur_nimg * self.opts.ema_rampup)
        beta = 0.5 ** (self.opts.batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)
        self.G_ema.neural_rendering_resolution = self.G.neural_rendering_resolution
        self.G_ema.rendering_kwargs = dict(self.G.rendering_kwargs)

    def _tick_entry(self, images: int, seconds: float) -> dict:
        sched = schedule(self.opts, self.cur_nimg)
        entry = {"event": "tick", "kimg": self.cur_nimg / 1000, "nimg": self.cur_nimg,
                 "time_s": round(self.train_time, 2), "images_per_s": images / max(seconds, 1e-9),
                 "sec_per_kimg": seconds / max(images, 1) * 1000, "processes": self.info.world_size,
                 "blur_sigma": sched.blur_sigma,
                 "swapping_prob": sched.swapping_prob, "nrr": sched.nrr,
                 "peak_cpu_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if self.device.type == "cuda":
            entry["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        entry.update({k: float(np.mean(v)) for k, v in self._stats.items()})
        self._stats = {}
        return entry

    def run(self) -> Path | None:
        """Train until opts.kimg (or a stop request); returns the last snapshot path (rank 0)."""
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._run()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _run(self) -> Path | None:
        total = int(round(self.opts.kimg * 1000))
        snap, tick = max(int(self.opts.snap * 1000), 1), max(int(self.opts.tick * 1000), 1)
        start_nimg = self.cur_nimg
        if self.info.is_main and not list(self.run_dir.glob("fakes*.png")):
            self._write_grids()
        if self.info.is_main and self.progress is not None:
            self.progress.update(0, total - start_nimg, f"kimg {self.cur_nimg / 1000:.2f}")
        tick_start, tick_nimg = time.perf_counter(), self.cur_nimg
        last = None
        while self.cur_nimg < total:
            t0 = time.perf_counter()
            prev = self.cur_nimg
            for k, v in self._step().items():
                self._stats.setdefault(k, []).append(v)
            self.train_time += time.perf_counter() - t0
            done = self.cur_nimg >= total or self._should_stop()
            if self.info.is_main:
                if self.cur_nimg // tick > prev // tick or done:
                    now = time.perf_counter()
                    entry = self._tick_entry(self.cur_nimg - tick_nimg, now - tick_start)
                    self._log(entry)
                    tick_start, tick_nimg = now, self.cur_nimg
                if self.progress is not None:
                    g, d = self._stats.get("loss_G", [math.nan])[-1], self._stats.get("loss_D_real", [math.nan])[-1]
                    self.progress.update(self.cur_nimg - start_nimg, total - start_nimg,
                                         f"kimg {self.cur_nimg / 1000:.2f} G {g:.3f} D {d:.3f}")
            if self.cur_nimg // snap > prev // snap or done:
                if self.info.is_main:
                    self._snapshot()
                    last = self.run_dir / snapshot_name(self.cur_nimg)
                dist_utils.barrier(self.info)
            if done:
                break
        return last

    def close(self) -> None:
        dist_utils.shutdown(self.info)


def train(data: str | Path, run_dir: str | Path, opts: TrainOptions, device: torch.device,
          resume: bool = False, progress: Progress | None = None) -> Path | None:
    """Train (or resume) a run; returns the newest snapshot written by this process (rank 0)."""
    trainer = Trainer(data, run_dir, opts, device, resume=resume, progress=progress)
    try:
        return trainer.run()
    finally:
        trainer.close()
