"""`main.py mesh | video | render` end to end on the fixture's original-format pickle."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_mesh_command(snapshot_pkl, tmp_path):
    import trimesh
    r = _main("mesh", snapshot_pkl, "--seeds", "0", "--res", "48", "--format", "ply", "--volume", "npy",
              "--out", tmp_path / "m", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    mesh = trimesh.load(tmp_path / "m" / "seed0000.ply", force="mesh", process=False)
    assert 100 < len(mesh.vertices) < 48 ** 3 // 4
    assert np.asarray(mesh.visual.vertex_colors)[:, :3].std(axis=0).max() > 2
    volume = np.load(tmp_path / "m" / "seed0000.npy")
    assert volume.shape == (48, 48, 48) and volume.max() > 10
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["seed0000.npy", "seed0000.ply"]


def test_render_command_views_differ(snapshot_pkl, tmp_path):
    from PIL import Image
    r = _main("render", snapshot_pkl, "--seeds", "1", "--views", "2", "--yaw-range", "25", "--res", "32",
              "--mode", "image_raw,image_depth", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    left = np.asarray(Image.open(tmp_path / "seed0001_yaw-25_pitch+0_image_raw.png"), dtype=int)
    right = np.asarray(Image.open(tmp_path / "seed0001_yaw+25_pitch+0_image_raw.png"), dtype=int)
    assert left.shape == (32, 32, 3) and np.abs(left - right).mean() > 2
    sheet = np.asarray(Image.open(tmp_path / "grid_image_depth.png"))
    assert sheet.shape[1] > 2 * 32 and sheet.shape[0] > 32  # two views side by side, with captions
    assert len(list(tmp_path.glob("*.png"))) == 6 and not list(tmp_path.glob(".*"))


def test_video_command(snapshot_pkl, tmp_path):
    import imageio_ffmpeg
    out = tmp_path / "clip.mp4"
    r = _main("video", snapshot_pkl, "--seeds", "0", "--frames", "2", "--mode", "image_raw", "--res", "32",
              "--path", "360", "--out", out)
    assert r.returncode == 0, r.stderr
    reader = imageio_ffmpeg.read_frames(str(out))
    assert next(reader)["size"] == (32, 32) and len(list(reader)) == 2
    assert np.load(tmp_path / "clip.cameras.npy").shape == (2, 25)


@pytest.mark.parametrize("command,args,needle", [
    ("mesh", ["--seeds", "0-x", "--out", "{tmp}"], "seed"),
    ("render", ["--seeds", "0", "--out", "/proc/no/such/dir"], "/proc/no/such/dir"),
    ("render", ["--seeds", "0", "--mode", "normals", "--out", "{tmp}"], "normals"),
    ("video", ["--seeds", "0", "--out", "{tmp}/clip.avi"], ".mp4"),
    ("video", ["--seeds", "0", "--grid", "2by2", "--out", "{tmp}/clip.mp4"], "grid"),
])
def test_bad_input_is_one_line_and_exit_2(snapshot_pkl, tmp_path, command, args, needle):
    r = _main(command, snapshot_pkl, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert needle in _one_error_line(r)
    assert not list(tmp_path.iterdir())


def test_missing_network_is_one_line(tmp_path):
    _one_error_line(_main("mesh", tmp_path / "nope.pkl", "--seeds", "0", "--out", tmp_path / "m"))


@pytest.mark.parametrize("command", ["mesh", "video", "render"])
def test_help_has_examples(command):
    r = _main(command, "--help")
    assert r.returncode == 0 and "examples:" in r.stdout and f"python main.py {command}" in r.stdout
