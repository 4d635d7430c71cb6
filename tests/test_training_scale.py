"""Training at scale: bounded SWD, gradient accumulation, --init fine-tuning, 2-process weight sync,
any resolution, R1 on what D saw, unused parameters, resume fallback, ADA, argument validation."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import main
from core.checkpoint import load_checkpoint, load_generator
from core.network_pickle import read_network_pickle
from training.augment import AugmentPipe, adjust_p
from training.config import SR_NONE, preset
from training.discriminator import filtered_resize
from training.loop import Trainer, list_snapshots
from training.loss import blur, schedule
from training.metrics import SWDAccumulator, swd
from training.runner import RunReader
from training.synthetic import SynthSettings, write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"swd_images": 0, "grid_size": (1, 1), "snap": 0.002, "tick": 0.002}
CPU = torch.device("cpu")


def _data(tmp_path_factory, res: int, count: int = 8) -> Path:
    out = tmp_path_factory.mktemp(f"data{res}") / "shapes"
    return write_synthetic_dataset(out, count, res, seed=1, settings=SynthSettings(kinds=("box",), max_prims=1))


@pytest.fixture(scope="module")
def data32(tmp_path_factory) -> Path:
    return _data(tmp_path_factory, 32)


@pytest.fixture(scope="module")
def data128(tmp_path_factory) -> Path:
    return _data(tmp_path_factory, 128, 4)


def _phase(trainer: Trainer, name: str) -> int:
    return [ph.name for ph in trainer.phases].index(name)


def test_swd_memory_does_not_grow_with_the_image_count():
    g = torch.Generator().manual_seed(0)

    def smooth(n):
        return torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear") * 2 - 1

    sizes = {}
    for n in (64, 1024):
        acc = SWDAccumulator(n, budget=2048)
        for _ in range(n // 64):
            acc.add(smooth(64))
        sizes[n] = acc.nbytes
        assert all(len(d) == 2048 for d in acc.descriptors().values())
    assert sizes[64] == sizes[1024] == 2 * 2048 * 147 * 4  # levels 32 and 16, fixed budget
    # Streaming in chunks of 16 still tells the distributions apart.
    same, other = swd(smooth(64), smooth(64), chunk=16), swd(smooth(64), torch.rand(64, 3, 32, 32) * 2 - 1, chunk=16)
    assert other["swd_32"] > 3 * same["swd_32"]


def test_accumulating_two_micro_batches_gives_the_one_batch_gradients(data32, tmp_path):
    grads = {}
    for batch_gpu in (4, 2):
        # mbstd group 1: a group of 2 spans different samples in a batch of 4 than in two batches of 2
        opts = preset("tiny", batch=4, batch_gpu=batch_gpu, mbstd_group=1, kimg=1, **QUIET)
        trainer = Trainer(data32, tmp_path / f"r{batch_gpu}", opts, CPU)
        assert trainer.rounds == 4 // batch_gpu
        torch.manual_seed(5)
        real, real_c, gen_z, gen_c = trainer._batch()
        i = _phase(trainer, "Dreg")  # R1 on the reals: no random draws, so both runs must agree
        stats = trainer.run_phase(i, real, real_c, gen_z[i], gen_c[i])
        assert len(stats["reg_r1"]) == trainer.rounds
        grads[batch_gpu] = {n: p.grad.clone() for n, p in trainer.D.named_parameters() if p.grad is not None}
        trainer.close()
    assert grads[4].keys() == grads[2].keys()
    for n, g in grads[4].items():
        torch.testing.assert_close(grads[2][n], g, rtol=1e-4, atol=1e-6, msg=n)
    assert any(g.abs().sum() > 0 for g in grads[4].values())


def test_init_from_the_original_pickle_trains_and_keeps_the_architecture(fixture_dir, tmp_path_factory, tmp_path):
    data = _data(tmp_path_factory, 256, 2)
    pkl = fixture_dir / "network-snapshot-small.pkl"
    orig = read_network_pickle(pkl)
    opts = preset("tiny", init=str(pkl), batch=2, kimg=0.002, nrr_initial=32, **QUIET)
    trainer = Trainer(data, tmp_path / "run", opts, CPU)
    # The original's resume semantics: counter at 0, no blur, no EMA ramp-up.
    assert trainer.cur_nimg == 0 and trainer.opts.blur_init_sigma == 0 and trainer.opts.ema_rampup is None
    assert schedule(trainer.opts, 0).blur_sigma == 0
    for name, module in (("D", trainer.D), ("G_ema", trainer.G_ema), ("G", trainer.G)):
        sd = {k: v for k, v in orig[name]["state_dict"].items() if k != "dataset_label_std"}
        assert list(module.state_dict()) == list(sd), name
        assert all(torch.equal(v, sd[k]) for k, v in module.state_dict().items()), name
    last = trainer.run()
    trainer.close()
    G = load_generator(last)
    kw = G.init_kwargs
    for key in ("channel_base", "channel_max", "img_resolution", "sr_num_fp16_res"):
        assert kw[key] == orig["G_ema"]["init_kwargs"][key], key
    assert kw["rendering_kwargs"]["superresolution_module"].endswith("SuperresolutionHybrid4X")
    saved = load_checkpoint(last)
    assert saved["D_kwargs"]["channel_base"] == 4096 and saved["training"]["cur_nimg"] == 2
    changed = [k for k, v in saved["G"].items() if not torch.equal(v, orig["G"]["state_dict"][k])]
    assert changed
    out = G(torch.randn(1, 512), torch.from_numpy(trainer.ds.labels[:1]))
    assert out["image"].shape == (1, 3, 256, 256)


_RANK_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from pathlib import Path
    from training.config import preset
    from training.loop import Trainer
    data, run, out = sys.argv[1:4]
    rank = int(os.environ["RANK"])
    opts = preset("tiny", batch=4, batch_gpu=1, mbstd_group=1, kimg=0.004, snap=0.004, tick=0.004,
                  swd_images=4, grid_size=(1, 1))
    t = Trainer(data, run, opts, torch.device("cpu"))
    t.run()
    # Resume on a process whose run directory does not exist: rank 0 reads the snapshot and sends it.
    opts.kimg = 0.008
    t2 = Trainer(data, run if rank == 0 else run + "-absent-on-this-machine", opts, torch.device("cpu"), resume=True)
    resumed_at = t2.cur_nimg
    t2.run()
    torch.save({"G": t2.G.state_dict(), "D": t2.D.state_dict(), "G_ema": t2.G_ema.state_dict(),
                "resumed_at": resumed_at, "nimg": t2.cur_nimg}, f"{out}/rank{rank}.pt")
    t2.close()
""")


def test_two_process_ranks_hold_identical_weights(data32, tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(_RANK_SCRIPT)
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29500 + (os.getpid() + 7) % 1000), str(script), str(data32), str(run), str(tmp_path)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (tmp_path / "ddp-absent-on-this-machine").exists()
    ranks = [torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in (0, 1)]
    assert ranks[0]["resumed_at"] == ranks[1]["resumed_at"] == 4 and ranks[0]["nimg"] == 8
    for key in ("G", "D", "G_ema"):
        for name, v in ranks[0][key].items():
            assert torch.equal(v, ranks[1][key][name]), f"{key}.{name} differs between ranks"
    # Each rank saw different images, so identical weights need the gradient all-reduce; and they moved.
    first = load_checkpoint(run / "network-snapshot-000000004.ckpt")
    assert any(not torch.equal(v, first["G"][n]) for n, v in ranks[0]["G"].items())
    snaps = [e for e in RunReader(run).metrics() if e["event"] == "snapshot"]
    assert [e["nimg"] for e in snaps] == [4, 8] and all(e["swd"] > 0 for e in snaps)


def test_a_32px_dataset_trains_without_superresolution(data32, tmp_path):
    opts = preset("tiny", batch=2, kimg=0.002, **QUIET)
    trainer = Trainer(data32, tmp_path / "run", opts, CPU)
    last = trainer.run()
    trainer.close()
    G = load_generator(last)
    assert G.rendering_kwargs["superresolution_module"].endswith(SR_NONE)
    out = G(torch.randn(1, 512), torch.from_numpy(trainer.ds.labels[:1]))
    assert out["image"].shape == (1, 3, 32, 32) and torch.isfinite(out["image"]).all()


def test_an_impossible_superresolution_fails_before_the_run_dir_exists(data32, tmp_path, capsys):
    run = tmp_path / "never"
    code = main.main(["train", "--data", str(data32), "--out", str(run), "--sr-module", "SuperresolutionHybrid2X",
                      "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--sr-module" in err and "32x32" in err
    assert not run.exists()


def test_r1_is_taken_on_the_blurred_image_d_saw(data32, tmp_path):
    opts = preset("tiny", batch=2, mbstd_group=2, kimg=1, **QUIET)
    trainer = Trainer(data32, tmp_path / "run", opts, CPU)
    real, real_c, gen_z, gen_c = trainer._batch()
    sched = schedule(opts, 0)
    assert sched.blur_sigma > 3
    trainer.D.requires_grad_(True)
    stats = trainer.loss.accumulate("Dreg", real, real_c, gen_z[0], gen_c[0], 1, 0)

    def r1(leaf: torch.Tensor, seen) -> float:
        leaf = leaf.detach().requires_grad_(True)
        raw = blur(filtered_resize(real, sched.nrr), sched.blur_sigma).detach().requires_grad_(True)
        logits = trainer.D({"image": seen(leaf), "image_raw": raw}, real_c)
        gi, gr = torch.autograd.grad(logits.sum(), [leaf, raw])
        return float((gi.square().sum([1, 2, 3]) + gr.square().sum([1, 2, 3])).mean())

    on_blurred = r1(blur(real, sched.blur_sigma), lambda x: x)
    on_unblurred = r1(real, lambda x: blur(x, sched.blur_sigma))  # through the blur, w.r.t. the raw input
    trainer.close()
    assert stats["reg_r1"] == pytest.approx(on_blurred, rel=1e-4)
    assert abs(on_blurred - on_unblurred) > 0.05 * on_blurred


def test_parameters_a_phase_does_not_use_are_not_stepped(data128, tmp_path):
    opts = preset("tiny", batch=2, kimg=1, **QUIET)
    trainer = Trainer(data128, tmp_path / "run", opts, CPU)
    real, real_c, gen_z, gen_c = trainer._batch()
    g_opt = trainer.phases[_phase(trainer, "Gmain")].opt
    for name in ("Gmain", "Greg"):
        i = _phase(trainer, name)
        if name == "Greg":
            before = {n: (p.clone(), {k: v.clone() for k, v in g_opt.state[p].items()})
                      for n, p in trainer.G.named_parameters()}
        trainer.run_phase(i, real, real_c, gen_z[i], gen_c[i])
        trainer.phases[i].opt.step()
    trainer.close()
    sr = [n for n in before if n.startswith("superresolution.")]
    used = [n for n in before if n.startswith("decoder.")]
    assert sr and used
    params = dict(trainer.G.named_parameters())
    for n in sr:  # density regularisation never reaches the superresolution: weights and Adam state untouched
        assert torch.equal(params[n], before[n][0]), n
        for k, v in g_opt.state[params[n]].items():
            assert torch.equal(v, before[n][1][k]), f"{n} {k}"
    for n in used:
        assert g_opt.state[params[n]]["step"] == before[n][1]["step"] + 1


def test_resume_falls_back_past_a_truncated_newest_snapshot(data32, tmp_path, capsys):
    run = tmp_path / "run"
    trainer = Trainer(data32, run, preset("tiny", batch=2, kimg=0.004, **QUIET), CPU)
    trainer.run()
    trainer.close()
    snaps = list_snapshots(run)
    assert [s.name for s in snaps] == ["network-snapshot-000000002.ckpt", "network-snapshot-000000004.ckpt"]
    snaps[-1].write_bytes(snaps[-1].read_bytes()[:5000])
    capsys.readouterr()
    code = main.main(["train", "--resume", str(run), "--kimg", "0.006", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "network-snapshot-000000004.ckpt" in warning[0]
    assert "resuming from network-snapshot-000000002.ckpt" in warning[0]
    assert load_checkpoint(list_snapshots(run)[-1])["training"]["cur_nimg"] == 6


def test_the_same_command_resumes_and_only_real_changes_are_refused(data32, tmp_path, capsys):
    """A cluster restarts a job with its command plus --resume: equal options are accepted, a changed one is
    refused naming the run's value and the command's (issue 30)."""
    run = tmp_path / "run"
    command = ["train", "--data", str(data32), "--out", str(run), "--config", "tiny", "--batch", "2", "--gamma",
               "0.3", "--snap", "0.002", "--tick", "0.002", "--swd-images", "0", "--grid", "1x1", "--device", "cpu"]
    assert main.main([*command, "--kimg", "0.002", "--resume", str(run)]) == 0  # the first start says it too
    assert "holds no run yet: starting it" in capsys.readouterr().err
    assert main.main([*command, "--kimg", "0.004", "--resume", str(run)]) == 0
    assert load_checkpoint(list_snapshots(run)[-1])["training"]["cur_nimg"] == 4
    capsys.readouterr()
    changed = [*command, "--kimg", "0.006", "--resume", str(run)]
    changed[changed.index("--batch") + 1] = "4"
    assert main.main(changed) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --batch cannot change when resuming: run has 2, command says 4 (a run keeps its recipe; "
                   "only --kimg, --snap, --tick, --swd-images, --grid, --inception and --fid-images can change)")
    assert main.main([*command, "--kimg", "0.006", "--resume", str(run), "--config", "ffhq"]) == 2
    assert "--config cannot change when resuming: run has tiny, command says ffhq" in capsys.readouterr().err
    assert load_checkpoint(list_snapshots(run)[-1])["training"]["cur_nimg"] == 4


def test_snapshot_grids_are_sized_to_the_device():
    """The original's 15x8 grid of 512^2 images on a GPU; a CPU gets at most 2^20 pixels unless --grid chose."""
    ffhq = preset("ffhq")
    assert ffhq.snapshot_grid(512, "cuda") == ((15, 8), False)
    assert ffhq.snapshot_grid(512, "cpu") == ((2, 2), True)
    assert ffhq.snapshot_grid(128, "cpu") == ((8, 8), True)
    assert preset("tiny").snapshot_grid(128, "cpu") == ((8, 4), False)
    assert preset("ffhq", grid_size=(15, 8), grid_fixed=True).snapshot_grid(512, "cpu") == ((15, 8), False)


def test_ada_augments_both_images_alike_and_adapts_p():
    g = torch.Generator().manual_seed(0)
    image = torch.nn.functional.interpolate(torch.rand(8, 3, 8, 8, generator=g), size=64, mode="bilinear") * 2 - 1
    raw = filtered_resize(image, 32)
    torch.manual_seed(0)
    torch.testing.assert_close(AugmentPipe(0.0)({"image": image, "image_raw": raw})["image"], image,
                               atol=1e-5, rtol=0)
    out = AugmentPipe(1.0)({"image": image, "image_raw": raw})
    assert out["image"].shape == image.shape and out["image_raw"].shape == raw.shape
    assert (out["image"] - image).abs().mean() > 0.1
    # The same draw for both: the augmented raw matches the augmented image, downsampled.
    err_same = (filtered_resize(out["image"], 32) - out["image_raw"]).abs().mean()
    err_other = (filtered_resize(out["image"], 32) - out["image_raw"].roll(1, 0)).abs().mean()
    assert err_same < 0.3 * err_other
    assert adjust_p(0.5, 0.9, 0.6, 1000, 100) == pytest.approx(0.51)
    assert adjust_p(0.5, 0.1, 0.6, 1000, 100) == pytest.approx(0.49)
    assert adjust_p(0.0, 0.1, 0.6, 1000, 100) == 0.0


@pytest.mark.parametrize("args", [["--batch", "0"], ["--batch", "100000"], ["--kimg", "inf"], ["--kimg", "-1"],
                                  ["--snap", "-1"], ["--gamma", "nan"], ["--batch-gpu", "0"],
                                  ["--gpc_reg_prob", "1.5"], ["--gen_pose_cond", "maybe"]])
def test_absurd_train_arguments_exit_2_at_parse_time(args, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main.main(["train", "--data", "x", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err == [err[0]] and err[0].startswith("error: argument " + args[0])
    assert not (tmp_path / "r").exists()


def test_out_of_memory_names_the_setting_to_lower(data32, tmp_path, capsys, monkeypatch):
    def boom(*_a, **_k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("training.loop.train", boom)
    code = main.main(["train", "--data", str(data32), "--out", str(tmp_path / "r"), "--batch", "8",
                      "--batch-gpu", "4", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--batch-gpu" in err and "now 4" in err


def test_ada_raises_p_while_d_is_above_the_target(data32, tmp_path):
    # r_t = E[sign(D(real))] >= -1 always exceeds a target of -1.5:
    # p rises by batch*interval/(ada_kimg*1000) per update.
    opts = preset("tiny", batch=2, kimg=0.004, aug="ada", ada_target=-1.5, ada_interval=1, ada_kimg=0.1, **QUIET)
    trainer = Trainer(data32, tmp_path / "run", opts, CPU)
    trainer.run()
    trainer.close()
    assert trainer.augment.p == pytest.approx(0.04)
    ticks = [e for e in RunReader(tmp_path / "run").metrics() if e["event"] == "tick"]
    assert [round(e["augment_p"], 6) for e in ticks] == [0.02, 0.04]
    assert load_checkpoint(list_snapshots(tmp_path / "run")[-1])["training"]["augment_p"] == pytest.approx(0.04)
