"""The camera estimate in a child process (core.compute_process): the same answer and progress as in this
process, one line for a child's error, only our functions, Cancel kills it at once, and it does not outlive
a killed parent."""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "boxcyl_model.ckpt"
CHILD = "training.camera_estimate:_estimate_child"


@pytest.fixture(scope="module")
def job():
    """The estimate's arguments for seed 3 at yaw +25 (the studio's meaning) and a quick search."""
    from core.cameras import frontal_label
    from core.checkpoint import load_generator
    from core.generator_build import constructor_kwargs
    from core.images import seed_ws
    from training.camera_estimate import CameraSearch
    from training.inversion import mean_w
    G = load_generator(MODEL, "cpu")
    with torch.no_grad():
        target = G.synthesis(seed_ws(G, 3), frontal_label(G.options, None, yaw=math.radians(25)))["image"]
    fov = G.options.avg_camera_fov
    w_avg, _ = mean_w(G, frontal_label(G.options, fov, "cpu"), 500, torch.Generator().manual_seed(0))
    search = CameraSearch(yaws=12, elevations=(0.0, 20.0), latents=4, candidates=2, spacings=(6.0,), fine_steps=10,
                          line_offsets=(-10.0, 10.0), line_steps=10)
    args = {"kwargs": constructor_kwargs(G), "weights": G.state_dict(),
            "neural_rendering_resolution": int(G.neural_rendering_resolution), "target": target.clamp(-1, 1),
            "w_avg": w_avg, "fov": float(fov), "search": dataclasses.asdict(search), "seed": 0}
    return G, search, args


def test_the_child_estimates_what_this_process_does(job):
    from core.compute_process import running
    from training.camera_estimate import estimate_camera, estimate_camera_in_child
    G, search, args = job
    ticks: list[tuple] = []
    got = estimate_camera_in_child(G, args["target"], args["w_avg"], args["fov"], search, 0,
                                   lambda *t: ticks.append(t), threads=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here: list[tuple] = []
        want = estimate_camera(G, args["target"], args["w_avg"], args["fov"], search, 0, lambda *t: here.append(t))
    finally:
        torch.set_num_threads(threads)
    assert got == want, (got, want)
    assert ticks == here, "the child's progress differs"
    assert ticks[-1][0] == "camera elevation" and running() == 0


def test_a_failing_child_is_one_line_and_only_our_functions_run(job):
    from core.compute_process import run_in_child
    from core.errors import StudioError
    _, _, args = job
    broken = {**args, "weights": {k: v for k, v in args["weights"].items() if "decoder" not in k}}
    with pytest.raises(StudioError) as e:
        run_in_child("camera estimate", CHILD, broken)
    assert str(e.value).startswith("camera estimate: ") and "missing" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="not a function of our packages"):
        run_in_child("shell", "os:system", {"command": "true"})


def test_cancel_kills_the_child_at_once(job):
    import threading

    from core.compute_process import run_in_child, running
    from core.progress import Cancelled, Progress
    _, _, args = job
    slow = {**args, "search": {**args["search"], "fine_steps": 100_000}}   # hours
    progress, outcome = Progress(), {}

    def run() -> None:
        try:
            run_in_child("camera estimate", CHILD, slow, progress,
                         lambda t: outcome.setdefault("ticked", time.monotonic()))
        except Cancelled:
            outcome["cancelled"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    start = time.monotonic()
    while "ticked" not in outcome:          # the grid is scored: the child computes
        assert time.monotonic() - start < 120 and thread.is_alive(), outcome
        time.sleep(0.05)
    asked = time.monotonic()
    progress.cancel()
    thread.join(10)
    assert "cancelled" in outcome and outcome["cancelled"] - asked < 2, outcome
    assert running() == 0


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the child through /proc (Linux)")
def test_the_child_exits_when_its_parent_is_killed(job, tmp_path):
    _, _, args = job
    torch.save({**args, "search": {**args["search"], "fine_steps": 100_000}}, tmp_path / "args.pt")
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import torch
        from core.compute_process import run_in_child
        args = torch.load({str(tmp_path / 'args.pt')!r}, weights_only=True)
        run_in_child("camera estimate", {CHILD!r}, args, None, lambda t: print("ticked", flush=True))
        """)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ticked"
        children = [int(p) for task in Path(f"/proc/{parent.pid}/task").iterdir()
                    for p in (task / "children").read_text().split()]
        assert len(children) == 1, children
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{children[0]}").exists() and b"Z" not in _state(children[0]):
            assert time.monotonic() < deadline, "the child computes on without its parent"
            time.sleep(0.1)
    finally:
        parent.kill()
        parent.wait()


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return b"Z"
