"""`main.py mesh | video | render` end to end on the fixture's original-format pickle."""
from __future__ import annotations

import re
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


def _top_level_boxes(path: Path) -> list[str]:
    data, i, names = path.read_bytes(), 0, []
    while i + 8 <= len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        names.append(data[i + 4:i + 8].decode("latin-1"))
        i += size if size else len(data)
    return names


def _ffmpeg(*args: str) -> subprocess.CompletedProcess:
    import imageio_ffmpeg
    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", *args], capture_output=True,
                          timeout=60)


def test_video_command(snapshot_pkl, tmp_path):
    import imageio_ffmpeg
    out = tmp_path / "clip.mp4"
    r = _main("video", snapshot_pkl, "--seeds", "0", "--frames", "2", "--mode", "image_raw", "--res", "33",
              "--path", "360", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "33x33 is odd" in r.stderr and "34x34" in r.stderr  # the rounding is said, not silent
    reader = imageio_ffmpeg.read_frames(str(out))
    assert next(reader)["size"] == (34, 34) and len(list(reader)) == 2
    assert np.load(tmp_path / "clip.cameras.npy").shape == (2, 25)
    boxes = _top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart: the index first
    probe = _ffmpeg("-i", str(out)).stderr.decode()
    assert "yuv420p(tv, bt709, progressive)" in probe, probe


def test_mp4_colours_are_converted_with_the_bt709_matrix(tmp_path):
    """Pure red has luma 16 + 219 * 0.2126 = 63 in BT.709 tv range (BT.601 would give 82)."""
    from core.imaging import Mp4Writer
    frame = np.zeros((16, 16, 3), np.uint8)
    frame[..., 0] = 255
    writer = Mp4Writer(tmp_path / "red.mp4", fps=5)
    for _ in range(2):
        writer.append(frame)
    writer.close()
    raw = _ffmpeg("-v", "error", "-i", str(tmp_path / "red.mp4"), "-f", "rawvideo", "-pix_fmt", "yuv420p",
                  "-").stdout
    luma = np.frombuffer(raw[:256], np.uint8)
    assert np.abs(luma.astype(int) - 63).max() <= 1, luma[:8]


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


@pytest.mark.parametrize("command", ["mesh", "video", "render", "export", "info"])
def test_help_has_examples(command):
    r = _main(command, "--help")
    assert r.returncode == 0 and "examples:" in r.stdout and f"python main.py {command}" in r.stdout


ORIGINAL_STYLE_LOAD = """
import json, sys, torch
from core.triplane import TriPlaneGenerator
out = sys.argv[1]
kw = json.load(open(out + "/init_kwargs.json"))
G = TriPlaneGenerator(**kw["init_kwargs"]).eval()
G.load_state_dict(torch.load(out + "/G_ema.pt", weights_only=True), strict=True)
G.neural_rendering_resolution = kw["neural_rendering_resolution"]
case = torch.load(sys.argv[2], weights_only=True)["per_seed"][0]
with torch.no_grad():
    o = G(case["z"], case["c"], truncation_psi=float(case["truncation_psi"]),
          truncation_cutoff=int(case["truncation_cutoff"]), noise_mode="const")
print(json.dumps({k: (o[k] - case["forward_" + k]).abs().max().item() for k in ("image", "image_raw")}))
"""


def test_export_to_the_original_layout_loads_strictly_and_matches_ground_truth(snapshot_pkl, fixture_dir,
                                                                               tmp_path):
    import json
    out = tmp_path / "orig"
    r = _main("export", snapshot_pkl, "--out", out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["G_ema.pt", "init_kwargs.json"]
    meta = json.loads((out / "init_kwargs.json").read_text())
    assert meta["neural_rendering_resolution"] == 64
    assert meta["init_kwargs"]["rendering_kwargs"]["superresolution_module"].endswith("Hybrid4X")
    assert meta["init_kwargs"]["channel_base"] == 4096 and "plane_resolution" not in meta["init_kwargs"]
    # The original's recipe, in a fresh interpreter that never imports our loaders.
    check = subprocess.run([sys.executable, "-c", ORIGINAL_STYLE_LOAD, str(out), str(fixture_dir / "cases.pt")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    errors = json.loads(check.stdout)
    assert max(errors.values()) <= 1e-4, errors
    # Our own loader opens the directory too.
    r = _main("info", out, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["format"].startswith("original G_ema.pt") and info["original_can_load"] is True
    assert info["constructor_kwargs"]["mapping_kwargs"] == {"num_layers": 2}
    assert info["constructor_kwargs"]["sr_num_fp16_res"] == 4 and info["project_extensions"] == {}


def test_export_refuses_project_extensions_unless_asked(tmp_path):
    from core.checkpoint import load_generator
    model = ROOT / "assets" / "default_model.ckpt"
    line = _one_error_line(_main("export", model, "--out", tmp_path / "x"))
    assert "cannot load this model" in line and "plane_resolution" in line and "sr_widths" in line
    assert not (tmp_path / "x").exists()
    r = _main("export", model, "--out", tmp_path / "x", "--allow-extensions")
    assert r.returncode == 0 and "the original cannot build it" in r.stderr, r.stderr
    a, b = load_generator(model).state_dict(), load_generator(tmp_path / "x").state_dict()
    assert a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a)


def torch_equal(x, y) -> bool:
    return x.shape == y.shape and bool((x == y).all())


def test_info_prints_constructor_kwargs_and_flags_extensions():
    r = _main("info", ROOT / "assets" / "default_model.ckpt")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "constructor_kwargs:" in text and "channel_base" in text and "sr_kwargs" in text
    assert "project_extensions:" in text and "plane_resolution" in text and re.search(r"original_can_load +False", text)


class _Pwn:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /tmp/triplane_export_pwned",))


@pytest.mark.parametrize("weights,kwargs,needle", [
    (None, "{not json", "init_kwargs.json"),
    (None, '{"init_kwargs": 3}', "init_kwargs"),
    (b"garbage", '{"init_kwargs": {}}', "G_ema.pt"),
    ("pwn", '{"init_kwargs": {}}', "G_ema.pt"),
    ({"w": [1, 2]}, '{"init_kwargs": {}}', "dict of tensors"),
])
def test_hostile_or_broken_export_dir_is_one_line(tmp_path, weights, kwargs, needle):
    import pickle

    import torch
    d = tmp_path / "exp"
    d.mkdir()
    (d / "init_kwargs.json").write_text(kwargs)
    if weights is None:
        torch.save({"x": torch.zeros(1)}, d / "G_ema.pt")
    elif weights == "pwn":
        (d / "G_ema.pt").write_bytes(pickle.dumps(_Pwn()))
    elif isinstance(weights, bytes):
        (d / "G_ema.pt").write_bytes(weights)
    else:
        torch.save(weights, d / "G_ema.pt")
    from core.checkpoint import load_generator
    from core.errors import CheckpointError
    with pytest.raises(CheckpointError) as e:
        load_generator(d)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not Path("/tmp/triplane_export_pwned").exists()
    if weights == "pwn":  # end to end once: the command prints that one line and exits 2
        assert needle in _one_error_line(_main("info", d))
