"""Pivotal-tuning sweep on held-out toys (issue #28): many tuning settings from one cached W+ pivot.

Each object's W+ pivot (camera given) is computed once and cached; every setting then tunes a fresh copy
of the generator from that pivot and is scored (input-view and novel-view PSNR, as scripts/bench_invert.py's
held-out mode) after the listed numbers of steps, so one run of N steps also reports its shorter runs
(exactly so with a constant rate). A setting is `key=value,...` over InversionOptions' tuning fields
(tune_lr, tune_params, tune_rampdown, tune_reg_every, locality_weight, anchor_weight, density_weight, perceptual_weight)
and `steps` (tuning steps); the defaults are InversionOptions'.

    python -m scripts.bench_pti --objects car02,chair00,tree04,lamp03 --pivot 100 --report 10,30,60 \\
        --setting "steps=60" --setting "steps=60,tune_lr=3e-3"
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

FIELDS = {"tune_lr": float, "tune_params": str, "tune_rampdown": float, "tune_reg_every": int, "locality_weight": float,
          "anchor_weight": float, "symmetry_weight": float, "density_weight": float, "perceptual_weight": float,
          "steps": int}


def parse_setting(text: str) -> dict:
    """'steps=60,tune_lr=3e-3' -> {'steps': 60, 'tune_lr': 0.003}; unknown keys raise ValueError."""
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in FIELDS:
            raise ValueError(f"unknown setting {key!r} (one of {', '.join(FIELDS)})")
        out[key] = FIELDS[key](value)
    return out


def pivot(G, target, features, steps: int, seed: int, cache: Path) -> tuple[torch.Tensor, dict, float]:
    """The W+ pivot (ws, noise maps, seconds) of one held-out target, camera given; cached on disk."""
    from training.inversion import InversionOptions, Inverter
    path = cache / f"{target.name}_wplus{steps}_seed{seed}.pt"
    if path.exists():
        saved = torch.load(path)
        return saved["ws"], saved["noise"], saved["seconds"]
    inv = Inverter(G, target.input.tensor(), InversionOptions(steps=steps, space="w+", seed=seed), features)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    res = inv.run(target.input.label)
    seconds = time.perf_counter() - t0
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"ws": res.ws, "noise": res.noise, "seconds": seconds}, path)
    return res.ws, res.noise, seconds


def tune_and_score(inv, ws: torch.Tensor, ctx: tuple, fov: float, report: list[int]) -> list[tuple[int, dict]]:
    """Tune a copy of inv.G around `ws` (camera given: the target's) and score it after each step count in
    `report`: [(steps, row)], a row as scripts/bench_heldout._score's plus per_step (tuning seconds per
    step, scoring excluded)."""
    from scripts.bench_heldout import _score
    from training.inversion import OrbitLabel
    G, _, t, _, (yaw, pitch) = ctx
    scores: list[tuple[int, dict]] = []
    scoring, t0 = [0.0], time.perf_counter()
    last = inv.opts.tune_steps

    def score(done: int, tuned: torch.nn.Module) -> None:
        s0 = time.perf_counter()
        secs = s0 - t0 - scoring[0]
        row = _score(ctx, tuned, ws, yaw, pitch, fov, secs, False)
        row["per_step"] = secs / done
        scores.append((done, row))
        scoring[0] += time.perf_counter() - s0

    def on_step(ws_: torch.Tensor, label: torch.Tensor, tuned: torch.nn.Module) -> None:
        done = 1 + sum(1 for h in inv.history if h[0] == "tune")  # called before the step's tick
        if done in report and done != last:  # the last: what tune() returns (its best weights), below
            score(done, tuned)

    inv.on_best = on_step
    torch.manual_seed(inv.opts.seed)
    cam = OrbitLabel.from_label(t.input.label, G.options.avg_camera_pivot).to(inv.device)
    tuned = copy.deepcopy(inv.G)
    inv.tune(ws, cam, t.input.label.reshape(1, 25).to(inv.device), tuned)
    if last in report:
        score(last, tuned)
    return scores


def main() -> None:
    from core.checkpoint import load_generator
    from scripts.bench_heldout import _score, _studio
    from training.heldout_toys import heldout_toys
    from training.inversion import InversionOptions, Inverter, OrbitLabel
    from training.perceptual import DiscriminatorFeatures, load_discriminator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", default="assets/default_model.ckpt")
    p.add_argument("--objects", default="car02,chair00,tree04,lamp03", help="names, or a count of the first N")
    p.add_argument("--pivot", type=int, default=100, help="W+ projection steps of the pivot")
    p.add_argument("--setting", action="append", default=[], help="key=value,... (repeatable)")
    p.add_argument("--report", default="10,30,60", help="score after these tuning steps")
    p.add_argument("--cache", default="/tmp/pti_pivots")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    settings = [parse_setting(s) for s in args.setting] or [{}]
    report = sorted(int(v) for v in args.report.split(","))
    G = load_generator(args.network, "cpu")
    D = load_discriminator(args.network)
    features = DiscriminatorFeatures(D) if D is not None else None
    if args.objects.isdigit():
        targets = heldout_toys(int(args.objects), G.img_resolution)
    else:  # a name ends in the object's index (car02): render only those
        targets = [heldout_toys(1, G.img_resolution, int(n[-2:]))[0] for n in args.objects.split(",")]
    rows: dict[tuple[str, int], list[dict]] = {}
    for t in targets:
        yaw, pitch = _studio(t.input.label)
        offsets = [(a - yaw, b - pitch) for a, b in (_studio(v.label) for v in t.novel)]
        ctx = (G, features, t, offsets, (yaw, pitch))
        fov = OrbitLabel.from_label(t.input.label, (0, 0, 0)).fov_deg
        ws, noise, pivot_secs = pivot(G, t, features, args.pivot, args.seed, Path(args.cache))
        for s in settings:
            tune = {k: v for k, v in s.items() if k != "steps"}
            steps = s.get("steps", max(report))
            opts = InversionOptions(steps=args.pivot, space="w+", tune_steps=steps, seed=args.seed, **tune)
            name = ",".join(f"{k}={v}" for k, v in s.items()) or "defaults"
            inv = Inverter(G, t.input.tensor(), opts, features)
            for k, v in noise.items():
                inv.noise_bufs[k].copy_(v)
            base = _score(ctx, inv.G, ws, yaw, pitch, fov, pivot_secs, False)
            if s is settings[0]:
                rows.setdefault(("w+ pivot", 0), []).append(base)
                print(f"{t.name:10s} w+ pivot ({args.pivot} steps) input {base['in_psnr']:.2f} "
                      f"novel {base['nv_psnr']:.2f} dB  {pivot_secs:.0f} s", flush=True)
            for steps_done, row in tune_and_score(inv, ws, ctx, fov, report):
                rows.setdefault((name, steps_done), []).append(row)
                print(f"{t.name:10s} {name} @{steps_done}: input {row['in_psnr']:.2f} novel {row['nv_psnr']:.2f} dB "
                      f"(pivot {base['in_psnr']:.2f}/{base['nv_psnr']:.2f})  {row['seconds']:.0f} s, "
                      f"{row['per_step']:.2f} s/step", flush=True)
    print(f"\n{len(targets)} objects ({', '.join(t.name for t in targets)}), W+ pivot of {args.pivot} steps")
    print("| setting | tuning steps | input PSNR (dB) | novel PSNR (dB) | novel − pivot (min over objects) "
          "| input ≥ 30 dB | tuning s/step |")
    print("|---|---|---|---|---|---|---|")
    base = {r["name"]: r for r in rows[("w+ pivot", 0)]}
    for (name, steps), r in rows.items():
        gain = min(x["nv_psnr"] - base[x["name"]]["nv_psnr"] for x in r)
        per = f"{np.mean([x['per_step'] for x in r]):.2f}" if "per_step" in r[0] else "–"
        print(f"| {name} | {steps} | {np.mean([x['in_psnr'] for x in r]):.2f} | "
              f"{np.mean([x['nv_psnr'] for x in r]):.2f} | {gain:+.2f} | "
              f"{sum(x['in_psnr'] >= 30 for x in r)}/{len(r)} | {per} |")


if __name__ == "__main__":
    main()
