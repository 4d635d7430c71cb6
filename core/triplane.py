"""TriPlaneGenerator: mapping -> StyleGAN2 backbone (tri-planes) -> volume rendering -> superresolution.

EG3D ref §1.1. Constructor keywords, submodule order and state_dict names are those of the original
release, so weights move both ways; the forward API adds `stochastic` (deterministic by default).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from core.config import RenderOptions
from core.decoder import OSGDecoder
from core.ray_sampler import sample_rays
from core.renderer import ImportanceRenderer, planes_table, sample_triplane
from core.superresolution import sr_class
from core.synthesis import Generator


class RaySampler(nn.Module):
    """Stateless holder kept for the original module tree; see `core.ray_sampler.sample_rays`."""

    def forward(self, cam2world: torch.Tensor, intrinsics: torch.Tensor, resolution: int):
        return sample_rays(cam2world, intrinsics, resolution)


class TriPlaneGenerator(nn.Module):
    """EG3D generator. G(z, c) -> {'image', 'image_raw', 'image_depth'}.

    c is the 25-number camera label (cam2world 4x4 + normalised intrinsics 3x3, row-major).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 sr_num_fp16_res: int = 0, mapping_kwargs: dict | None = None,
                 rendering_kwargs: dict | None = None, sr_kwargs: dict | None = None, **synthesis_kwargs):
        super().__init__()
        rendering_kwargs = dict(rendering_kwargs or {})
        self.init_kwargs = copy.deepcopy(dict(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            sr_num_fp16_res=sr_num_fp16_res, mapping_kwargs=dict(mapping_kwargs or {}),
            rendering_kwargs=rendering_kwargs, sr_kwargs=dict(sr_kwargs or {}), **synthesis_kwargs))
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.renderer = ImportanceRenderer()
        self.ray_sampler = RaySampler()
        # Extension for small (CPU) models: plane_resolution (the original always uses 256). It is
        # recorded in init_kwargs only when given, so released-style kwargs stay loadable by the original.
        plane_resolution = synthesis_kwargs.pop("plane_resolution", 256)
        self.backbone = Generator(z_dim, c_dim, w_dim, img_resolution=plane_resolution, img_channels=32 * 3,
                                  mapping_kwargs=mapping_kwargs, **synthesis_kwargs)
        sr_cls = sr_class(rendering_kwargs.get("superresolution_module",
                                               "training.superresolution.SuperresolutionHybrid8XDC"))
        self.superresolution = sr_cls(channels=32, img_resolution=img_resolution,
                                      sr_num_fp16_res=sr_num_fp16_res,
                                      sr_antialias=rendering_kwargs.get("sr_antialias", True),
                                      **(sr_kwargs or {}))
        self.decoder = OSGDecoder(32, {"decoder_lr_mul": rendering_kwargs.get("decoder_lr_mul", 1),
                                       "decoder_output_dim": 32})
        self.neural_rendering_resolution = 64
        self.rendering_kwargs = rendering_kwargs

    # rendering_kwargs stays the original dict (it travels in checkpoints); the renderer reads `options`.
    @property
    def rendering_kwargs(self) -> dict:
        return self._rendering_kwargs

    @rendering_kwargs.setter
    def rendering_kwargs(self, value: dict) -> None:
        self._rendering_kwargs = dict(value)
        self.options = RenderOptions.from_kwargs(self._rendering_kwargs)

    @property
    def num_ws(self) -> int:
        return self.backbone.num_ws

    def mapping(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False) -> torch.Tensor:
        """z [N,z_dim], c [N,25] -> ws [N,num_ws,w_dim]; c is zeroed or scaled per rendering_kwargs."""
        if self.options.c_gen_conditioning_zero:
            c = torch.zeros_like(c)
        return self.backbone.mapping(z, c * self.options.c_scale, truncation_psi=truncation_psi,
                                     truncation_cutoff=truncation_cutoff, update_emas=update_emas)

    def planes(self, ws: torch.Tensor, noise_mode: str = "const", fused_modconv: bool | None = None
               ) -> torch.Tensor:
        """ws -> tri-planes [N,3,32,P,P], P = 256 normally (channels 0-31 plane xy, 32-63 xz, 64-95 zx)."""
        p = self.backbone.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        return p.view(p.shape[0], 3, 32, p.shape[-2], p.shape[-1])

    def render_planes(self, planes: torch.Tensor, ws: torch.Tensor, c: torch.Tensor,
                      neural_rendering_resolution: int | None = None, stochastic: bool = False,
                      superresolution: bool = True, options: RenderOptions | None = None,
                      table: torch.Tensor | None = None, fused_modconv: bool | None = None
                      ) -> dict[str, torch.Tensor]:
        """Render cached planes from camera c: rays -> renderer -> raw image (+ SR image).

        Returns image_raw [N,3,r,r], image_depth [N,1,r,r], image_opacity [N,1,r,r], image_features
        [N,32,r,r] (untouched neural rendering) and, with `superresolution`, image [N,3,R,R].
        `options` overrides the checkpoint's rendering options (e.g. more depth samples).
        """
        nrr = neural_rendering_resolution or self.neural_rendering_resolution
        opts = options or self.options
        cam2world = c[:, :16].view(-1, 4, 4)
        intrinsics = c[:, 16:25].view(-1, 3, 3)
        origins, dirs = self.ray_sampler(cam2world, intrinsics, nrr)
        feats, depth, opacity = self.renderer(planes, self.decoder, origins, dirs, opts,
                                              stochastic=stochastic, table=table)
        n = planes.shape[0]
        feature_image = feats.permute(0, 2, 1).reshape(n, feats.shape[-1], nrr, nrr)
        out = {
            "image_raw": feature_image[:, :3],
            "image_depth": depth.permute(0, 2, 1).reshape(n, 1, nrr, nrr),
            "image_opacity": opacity.permute(0, 2, 1).reshape(n, 1, nrr, nrr),
            "image_features": feature_image,
        }
        if superresolution:
            image, raw = self.superresolution(feature_image[:, :3], feature_image, ws,
                                              noise_mode=self.options.superresolution_noise_mode,
                                              return_raw=True, fused_modconv=fused_modconv)
            out["image"] = image
            if raw is not None:  # the original's in-place quirk (ref §1.9): image_raw includes ToRGB0
                out["image_raw"] = raw
        return out

    def superresolve(self, features: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        """Neural-rendered features [N,32,r,r] -> final image [N,3,R,R]; `features` is left untouched."""
        return self.superresolution(features[:, :3], features, ws,
                                    noise_mode=self.options.superresolution_noise_mode)

    def synthesis(self, ws: torch.Tensor, c: torch.Tensor, neural_rendering_resolution: int | None = None,
                  noise_mode: str = "const", stochastic: bool = False, fused_modconv: bool | None = None,
                  **render_kwargs) -> dict[str, torch.Tensor]:
        """ws [N,num_ws,w_dim], c [N,25] -> {'image','image_raw','image_depth', ...}.

        render_kwargs go to `render_planes` (superresolution, options). A given resolution becomes the
        generator's default, as in the original (the trainer's resolution fade relies on it).
        """
        if neural_rendering_resolution is not None:
            self.neural_rendering_resolution = neural_rendering_resolution
        planes = self.planes(ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        return self.render_planes(planes, ws, c, neural_rendering_resolution, stochastic=stochastic,
                                  fused_modconv=fused_modconv, **render_kwargs)

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, neural_rendering_resolution: int | None = None,
                update_emas: bool = False, **synthesis_kwargs) -> dict[str, torch.Tensor]:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, c, neural_rendering_resolution=neural_rendering_resolution, **synthesis_kwargs)

    def sample_planes(self, planes: torch.Tensor, coordinates: torch.Tensor,
                      table: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Decode arbitrary points [N,P,3] -> {'sigma' [N,P,1] raw density, 'rgb' [N,P,32] features}."""
        if table is None:
            table = planes_table(planes)
        sigma, rgb = self.decoder(sample_triplane(table, coordinates, self.options.box_warp))
        return {"sigma": sigma, "rgb": rgb}

    def sample_mixed(self, coordinates: torch.Tensor, directions: torch.Tensor, ws: torch.Tensor,
                     noise_mode: str = "const") -> dict[str, torch.Tensor]:
        """As the original: decoder output at points given ws (directions are ignored by the decoder)."""
        return self.sample_planes(self.planes(ws, noise_mode=noise_mode), coordinates)

    def sample(self, coordinates: torch.Tensor, directions: torch.Tensor, z: torch.Tensor, c: torch.Tensor,
               truncation_psi: float = 1, truncation_cutoff: int | None = None,
               noise_mode: str = "const") -> dict[str, torch.Tensor]:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.sample_mixed(coordinates, directions, ws, noise_mode=noise_mode)
