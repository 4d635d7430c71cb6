"""Training options: one dataclass, named presets (`tiny` for CPUs, the original ffhq/afhq/shapenet).

The generator/discriminator constructor kwargs are derived from the options exactly as the original
train.py does (ref §1.10, §6.1), so a run's snapshots rebuild with `TriPlaneGenerator(**G_kwargs)`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

SR_BY_RESOLUTION = {512: "SuperresolutionHybrid8XDC", 256: "SuperresolutionHybrid4X", 128: "SuperresolutionHybrid2X"}
SR_NONE = "SuperresolutionNone"
"""Our extension for resolutions without an original module: the neural rendering resized to the image size."""
MIN_RESOLUTION = 32
AUG_MODES = ("noaug", "ada", "fixed")


CPU_GRID_PIXELS = 1 << 20
"""Pixels of a snapshot grid on a CPU unless --grid says otherwise (64 images of 128^2, 4 of 512^2)."""


def default_sr_module(resolution: int) -> str:
    """The original's choice by resolution (train.py); no superresolution for other sizes."""
    return SR_BY_RESOLUTION.get(resolution, SR_NONE)


@dataclass
class TrainOptions:
    """Every knob of a run (saved as training_options.json in the run dir)."""
    config: str = "tiny"
    batch: int = 8
    """Total batch over all processes."""
    batch_gpu: int | None = None
    """Batch per process and forward pass (default batch/processes); gradients accumulate up to `batch`."""
    gamma: float = 0.3
    """R1 weight."""
    glr: float = 0.0025
    dlr: float = 0.002
    kimg: float = 10.0
    snap: float = 1.0
    """Snapshot (grids, checkpoint, SWD) interval in kimg."""
    tick: float = 0.2
    """Metrics-log interval in kimg."""
    seed: int = 0
    # Architecture
    cbase: int = 32768
    cmax: int = 512
    d_cbase: int | None = None
    """Discriminator channel base/max (None: the generator's cbase/cmax, as the original)."""
    d_cmax: int | None = None
    map_depth: int = 2
    mbstd_group: int = 4
    sr_module: str | None = None
    """Superresolution class (default by resolution, as train.py)."""
    plane_resolution: int = 256
    """Tri-plane resolution (the original always uses 256; smaller is a CPU-model extension)."""
    sr_widths: list[int] | None = None
    """Superresolution block widths (None = the class's original widths; a CPU-model extension)."""
    sr_num_fp16_res: int = 4
    d_num_fp16_res: int = 4
    # Rendering
    depth_resolution: int = 48
    depth_resolution_importance: int = 48
    ray_start: float | str = 2.25
    ray_end: float | str = 3.3
    box_warp: float = 1.0
    white_back: bool = False
    avg_camera_radius: float = 2.7
    avg_camera_pivot: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.2])
    # Loss schedules (ref §6.2)
    density_reg: float = 0.25
    density_reg_every: int = 4
    density_reg_p_dist: float = 0.004
    reg_type: str = "l1"
    sr_consistency: float = 0.0
    """Weight of training.loss.sr_consistency (ours, not the original's; 0 = off as in EG3D)."""
    d_reg_interval: int = 16
    blur_init_sigma: float = 10.0
    blur_fade_kimg: float = 200.0
    """At batch 32; scaled by batch/32 like the original."""
    gen_pose_cond: bool = False
    gpc_reg_prob: float = 0.5
    gpc_reg_fade_kimg: float = 1000.0
    nrr_initial: int = 64
    nrr_final: int | None = None
    nrr_fade_kimg: float = 1000.0
    style_mixing_prob: float = 0.0
    disc_c_noise: float = 0.0
    c_scale: float = 1.0
    decoder_lr_mul: float = 1.0
    ema_kimg: float | None = None
    """Default batch*10/32."""
    ema_rampup: float | None = 0.05
    mirror: bool = False
    """Image-only x-flip of real images with probability 1/2 (the original's --mirror; cameras unchanged)."""
    # Augmentation (StyleGAN2-ADA): 'ada' adapts p towards the target sign(D(real)) mean; 'fixed' keeps aug_p.
    aug: str = "noaug"
    aug_p: float = 0.2
    ada_target: float = 0.6
    ada_kimg: float = 500.0
    ada_interval: int = 4
    # Fine-tuning (--init): the original's resume semantics for a network file unless resume_blur.
    init: str | None = None
    resume_blur: bool = False
    # Monitoring
    swd_images: int = 256
    inception: str | None = None
    """Local FID Inception-v3 weights file (pytorch-fid's); FID and KID at each snapshot when set."""
    fid_images: int = 1000
    """Images per set for FID/KID (with --inception)."""
    grid_size: tuple[int, int] = (8, 4)
    """Snapshot image grid (columns, rows): the original's on a GPU; on a CPU see snapshot_grid."""
    grid_fixed: bool = False
    """grid_size was chosen with --grid: used on every device."""

    def snapshot_grid(self, resolution: int, device_type: str) -> tuple[tuple[int, int], bool]:
        """(columns, rows) of the snapshot grids and whether they were made smaller than grid_size: a CPU takes
        many minutes for the original's 120 images of 512^2, so there the grid holds at most CPU_GRID_PIXELS."""
        gw, gh = self.grid_size
        if self.grid_fixed or device_type != "cpu" or gw * gh * resolution ** 2 <= CPU_GRID_PIXELS:
            return (gw, gh), False
        cells = max(1, CPU_GRID_PIXELS // resolution ** 2)
        cols = math.ceil(math.sqrt(cells))
        return (cols, max(1, cells // cols)), True

    def rendering_kwargs(self, resolution: int) -> dict:
        sr = self.sr_module or default_sr_module(resolution)
        return {
            "image_resolution": resolution, "disparity_space_sampling": False, "clamp_mode": "softplus",
            "superresolution_module": f"training.superresolution.{sr.rsplit('.', 1)[-1]}",
            "c_gen_conditioning_zero": not self.gen_pose_cond,
            "gpc_reg_prob": self.gpc_reg_prob if self.gen_pose_cond else None,
            "c_scale": self.c_scale, "superresolution_noise_mode": "none",
            "density_reg": self.density_reg, "density_reg_p_dist": self.density_reg_p_dist,
            "reg_type": self.reg_type, "decoder_lr_mul": self.decoder_lr_mul, "sr_antialias": True,
            "depth_resolution": self.depth_resolution,
            "depth_resolution_importance": self.depth_resolution_importance,
            "ray_start": self.ray_start, "ray_end": self.ray_end, "box_warp": self.box_warp,
            "white_back": self.white_back, "avg_camera_radius": self.avg_camera_radius,
            "avg_camera_pivot": list(self.avg_camera_pivot),
        }

    def per_process_batch(self, world_size: int) -> tuple[int, int]:
        """(batch per forward pass, accumulation rounds) for `world_size` processes."""
        if self.batch % world_size:
            raise ValueError(f"--batch {self.batch} must be divisible by the number of processes ({world_size})")
        batch_gpu = self.batch_gpu or self.batch // world_size
        if (self.batch // world_size) % batch_gpu:
            raise ValueError(f"--batch-gpu {batch_gpu} must divide the batch per process "
                             f"({self.batch} / {world_size} processes = {self.batch // world_size})")
        if batch_gpu % min(self.mbstd_group, batch_gpu):
            raise ValueError(f"--batch-gpu {batch_gpu} must be a multiple of --mbstd-group {self.mbstd_group}")
        return batch_gpu, self.batch // world_size // batch_gpu

    def check(self, resolution: int, world_size: int = 1) -> None:
        """Refuse combinations that cannot train, naming the flag to change (before any work starts; the
        dataset's own rules, a power-of-two resolution included, are training.dataset.check_trainable's)."""
        self.per_process_batch(world_size)
        sr = (self.sr_module or default_sr_module(resolution)).rsplit(".", 1)[-1]
        from core.superresolution import SR_CLASSES
        if sr not in SR_CLASSES:
            raise ValueError(f"--sr-module {sr}: unknown; choose one of {', '.join(SR_CLASSES)}")
        cls = SR_CLASSES[sr]
        if sr != SR_NONE:
            out = cls.input_resolution * (2 if cls.block0_upsamples else 1) * 2
            if out != resolution:
                raise ValueError(f"--sr-module {sr} makes {out}x{out} images but the dataset's are "
                                 f"{resolution}x{resolution}; use --sr-module {default_sr_module(resolution)}")
        for flag, nrr in (("--neural_rendering_resolution_initial", self.nrr_initial),
                          ("--neural_rendering_resolution_final", self.nrr_final)):
            if nrr is not None and nrr > resolution:
                raise ValueError(f"{flag} {nrr} is larger than the {resolution}x{resolution} images")
        if self.aug not in AUG_MODES:
            raise ValueError(f"--aug {self.aug}: choose one of {', '.join(AUG_MODES)}")
        if self.density_reg > 0 and self.reg_type != "l1":
            raise ValueError(f"--reg_type {self.reg_type}: only 'l1' is supported")

    def G_kwargs(self, resolution: int, c_dim: int = 25) -> dict:
        """TriPlaneGenerator constructor kwargs (the original's layout; extensions only when used)."""
        sr_kwargs = {"channel_base": self.cbase, "channel_max": self.cmax, "fused_modconv_default": "inference_only"}
        if self.sr_widths:
            sr_kwargs["sr_widths"] = list(self.sr_widths)
        kw = dict(z_dim=512, w_dim=512, c_dim=c_dim, img_resolution=resolution, img_channels=3,
                  mapping_kwargs={"num_layers": self.map_depth}, rendering_kwargs=self.rendering_kwargs(resolution),
                  channel_base=self.cbase, channel_max=self.cmax, fused_modconv_default="inference_only",
                  num_fp16_res=0, conv_clamp=None, sr_num_fp16_res=self.sr_num_fp16_res, sr_kwargs=sr_kwargs)
        if self.plane_resolution != 256:
            kw["plane_resolution"] = self.plane_resolution
        return kw

    def D_kwargs(self, resolution: int, c_dim: int = 25) -> dict:
        """DualDiscriminator constructor kwargs."""
        return dict(c_dim=c_dim, img_resolution=resolution, img_channels=3, architecture="resnet",
                    channel_base=self.d_cbase or self.cbase, channel_max=self.d_cmax or self.cmax,
                    num_fp16_res=self.d_num_fp16_res,
                    conv_clamp=256 if self.d_num_fp16_res > 0 else None, disc_c_noise=self.disc_c_noise,
                    block_kwargs={"freeze_layers": 0}, mapping_kwargs={},
                    epilogue_kwargs={"mbstd_group_size": self.mbstd_group})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> TrainOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        d = dict(d)
        if "grid_size" in d:
            d["grid_size"] = tuple(d["grid_size"])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> TrainOptions:
        return cls.from_dict(json.loads(Path(path).read_text()))


_FFHQ = dict(gamma=1.0, batch=32, kimg=25000, snap=200, tick=4, depth_resolution=48,
             depth_resolution_importance=48, ray_start=2.25, ray_end=3.3, box_warp=1.0,
             avg_camera_radius=2.7, avg_camera_pivot=[0.0, 0.0, 0.2], gen_pose_cond=True,
             swd_images=2048, grid_size=(15, 8))

PRESETS: dict[str, dict] = {
    # Small enough for a 2-core CPU: 64^2 tri-planes from a narrow backbone (16-32 channels), 32^2 neural
    # rendering with 12+12 samples, a narrow SR 2X (32/16 channels) to 128^2; short blur fade; no pose
    # conditioning (objects, not faces).
    "tiny": dict(batch=8, gamma=0.3, kimg=40, snap=2, tick=0.2, cbase=1024, cmax=32, plane_resolution=64,
                 sr_widths=[32, 16],
                 depth_resolution=12, depth_resolution_importance=12, ray_start=0.9, ray_end=2.7,
                 box_warp=1.0, white_back=True, avg_camera_radius=1.8, avg_camera_pivot=[0.0, 0.0, 0.0],
                 nrr_initial=32, blur_fade_kimg=4.0, blur_init_sigma=4.0, gen_pose_cond=False,
                 swd_images=64, grid_size=(8, 4)),
    "ffhq": dict(_FFHQ),
    "afhq": dict(_FFHQ, gamma=5.0, avg_camera_pivot=[0.0, 0.0, -0.06], gpc_reg_prob=0.8, aug="ada"),
    "shapenet": dict(_FFHQ, gamma=0.3, depth_resolution=64, depth_resolution_importance=64, ray_start=0.1,
                     ray_end=2.6, box_warp=1.6, white_back=True, avg_camera_radius=1.7,
                     avg_camera_pivot=[0.0, 0.0, 0.0], gen_pose_cond=False),
}


def preset(name: str, **overrides) -> TrainOptions:
    """Options of a named preset with overrides (None values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown config {name!r}; choose from {', '.join(PRESETS)}")
    values = dict(PRESETS[name], config=name)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainOptions.from_dict(values)
