"""What the studio shows is what `render` writes: the viewport's pixels, read back from the window's
back buffer, against `python main.py render` PNGs for the same seed, camera and mode. The camera is
asymmetric (yaw 30, pitch 10), so a flipped or mirrored viewport fails."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from studio_helpers import assert_same_picture, load

ROOT = Path(__file__).resolve().parents[1]
STATE = ["--seed", "3", "--yaw", "30", "--pitch", "10", "--psi", "0.7"]
RENDER_NAME = "seed0003_yaw+30_pitch+10_{}.png"


@pytest.fixture(scope="module")
def render_pngs(snapshot_pkl, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("render")
    r = subprocess.run([sys.executable, "main.py", "render", str(snapshot_pkl), "--seeds", "3", "--yaw", "30",
                        "--pitch", "10", "--psi", "0.7", "--mode", "image", "--no-grid",
                        "--device", "cpu", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr
    return out


def test_viewport_shows_what_render_writes(display, snapshot_pkl, render_pngs, tmp_path, mode="image"):
    """`main.py CHECKPOINT --seed --yaw --pitch --psi --mode --viewport` on the original-format pickle
    (raw and depth views: tests/test_studio_input.py, in process)."""
    shown = tmp_path / "viewport.png"
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    r = subprocess.run([sys.executable, "main.py", str(snapshot_pkl), *STATE, "--mode", mode, "--viewport",
                        str(shown), "--frames", "3", "--device", "cpu"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert_same_picture(load(shown), load(render_pngs / RENDER_NAME.format(mode)), f"viewport ({mode})")


def test_bad_start_view_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "main.py", "--yaw", "nan", "--viewport", str(tmp_path / "v.png")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--yaw" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "main.py", "--viewport", str(tmp_path / "v.jpg")], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--viewport" in r.stderr


def test_capture_of_an_unopenable_checkpoint_fails_in_one_line(display, tmp_path):
    out = tmp_path / "v.png"
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    r = subprocess.run([sys.executable, "main.py", str(tmp_path / "missing.pkl"), "--viewport", str(out),
                        "--frames", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and not out.exists()
    assert r.stderr.strip().count("\n") == 0 and "missing.pkl" in r.stderr and "Traceback" not in r.stderr
