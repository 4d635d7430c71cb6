"""Mixed precision (EG3D ref §1.3, §6.3): float16 superresolution and top discriminator blocks.

CUDA selects float16 under precision 'auto'; here (no GPU) the float16 path is forced with 'fp16'
at tiny sizes and compared against float32 and the original's outputs.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from core import ops
from core.layers import block_dtype, set_precision
from tests.conftest import build_fixture_generator
from training.config import preset
from training.discriminator import DualDiscriminator
from training.loop import Trainer
from training.synthetic import SynthSettings, write_synthetic_dataset

FP16_TOL = 5e-3  # relative to the output's magnitude: a few float16 roundings (eps 1e-3) per layer


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item() / b.abs().max().item()


def record_dtypes(module: torch.nn.Module, names: list[str]) -> dict[str, torch.dtype]:
    """Forward hooks that remember the dtype of each named submodule's (first) output."""
    seen: dict[str, torch.dtype] = {}
    for name in names:
        def hook(_m, _inp, out, name=name):
            seen[name] = (out[0] if isinstance(out, tuple) else out).dtype
        module.get_submodule(name).register_forward_hook(hook)
    return seen


@pytest.fixture()
def G(fixture_dir):
    return build_fixture_generator(fixture_dir)  # a fresh one: these tests change its precision


def test_block_dtype_selection():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert block_dtype(True, "auto", cuda) == torch.float16
    assert block_dtype(True, "auto", cpu) == torch.float32
    assert block_dtype(True, "fp32", cuda) == torch.float32
    assert block_dtype(False, "auto", cuda) == block_dtype(False, "fp16", cpu) == torch.float32
    assert block_dtype(True, "fp16", cpu) == torch.float16
    with pytest.raises(ValueError, match="precision must be one of"):
        set_precision(torch.nn.Linear(1, 1), "bf16")


def test_cpu_auto_is_the_default_float32_path(G, cases):
    """The trainer's 'auto' on CPU and the default give bit-identical SR outputs."""
    k = cases["sr_clamp_case"]
    default = G.superresolution(k["rgb"].clone(), k["x"].clone(), k["ws"], noise_mode="none")
    set_precision(G, "auto")
    auto = G.superresolution(k["rgb"].clone(), k["x"].clone(), k["ws"], noise_mode="none")
    assert torch.equal(default, auto)


@pytest.mark.parametrize("fused", [True, False])
def test_forced_fp16_superresolution(G, cases, fused):
    """float16 SR blocks: float32 image out, close to the original's float32 result, clamp still acting."""
    set_precision(G, "fp16")
    seen = record_dtypes(G.superresolution, ["block0.conv1", "block1.conv1", "block1.torgb", "block1"])
    case = cases["per_seed"][next(iter(cases["per_seed"]))]
    out = G.superresolution(case["sr_in_rgb"].clone(), case["sr_in_x"].clone(), case["sr_in_ws"],
                            noise_mode="none", fused_modconv=fused)
    assert seen == {"block0.conv1": torch.float16, "block1.conv1": torch.float16,
                    "block1.torgb": torch.float16, "block1": torch.float16}
    assert out.dtype == torch.float32
    assert 0 < rel_err(out, case["sr_out"]) <= FP16_TOL

    k = cases["sr_clamp_case"]  # inputs ~1000x normal
    out = G.superresolution(k["rgb"].clone(), k["x"].clone(), k["ws"], noise_mode="none", fused_modconv=fused)
    assert torch.isfinite(out).all()
    assert rel_err(out, k["out"]) <= FP16_TOL
    assert rel_err(out, k["out_if_conv_clamp_None"]) > 0.3  # the clamp at 256 really acted


def test_fp16_modulated_conv_normalisation_prevents_overflow():
    """Large activations and styles: x*s alone would exceed float16's 65504 in the non-fused path."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 32, 8, 8, generator=g) * 100
    weight = torch.randn(16, 32, 3, 3, generator=g)
    styles = torch.randn(2, 32, generator=g) * 1000
    assert (x.abs().amax() * styles.abs().amax()).item() > 65504
    ref = ops.modulated_conv2d(x, weight, styles, fused=False)
    for fused in (False, True):
        out = ops.modulated_conv2d(x.half(), weight, styles, fused=fused)
        assert out.dtype == torch.float16 and torch.isfinite(out).all()
        assert rel_err(out, ref) <= FP16_TOL


def tiny_D() -> DualDiscriminator:
    torch.manual_seed(1)
    return DualDiscriminator(c_dim=25, img_resolution=32, img_channels=3, channel_base=1024, channel_max=64,
                             num_fp16_res=2, conv_clamp=256)


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_forced_fp16_discriminator(scale):
    """The 2 top D blocks in float16: logits close to float32; gradients (params; input, as R1 takes) close."""
    g = torch.Generator().manual_seed(2)
    image = torch.randn(4, 3, 32, 32, generator=g) * scale
    raw = torch.randn(4, 3, 16, 16, generator=g) * scale
    c = torch.randn(4, 25, generator=g)
    results = {}
    for precision in ("fp32", "fp16"):
        D = set_precision(tiny_D(), precision)
        seen = record_dtypes(D, ["b32", "b16", "b8", "b4"])
        img = image.clone().requires_grad_(True)
        logits = D({"image": img, "image_raw": raw}, c)
        logits.sum().backward()
        results[precision] = (logits.detach(), img.grad, D.b32.conv0.weight.grad, D.b8.conv1.weight.grad)
        half = precision == "fp16"
        assert seen == {"b32": torch.float16 if half else torch.float32,
                        "b16": torch.float16 if half else torch.float32, "b8": torch.float32, "b4": torch.float32}
    (ref, *ref_grads), (out, *grads) = results["fp32"], results["fp16"]
    assert out.dtype == torch.float32 and 0 < rel_err(out, ref) <= FP16_TOL
    for ref, out in zip(ref_grads, grads):
        # Gradients are compared in the L2 sense: float16 rounding moves pre-activations across the lrelu
        # kink and the clamp, where a single gradient element changes by O(1). (In float32, a 1e-3 relative
        # perturbation of the input already moves the input gradient by 2%.)
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        assert 0 < ((out - ref).norm() / ref.norm()).item() <= 0.1


def test_trainer_uses_the_recipe_precision_and_a_forced_fp16_step_trains(tmp_path):
    """The trainer selects 'auto' (float32 here, float16 on CUDA); forced to float16, one real step (G, D and
    the R1 gradient through the float16 D blocks) gives finite losses and moves the float16 blocks' weights."""
    data = write_synthetic_dataset(tmp_path / "shapes", 4, 128, seed=1,
                                   settings=SynthSettings(kinds=("box",), max_prims=1))
    opts = preset("tiny", kimg=0.002, batch=2, snap=0.002, tick=0.002, swd_images=0, grid_size=(1, 1))
    trainer = Trainer(data, tmp_path / "run", opts, torch.device("cpu"))
    blocks = [m for net in (trainer.G, trainer.D, trainer.G_ema) for m in net.modules() if getattr(m, "use_fp16", 0)]
    assert blocks and {m.precision for m in blocks} == {"auto"}
    for net in (trainer.G, trainer.D, trainer.G_ema):
        set_precision(net, "fp16")
    seen_d, seen_g = record_dtypes(trainer.D, ["b128", "b8"]), record_dtypes(trainer.G.superresolution, ["block1"])
    before = {n: v.clone() for n, v in trainer.D.state_dict().items()}
    trainer.run()
    trainer.close()
    assert seen_d == {"b128": torch.float16, "b8": torch.float32} and seen_g == {"block1": torch.float16}
    assert not torch.equal(trainer.D.b128.conv0.weight, before["b128.conv0.weight"])
    tick = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][0]
    losses = [tick[k] for k in ("loss_G", "loss_D_fake", "loss_D_real", "reg_r1")]
    assert all(math.isfinite(v) for v in losses) and tick["reg_r1"] > 0, tick
