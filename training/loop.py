"""The training loop (ref §6.4): phases, EMA, logging, grids, snapshots, SWD (and FID/KID), resume.

Run directory layout (read by training/runner.py and the studio):
  training_options.json       every option of the run
  metrics.jsonl               one JSON object per line: {"event": "tick"|"snapshot", "kimg", ...}
  reals.png                   the grid's real images (once)
  fakes<nimg:09d>.png, ..._raw.png, ..._depth.png   G_ema at fixed latents and cameras
  network-snapshot-<nimg:09d>.ckpt                  core.checkpoint format with G, D, optimizer, RNG
Every file is written atomically, so a run killed at any moment leaves no partial file, and
`--resume` continues from the newest snapshot that loads (at most one snapshot interval is lost).
TensorBoard event files are written beside metrics.jsonl when tensorboard is installed.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from core import interrupts
from core.cameras import focal_to_fov
from core.checkpoint import load_checkpoint, read_networks, save_checkpoint
from core.errors import CheckpointError, StudioError
from core.fileio import atomic_path
from core.generator_build import build_generator
from core.imaging import MASK_OPACITY, grid, save_png, to_uint8
from core.layers import set_precision
from core.progress import Progress
from core.triplane import TriPlaneGenerator
from training import distributed as dist_utils
from training.augment import AugmentPipe, adjust_p
from training.config import TrainOptions
from training.dataset import PosedDataset, check_trainable, open_dataset
from training.discriminator import DualDiscriminator
from training.fid import FEATURES, FeatureStats, fid_kid, load_inception
from training.loss import EG3DLoss, schedule
from training.metrics import SWDAccumulator, swd_from

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


@torch.no_grad()
def generate(G: TriPlaneGenerator, z: torch.Tensor, c: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
    """G(z, c) with c as conditioning and camera, in batches -> image, image_raw, image_depth,
    image_opacity (CPU)."""
    outs: dict[str, list[torch.Tensor]] = {"image": [], "image_raw": [], "image_depth": [], "image_opacity": []}
    dev = next(G.parameters()).device
    for i in range(0, z.shape[0], batch):
        out = G(z[i:i + batch].to(dev), c[i:i + batch].to(dev), noise_mode="const")
        for k in outs:
            outs[k].append(out[k].float().cpu())
    return {k: torch.cat(v) for k, v in outs.items()}


def _depth_to_rgb(depth: torch.Tensor, opacity: torch.Tensor | None = None) -> torch.Tensor:
    """Depth [N,1,H,W] -> grey [N,3,H,W] in [-1,1] for the grid: near = bright, one range for the batch.

    With `opacity`, pixels below MASK_OPACITY are background (drawn far, left out of the range), as in
    render's depth PNGs; without any foreground pixel, every pixel counts."""
    d = -depth
    fg = opacity >= MASK_OPACITY if opacity is not None and bool((opacity >= MASK_OPACITY).any()) else None
    shown = d if fg is None else d[fg]
    d = (d - shown.min()) / (shown.max() - shown.min()).clamp(min=1e-8)
    if fg is not None:
        d = torch.where(fg, d, torch.zeros_like(d))
    return (d * 2 - 1).repeat(1, 3, 1, 1)


def _without_label_std(state_dict: dict) -> dict:
    return {k: v for k, v in state_dict.items() if k != "dataset_label_std"}


def read_network(path: str | Path) -> dict:
    """A network file for --init (any checkpoint load_generator opens) -> G_kwargs, rendering_kwargs, G_ema,
    G (G_ema when the file has no G), and D_kwargs/D (None when the file has no discriminator)."""
    try:
        f = read_networks(path)
    except CheckpointError as e:
        raise CheckpointError(f"--init {e}") from None
    return {"G_kwargs": f.G_kwargs, "rendering_kwargs": f.rendering_kwargs, "G_ema": f.G_ema,
            "G": f.G if f.G is not None else f.G_ema, "D_kwargs": f.D_kwargs, "D": f.D}


def fine_tune_options(opts: TrainOptions) -> TrainOptions:
    """The original's semantics when training starts from a network file: the image counter starts
    at 0, no EMA ramp-up, faster ADA adaptation, and (unless resume_blur) no blur and no
    pose-conditioning fade, so a trained model is not set back by schedules meant for a fresh one."""
    changes = {"ema_rampup": None, "ada_kimg": 100.0}
    if not opts.resume_blur:
        changes.update(blur_init_sigma=0.0, gpc_reg_fade_kimg=0.0)
    return dataclasses.replace(opts, **changes)


class Trainer:
    """One training run in one process (several processes under torchrun)."""

    def __init__(self, data: str | Path, run_dir: str | Path, opts: TrainOptions, device: torch.device,
                 resume: bool = False, progress: Progress | None = None):
        self.info = dist_utils.init_distributed(device)
        self.device = self.info.device
        self.run_dir, self.progress = Path(run_dir), progress
        self.data_path = str(data)
        opts = dist_utils.broadcast_object(opts, self.info)  # every process trains with rank 0's options
        seed = opts.seed * self.info.world_size + self.info.rank
        torch.manual_seed(seed)
        self.data_gen = torch.Generator().manual_seed(seed)
        self.ds: PosedDataset = open_dataset(data)
        check_trainable(self.ds)
        res = self.ds.resolution
        # Rank 0 reads the snapshot or network file and sends it to the others (no shared disk needed).
        resume_from = dist_utils.broadcast_object(
            self._resume_checkpoint() if resume and self.info.is_main else None, self.info) if resume else None
        init_from = None
        if resume_from is None and opts.init:
            init_from = dist_utils.broadcast_object(read_network(opts.init) if self.info.is_main else None,
                                                    self.info)
            opts = fine_tune_options(opts)
        self.opts = opts
        opts.check(res, self.info.world_size)
        self.batch_gpu, self.rounds = opts.per_process_batch(self.info.world_size)
        source = resume_from or init_from
        if source is not None:  # the networks' constructor kwargs come from the file
            G_kwargs = copy.deepcopy(source["G_kwargs"])
            D_kwargs = copy.deepcopy(source["D_kwargs"]) if source.get("D_kwargs") else opts.D_kwargs(res)
        else:
            G_kwargs, D_kwargs = opts.G_kwargs(res), opts.D_kwargs(res)
            # the viewer's and tools' default camera FOV: the dataset's mean focal length
            G_kwargs["rendering_kwargs"]["avg_camera_fov"] = focal_to_fov(float(self.ds.labels[:, 16].mean()))
        if G_kwargs["img_resolution"] != res:
            flag = "--init" if init_from is not None else "--resume"
            raise StudioError(f"the dataset's images are {res}x{res} but the generator of {flag} makes "
                              f"{G_kwargs['img_resolution']}x{G_kwargs['img_resolution']} images")
        if init_from is not None:
            rk = G_kwargs.setdefault("rendering_kwargs", {})
            rk.update(init_from.get("rendering_kwargs") or {})
            rk["c_gen_conditioning_zero"] = not opts.gen_pose_cond  # training choices, not architecture
            rk["gpc_reg_prob"] = opts.gpc_reg_prob if opts.gen_pose_cond else None
            rk.setdefault("avg_camera_fov", focal_to_fov(float(self.ds.labels[:, 16].mean())))
        self.G = self._build_G(G_kwargs, source["G"] if source else None).train().requires_grad_(False)
        self.G.neural_rendering_resolution = opts.nrr_initial
        self.D = DualDiscriminator(**D_kwargs).train().requires_grad_(False)
        if source is not None and source.get("D") is not None:
            try:
                self.D.load_state_dict(source["D"])
            except RuntimeError as e:
                raise StudioError(f"the file's discriminator weights do not match its D kwargs "
                                  f"({str(e).splitlines()[0][:200]})") from None
        self.G, self.D = self.G.to(self.device), self.D.to(self.device)
        for net in (self.G, self.D):  # the recipe's mixed precision: fp16 SR and top D blocks on CUDA only
            set_precision(net, "auto")
        self.G_ema = copy.deepcopy(self.G).eval()
        if source is not None:
            self.G_ema.load_state_dict(_without_label_std(source["G_ema"]))
        self.phases = _make_phases(self.G, self.D, opts)
        self.augment = AugmentPipe(opts.aug_p if opts.aug == "fixed" else 0.0) if opts.aug != "noaug" else None
        self.loss = EG3DLoss(self.G, self.D, opts, augment=self.augment)
        self.cur_nimg, self.batch_idx, self.train_time = 0, 0, 0.0
        if self.info.is_main:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StudioError(f"cannot create run directory {self.run_dir}: {e.strerror}") from None
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
        (gw, gh), smaller = opts.snapshot_grid(res, self.device.type)
        self.grid_wh = gw, gh
        if smaller and self.info.is_main:
            print(f"snapshot grids: {gw}x{gh} images of {res}x{res} on the CPU (the {opts.config} config's "
                  f"{opts.grid_size[0]}x{opts.grid_size[1]} is for GPUs; --grid WxH to choose)",
                  file=sys.stderr, flush=True)
        g = torch.Generator().manual_seed(123)
        self.grid_idx = torch.randperm(len(self.ds), generator=g)[:gw * gh]
        if len(self.grid_idx) < gw * gh:
            self.grid_idx = self.grid_idx.repeat(math.ceil(gw * gh / len(self.grid_idx)))[:gw * gh]
        self.grid_z = torch.randn(gw * gh, self.G.z_dim, generator=g)
        self.grid_c = torch.from_numpy(self.ds.labels[self.grid_idx.numpy()])
        self._stats: dict[str, list[float]] = {}
        self._last: dict[str, float] = {}
        self._stop_requested = False
        self._tb = _tensorboard(self.run_dir) if self.info.is_main else None
        self.inception = None
        if opts.inception:  # rank 0 reads the file and sends the network to the others
            net = load_inception(opts.inception) if self.info.is_main else None
            self.inception = dist_utils.broadcast_object(net, self.info).to(self.device)

    @staticmethod
    def _build_G(kwargs: dict, state_dict: dict | None) -> TriPlaneGenerator:
        if state_dict is None:
            return TriPlaneGenerator(**kwargs)
        return build_generator(kwargs, _without_label_std(state_dict), kwargs.get("rendering_kwargs"),
                               source="the network file")

    def request_stop(self) -> None:
        """Finish the current step, write a snapshot and return (SIGINT/SIGTERM stop sooner: see run)."""
        self._stop_requested = True

    def _should_stop(self) -> bool:
        stop = self._stop_requested or interrupts.received() is not None
        if self.info.world_size == 1:
            return stop
        flag = torch.tensor([float(stop)], device=self.device)
        return bool(dist_utils.all_reduce_sum(flag, self.info).item() > 0)

    def _optional(self, work, stop: bool):
        """Work a stop skips or cuts short (image grids, metrics): its result, or None when skipped or cut.
        `stop` is the decision all processes share; one process alone also skips or cuts at a signal (with
        several, work is never cut half-way: the others would wait for this one in a collective)."""
        if stop or (self.info.world_size == 1 and interrupts.received() is not None):
            return None
        try:
            return work()
        except interrupts.Interrupted:
            return None

    # ---- resume -----------------------------------------------------------------------------------
    def _resume_checkpoint(self) -> dict | None:
        """The newest snapshot that loads with training state (None for a run without snapshots).

        A damaged newest snapshot (a full disk, a copy cut short) is skipped with a warning.
        """
        snaps = list_snapshots(self.run_dir)
        skipped = []
        for path in reversed(snaps):
            try:
                data = load_checkpoint(path)
            except CheckpointError as e:
                skipped.append(f"{path.name} ({str(e).split(' (', 1)[-1].rstrip(')')[:120]})")
                continue
            if {"training", "G", "D", "D_kwargs"} <= set(data):
                if skipped:
                    print(f"warning: skipped unreadable snapshot(s) {', '.join(skipped)}; resuming from "
                          f"{path.name}", file=sys.stderr, flush=True)
                return data
        if snaps:
            raise StudioError(f"{self.run_dir}: no snapshot with training state to resume from")
        return None

    def _restore(self, data: dict) -> None:
        t = data["training"]
        self.G.neural_rendering_resolution = self.G_ema.neural_rendering_resolution = int(
            data["neural_rendering_resolution"])
        opt = {ph.name[0]: ph.opt for ph in self.phases}  # a network's phases share its optimizer
        opt["G"].load_state_dict(t["G_opt"])
        opt["D"].load_state_dict(t["D_opt"])
        self.cur_nimg, self.batch_idx = int(t["cur_nimg"]), int(t["batch_idx"])
        self.train_time = float(t["training_time_s"])
        if self.augment is not None and "augment_p" in t:
            self.augment.p = float(t["augment_p"])
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
        gw = self.grid_wh[0]  # grid_idx, grid_z and grid_c hold exactly one grid's cells
        if not (self.run_dir / "reals.png").exists():
            reals = self.ds.batch(self.grid_idx)[0].permute(0, 2, 3, 1).numpy()
            save_png(self.run_dir / "reals.png", grid(reals, gw))
        out = generate(self.G_ema, self.grid_z, self.grid_c, self.batch_gpu)
        depth = _depth_to_rgb(out["image_depth"], out["image_opacity"])
        for suffix, images in (("", out["image"]), ("_raw", out["image_raw"]), ("_depth", depth)):
            save_png(self.run_dir / f"fakes{self.cur_nimg:09d}{suffix}.png", grid(to_uint8(images), gw))

    def _metric_images(self, n: int, seed: int):
        """This process's share of n (real, G_ema) image batches in [-1, 1] for a metric: the same n reals,
        latents and dataset poses on every run and rank count (drawn from `seed`), split over ranks."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self.ds), generator=g)[:n]
        z = torch.randn(n, self.G.z_dim, generator=g)
        c = torch.from_numpy(self.ds.labels[torch.randint(len(self.ds), (n,), generator=g).numpy()])
        mine = torch.arange(self.info.rank, n, self.info.world_size)
        for i in range(0, len(mine), self.batch_gpu):
            if self.info.world_size == 1:  # a safe point between batches (the metric's own work has no modules)
                interrupts.check()
            part = mine[i:i + self.batch_gpu]
            real = self.ds.batch(idx[part])[0].to(self.device).float() / 127.5 - 1
            out = self.G_ema(z[part].to(self.device), c[part].to(self.device), noise_mode="const")
            yield real, out["image"].float().clamp(-1, 1)

    @torch.no_grad()
    def _swd(self, budget: int = 1 << 15) -> dict[str, float]:
        """SWD between swd_images reals and G_ema images; every process takes its share of images in
        batches on its device, rank 0 combines the fixed-size descriptor sets (None on other ranks)."""
        n = min(self.opts.swd_images, len(self.ds))
        world, rank = self.info.world_size, self.info.rank
        mine = len(range(rank, n, world))
        share = max(budget // world, 1)
        real_acc = SWDAccumulator(max(mine, 1), budget=share, seed=2 * rank)
        fake_acc = SWDAccumulator(max(mine, 1), budget=share, seed=2 * rank + 1)
        for real, fake in self._metric_images(n, seed=7):
            real_acc.add(real)
            fake_acc.add(fake)
        descs = [acc.descriptors() for acc in (real_acc, fake_acc)]
        if world > 1:  # every level on every rank, even one that got no images (fewer images than ranks)
            levels = [self.ds.resolution >> k for k in range(12) if self.ds.resolution >> k >= 16]
            empty = torch.empty(0, 3 * 7 * 7, device=self.device)
            descs = [{res: dist_utils.gather_rows(d.get(res, empty), share, self.info) for res in levels}
                     for d in descs]
        return swd_from(*descs) if self.info.is_main else None

    @torch.no_grad()
    def _fid(self, kid_budget: int = 4096) -> dict[str, float] | None:
        """FID and KID between fid_images reals and G_ema images on Inception features: every process
        takes its share of images; moments are summed and KID samples gathered on rank 0 (None elsewhere)."""
        n = min(self.opts.fid_images, len(self.ds))
        if n < 2:  # no covariance from one image
            return {}
        world, rank = self.info.world_size, self.info.rank
        share = max(kid_budget // world, 1)
        stats = [FeatureStats(kid_budget=share, seed=2 * rank), FeatureStats(kid_budget=share, seed=2 * rank + 1)]
        for real, fake in self._metric_images(n, seed=11):
            stats[0].add(self.inception(real))
            stats[1].add(self.inception(fake))
        if world > 1:
            for st in stats:
                moments = torch.cat([torch.tensor([float(st.n)], dtype=torch.float64), st.sum, st.outer.flatten()])
                moments = dist_utils.all_reduce_sum(moments.to(self.device), self.info).cpu()
                st.n, st.sum = int(moments[0]), moments[1:1 + FEATURES]
                st.outer = moments[1 + FEATURES:].view(FEATURES, FEATURES)
                st.sample = dist_utils.gather_rows(st.sample.to(self.device), share, self.info).cpu()
        return fid_kid(*stats) if self.info.is_main else None

    def _snapshot(self, metrics: dict[str, float]) -> None:
        opt = {ph.name[0]: ph.opt for ph in self.phases}
        rng = {"torch": torch.get_rng_state(), "data": self.data_gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        training = {"options": json.loads(self.opts.to_json()), "cur_nimg": self.cur_nimg,
                    "batch_idx": self.batch_idx, "training_time_s": self.train_time,
                    "G_opt": opt["G"].state_dict(), "D_opt": opt["D"].state_dict(), "rng": rng,
                    "dataset": self.data_path, "dataset_label_std": self.ds.label_std(), "metrics": metrics}
        if self.augment is not None:
            training["augment_p"] = self.augment.p
        name = snapshot_name(self.cur_nimg)
        save_checkpoint(self.run_dir / name, self.G_ema, G=self.G, D=self.D, training=training)
        self._log({"event": "snapshot", "kimg": self.cur_nimg / 1000, "nimg": self.cur_nimg,
                   "snapshot": name, **metrics})
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"Metrics/{k}", v, self.cur_nimg)
            self._tb.flush()

    # ---- the loop ---------------------------------------------------------------------------------
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """This process's share of one step: reals [n,3,R,R] in [-1,1], their cameras, and per phase
        latents [k,n,z] and generator cameras [k,n,25] (n = batch_gpu * rounds)."""
        n, dev = self.batch_gpu * self.rounds, self.device
        idx = torch.randint(len(self.ds), (n,), generator=self.data_gen)
        real, real_c = self.ds.batch(idx)
        real = real.to(dev).float() / 127.5 - 1
        if self.opts.mirror:  # image-only flip, as the original's --mirror (the camera is not mirrored)
            flip = (torch.rand(n, generator=self.data_gen) < 0.5).to(dev)
            real = torch.where(flip[:, None, None, None], real.flip(-1), real)
        k = len(self.phases)
        gen_z = torch.randn(k, n, self.G.z_dim, device=dev)
        gen_c = torch.from_numpy(self.ds.labels[torch.randint(len(self.ds), (k * n,), generator=self.data_gen)
                                 .numpy()]).to(dev).view(k, n, -1)
        return real, real_c.to(dev), gen_z, gen_c

    def run_phase(self, i: int, real: torch.Tensor, real_c: torch.Tensor, gen_z: torch.Tensor,
                  gen_c: torch.Tensor) -> dict[str, list[float]]:
        """Phase i's gradients over the step's batch in rounds of batch_gpu (the mean over the whole
        batch), averaged over processes; Adam steps only the parameters the phase used."""
        ph, bg = self.phases[i], self.batch_gpu
        stats: dict[str, list[float]] = {}
        ph.opt.zero_grad(set_to_none=True)
        ph.module.requires_grad_(True)
        for r in range(self.rounds):
            part = slice(r * bg, (r + 1) * bg)
            out = self.loss.accumulate(ph.name, real[part], real_c[part], gen_z[part], gen_c[part],
                                       ph.interval / self.rounds, self.cur_nimg)
            for k, v in out.items():
                stats.setdefault(k, []).append(v)
        ph.module.requires_grad_(False)
        dist_utils.average_gradients(list(ph.module.parameters()), self.info)
        return stats

    def step(self) -> dict[str, float]:
        """One training step over a whole batch: every phase due at this step, then the EMA; returns losses."""
        real, real_c, gen_z, gen_c = self._batch()
        stats: dict[str, float] = {}
        for i, ph in enumerate(self.phases):
            if self.batch_idx % ph.interval:
                continue
            out = self.run_phase(i, real, real_c, gen_z[i], gen_c[i])
            ph.opt.step()
            stats.update({k: float(np.mean(v)) for k, v in out.items()})
        self._update_ema()
        self.cur_nimg += self.opts.batch
        self.batch_idx += 1
        if self.opts.aug == "ada" and self.batch_idx % self.opts.ada_interval == 0:
            signs = dist_utils.all_reduce_sum(self.loss.real_signs.clone().to(self.device), self.info).cpu()
            self.loss.real_signs.zero_()
            if signs[1] > 0:
                self.augment.p = adjust_p(self.augment.p, float(signs[0] / signs[1]), self.opts.ada_target,
                                          self.opts.batch * self.opts.ada_interval, self.opts.ada_kimg)
        if self.augment is not None:
            stats["augment_p"] = self.augment.p
        return stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema_kimg = self.opts.ema_kimg if self.opts.ema_kimg is not None else self.opts.batch * 10 / 32
        ema_nimg = ema_kimg * 1000
        if self.opts.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.cur_nimg * self.opts.ema_rampup)
        beta = 0.5 ** (self.opts.batch / max(ema_nimg, 1e-8))
        dist_utils.average_buffers(self.G, self.info)
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
        if self._tb is not None:
            for k, v in entry.items():
                if isinstance(v, (int, float)) and k not in ("kimg", "nimg", "event"):
                    self._tb.add_scalar(f"Progress/{k}", v, self.cur_nimg)
            self._tb.flush()
        return entry

    def run(self) -> Path | None:
        """Train until opts.kimg or a stop; returns the last snapshot path (rank 0).

        SIGTERM or Ctrl-C (core.interrupts) stop within seconds wherever the run is: a training step is cut
        (its partial gradients are dropped), image grids and metrics are skipped or cut, and a resumable
        snapshot of the last completed step is written; interrupts.received() then names the signal. With
        several processes the step in flight is finished first, so that every rank stops at the same step."""
        interrupts.clear()
        cut = interrupts.torch_checks() if self.info.world_size == 1 else contextlib.nullcontext()
        with interrupts.cooperative(), cut:
            return self._run()

    def _run(self) -> Path | None:
        total = int(round(self.opts.kimg * 1000))
        snap, tick = max(int(self.opts.snap * 1000), 1), max(int(self.opts.tick * 1000), 1)
        start_nimg = self.cur_nimg
        if self.info.is_main and not list(self.run_dir.glob("fakes*.png")):
            self._optional(self._write_grids, False)
        if self.info.is_main and self.progress is not None:
            self.progress.update(0, total - start_nimg, f"kimg {self.cur_nimg / 1000:.2f}")
        tick_start, tick_nimg = time.perf_counter(), self.cur_nimg
        last = None
        while self.cur_nimg < total:
            t0 = time.perf_counter()
            prev = self.cur_nimg
            try:
                losses = self.step()
            except interrupts.Interrupted:  # cut mid-step: drop its partial gradients, save the last step
                for ph in self.phases:
                    ph.opt.zero_grad(set_to_none=True)
                    ph.module.requires_grad_(False)
                losses = {}
            for k, v in losses.items():
                self._stats.setdefault(k, []).append(v)
                if math.isfinite(v):
                    self._last[k] = v
            self.train_time += time.perf_counter() - t0
            stop = self._should_stop()
            done = self.cur_nimg >= total or stop
            if self.info.is_main:
                if self.cur_nimg // tick > prev // tick or (done and self.cur_nimg > tick_nimg):
                    now = time.perf_counter()
                    entry = self._tick_entry(self.cur_nimg - tick_nimg, now - tick_start)
                    self._log(entry)
                    tick_start, tick_nimg = now, self.cur_nimg
                if self.progress is not None:  # the last finite losses (a tick empties _stats)
                    g, d = self._last.get("loss_G", math.nan), self._last.get("loss_D_real", math.nan)
                    self.progress.update(self.cur_nimg - start_nimg, total - start_nimg,
                                         f"kimg {self.cur_nimg / 1000:.2f} G {g:.3f} D {d:.3f}")
            if self.cur_nimg // snap > prev // snap or done:
                metrics = (self._optional(self._swd, stop) if self.opts.swd_images > 0 else {}) or {}
                if self.inception is not None:
                    metrics = {**metrics, **(self._optional(self._fid, stop) or {})}
                if self.info.is_main:
                    self._optional(self._write_grids, stop)
                    with interrupts.shielded():
                        self._snapshot(metrics)
                    last = self.run_dir / snapshot_name(self.cur_nimg)
                dist_utils.barrier(self.info)
            if done:
                break
        return last

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        dist_utils.shutdown(self.info)


def _tensorboard(run_dir: Path):
    """A TensorBoard SummaryWriter on the run directory, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir))


def train(data: str | Path, run_dir: str | Path, opts: TrainOptions, device: torch.device,
          resume: bool = False, progress: Progress | None = None) -> Path | None:
    """Train (or resume) a run; returns the newest snapshot written by this process (rank 0)."""
    trainer = Trainer(data, run_dir, opts, device, resume=resume, progress=progress)
    try:
        return trainer.run()
    finally:
        trainer.close()
