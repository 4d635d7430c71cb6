"""Videos: camera paths, cyclic interpolation, MP4 frame count/size read back, cancel leaves nothing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core import video as V
from core.cameras import video_orbit
from core.progress import Cancelled, Progress


def _read_frames(path) -> tuple[tuple[int, int], list[np.ndarray]]:
    import imageio_ffmpeg
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]
    return (w, h), frames


def test_cyclic_cubic_passes_through_keys_and_loops():
    keys = torch.tensor([[0.0, 1.0], [2.0, -1.0], [5.0, 0.5], [1.0, 3.0]])
    for k in range(4):
        torch.testing.assert_close(V.cyclic_cubic(keys, k / 4), keys[k])
    torch.testing.assert_close(V.cyclic_cubic(keys, 1.0), keys[0])
    a, b = V.cyclic_cubic(keys, 0.999), V.cyclic_cubic(keys, 0.0)
    assert (a - b).abs().max() < 0.05  # continuous across the wrap
    mid = V.cyclic_cubic(keys, 0.125)
    assert not torch.allclose(mid, (keys[0] + keys[1]) / 2)  # cubic, not linear
    torch.testing.assert_close(V.cyclic_cubic(keys[:1], 0.3), keys[0])


def test_camera_paths(small_G):
    opts = small_G.options
    orbit = V.camera_path("orbit", 8, opts)
    assert orbit.shape == (8, 25)
    expected = video_orbit(3, 8, radius=opts.avg_camera_radius, pivot=tuple(opts.avg_camera_pivot))
    torch.testing.assert_close(orbit[3, :16].view(4, 4), expected[0])
    turn = V.camera_path("360", 4, opts)
    origins = turn[:, :16].view(4, 4, 4)[:, :3, 3] - torch.tensor(opts.avg_camera_pivot)
    yaws = [math.degrees(math.atan2(o[0], o[2])) for o in origins]
    np.testing.assert_allclose(np.diff(np.unwrap(np.radians(yaws))), math.pi / 2, atol=1e-4)  # quarter turns
    with pytest.raises(ValueError, match="path"):
        V.camera_path("spiral", 4, opts)


def test_orbit_grid_video(small_G, tmp_path):
    out = tmp_path / "orbit.mp4"
    opts = V.VideoOptions(frames=3, fps=10, mode="image_raw", neural_resolution=32)
    video, cams = V.render_video(small_G, [0, 1, 2], out, opts)
    size, frames = _read_frames(video)
    nrr = 32
    assert size == (2 * nrr, 2 * nrr) and len(frames) == 3  # 3 seeds -> 2x2 grid, one cell empty
    assert frames[0][nrr:, nrr:].max() < 20  # the empty cell is black
    assert np.abs(frames[0].astype(int) - frames[1]).mean() > 1  # the camera moves
    labels = np.load(cams)
    assert labels.shape == (3, 25)
    np.testing.assert_allclose(labels, V.camera_path("orbit", 3, small_G.options).numpy(), atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orbit.cameras.npy", "orbit.mp4"]
    assert small_G.neural_rendering_resolution == 64  # the override did not stick to the model


def test_interpolation_video(small_G, tmp_path):
    opts = V.VideoOptions(path="interp", frames=4, mode="image_depth", grid=(2, 1), neural_resolution=32)
    video, _ = V.render_video(small_G, [0, 1, 2, 3], tmp_path / "interp.mp4", opts)
    size, frames = _read_frames(video)
    nrr = 32
    assert size == (2 * nrr, nrr) and len(frames) == 4
    assert np.abs(frames[0].astype(int) - frames[2]).mean() > 1
    with pytest.raises(ValueError, match="multiple"):
        V.render_video(small_G, [0, 1, 2], tmp_path / "bad.mp4", opts)


def test_cancel_leaves_no_files(small_G, tmp_path):
    class CancelAtSecondFrame(Progress):
        def update(self, done, total, message=""):
            if done >= 2:
                self.cancel()
            super().update(done, total, message)

    with pytest.raises(Cancelled):
        V.render_video(small_G, [0], tmp_path / "x.mp4",
                       V.VideoOptions(frames=5, mode="image_raw", neural_resolution=32),
                       progress=CancelAtSecondFrame())
    assert list(tmp_path.iterdir()) == []


def test_bad_video_arguments(small_G, tmp_path):
    with pytest.raises(ValueError, match="mp4"):
        V.render_video(small_G, [0], tmp_path / "x.avi")
    with pytest.raises(ValueError, match="grid"):
        V.parse_grid("2by2")
    assert V.parse_grid("3x2") == (3, 2)
    with pytest.raises(ValueError, match="fit"):
        V.render_video(small_G, [0, 1, 2], tmp_path / "x.mp4", V.VideoOptions(grid=(1, 1), frames=1))


def _path_file(tmp_path):
    """An asymmetric keyframed path (off-centre, tilted, FOV change): a flip or mirror cannot match."""
    from core.camera_path import CameraPath, Keyframe
    path = CameraPath([Keyframe((0.9, 0.5, 2.4), (0.05, 0.0, 0.2), 18.837),
                       Keyframe((-0.6, 0.2, 2.6), (0.0, 0.08, 0.2), 24.0),
                       Keyframe((-1.4, -0.3, 2.0), (0.0, 0.0, 0.15), 20.0)])
    return path, path.save(tmp_path / "path.json")


def _assert_frames_match(decoded, expected):
    """Within H.264 error of the directly rendered frames, and far from their vertical/horizontal flips."""
    for got, want in zip(decoded, expected):
        got, want = got.astype(int), want.astype(int)
        err = np.abs(got - want).mean()
        assert err < 4, err
        assert np.abs(got - want[::-1]).mean() > 3 * err + 4 and np.abs(got - want[:, ::-1]).mean() > 3 * err + 4


def test_video_command_follows_a_camera_path_file(small_G, snapshot_pkl, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from core.images import render_modes, seed_ws
    path, file = _path_file(tmp_path)
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "main.py", "video", str(snapshot_pkl), "--seeds", "0", "--path", str(file),
                        "--frames", "4", "--res", "32", "--mode", "image_raw", "--out", str(tmp_path / "p.mp4"),
                        "--device", "cpu"], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    size, frames = _read_frames(tmp_path / "p.mp4")
    labels = path.labels(4)
    np.testing.assert_array_equal(np.load(tmp_path / "p.cameras.npy"), labels.numpy())
    assert size == (32, 32) and len(frames) == 4
    ws = seed_ws(small_G, 0, 0.7)
    planes = small_G.planes(ws)
    expected = [render_modes(small_G, planes, ws, labels[f:f + 1], ["image_raw"], 32)[0]["image_raw"]
                for f in range(4)]
    _assert_frames_match(frames, expected)
    assert np.abs(expected[0].astype(int) - expected[3]).mean() > 5  # the camera moved



def test_video_command_rejects_bad_path_files(tmp_path, capsys):
    import argparse

    from cli import video as command
    from cli.common import run_guarded
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "keyframes": []}')
    _, good = _path_file(tmp_path)
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    for source, extra, message in ((bad, [], "no keyframes"), (good, ["--fov", "30"], "--fov"),
                                   (tmp_path / "none.json", [], "No such file")):
        args = parser.parse_args(["model.pkl", "--seeds", "0", "--path", str(source), "--out",
                                  str(tmp_path / "x.mp4"), *extra])
        assert run_guarded(command.run, args) == 2  # before the model is loaded
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    with pytest.raises(SystemExit):
        parser.parse_args(["model.pkl", "--seeds", "0", "--path", "spiral", "--out", "x.mp4"])
    assert "camera path .json file" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_engine_video_renders_the_on_screen_latent(small_G, tmp_path):
    """The studio's export: an edited latent (mixing, interpolation, W direction, conditioning pose) and
    explicit labels, super-resolved, equal to rendering that latent's ws from the same cameras."""
    from core.engine import Latent, RenderEngine, RenderRequest
    from core.images import render_modes
    path, _ = _path_file(tmp_path)
    engine = RenderEngine(small_G, device="cpu")
    latent = Latent(seed=2, psi=0.6, mix_seed=5, mix_layers=(8, 9, 10), interp_seed=7, interp_t=0.4,
                    directions=((0, 1.5),), cond_yaw=0.2)
    request = RenderRequest(latent=latent, resolution=32, noise_mode="random", noise_seed=3)
    labels = path.labels(2)
    video, cams = V.render_engine_video(engine, request, labels, tmp_path / "studio.mp4",
                                        V.VideoOptions(fps=12, mode="image"))
    size, frames = _read_frames(video)
    assert len(frames) == 2 and size == (small_G.img_resolution,) * 2
    np.testing.assert_array_equal(np.load(cams), labels.numpy())
    ws = engine.ws(latent)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        planes = small_G.planes(ws, noise_mode="random")
    expected = [render_modes(small_G, planes, ws, labels[f:f + 1], ["image"], 32)[0]["image"] for f in range(2)]
    _assert_frames_match(frames, expected)
    plain = render_modes(small_G, small_G.planes(engine.ws(Latent(seed=2))), engine.ws(Latent(seed=2)),
                         labels[:1], ["image"], 32)[0]["image"]
    assert np.abs(plain.astype(int) - expected[0]).mean() > 3  # the edits are visible
    with pytest.raises(ValueError, match="frames, 25"):
        V.render_engine_video(engine, request, labels[0], tmp_path / "bad.mp4")
