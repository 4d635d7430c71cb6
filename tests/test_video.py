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
