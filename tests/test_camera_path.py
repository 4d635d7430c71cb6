"""Keyframed camera paths: exact keyframes, smooth in between, labels in the cameras' convention, JSON
round trip, and one-line errors for every kind of bad file (fuzzed in a subprocess with limits)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from core.camera_path import CameraPath, CameraPathError, Keyframe, orbit_labels
from core.cameras import OrbitCamera
from core.errors import StudioError

KEYS = [  # unevenly spaced, with a FOV change and a look-at change
    Keyframe((0.5, 0.3, 2.6), (0.0, 0.0, 0.2), 18.837),
    Keyframe((-1.0, 0.0, 2.4), (0.0, 0.05, 0.1), 30.0),
    Keyframe((-1.1, 0.1, 2.3), (0.0, 0.05, 0.1), 30.0),
    Keyframe((-2.5, -0.6, 0.5), (0.1, 0.0, 0.2), 12.0),
]


def test_keyframe_from_orbit_reproduces_the_viewer_label_exactly():
    cam = OrbitCamera(yaw=0.7, pitch=-0.4, radius=2.3, pivot=(0.1, -0.05, 0.2), fov_deg=25.0)
    key = Keyframe.from_orbit(cam)
    assert key.look_at == cam.pivot and key.fov_deg == 25.0
    assert torch.equal(key.label(), cam.label())
    back = key.to_orbit()
    assert (back.yaw, back.pitch, back.radius) == pytest.approx((0.7, -0.4, 2.3), abs=1e-6)
    assert back.pivot == cam.pivot and back.fov_deg == cam.fov_deg


def test_label_convention_independently():
    """cam2world: translation = position, +z column towards look_at, +y column pointing down (world +y up)."""
    key = KEYS[3]
    c = key.label()[0]
    m = c[:16].view(4, 4).double()
    torch.testing.assert_close(m[:3, 3], torch.tensor(key.position, dtype=torch.float64), atol=1e-6, rtol=0)
    forward = torch.tensor(key.look_at, dtype=torch.float64) - m[:3, 3]
    torch.testing.assert_close(m[:3, 2], forward / forward.norm(), atol=1e-6, rtol=0)
    assert m[1, 1] < 0 and abs(float(m[1, 0])) < 1e-6  # image down is world down; no roll
    torch.testing.assert_close(m[:3, :3].T @ m[:3, :3], torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
    focal = 1 / (math.tan(12.0 * 3.14159 / 360) * 1.414)  # cameras.fov_to_focal's formula
    assert c[16:].view(3, 3)[0, 0] == pytest.approx(focal, rel=1e-6)


@pytest.mark.parametrize("loop", [False, True])
def test_keyframes_exact_at_their_times(loop):
    path = CameraPath(KEYS, loop=loop)
    times = path.times()
    assert times == ([0, 1 / 3, 2 / 3, 1] if not loop else [0, 0.25, 0.5, 0.75])
    for key, t in zip(KEYS, times):
        assert path.sample(t) == key
        assert torch.equal(path.sample(t).label(), key.label())
    if loop:
        assert path.sample(1.0) == KEYS[0]
    labels = path.labels(7 if not loop else 8)
    assert torch.equal(labels[0], KEYS[0].label()[0])
    if not loop:
        assert torch.equal(labels[-1], KEYS[-1].label()[0]) and torch.equal(labels[2], KEYS[1].label()[0])
    else:
        assert torch.equal(labels[2], KEYS[1].label()[0])  # t = 2/8 = 0.25
    one = CameraPath(KEYS[:1])
    assert all(torch.equal(row, KEYS[0].label()[0]) for row in one.labels(3))


@pytest.mark.parametrize("loop", [False, True])
def test_path_is_smooth(loop):
    path = CameraPath(KEYS, loop=loop)
    n = 2400
    samples = [path.sample(i / n) for i in range(n + 1)]
    pos = np.array([s.position for s in samples])
    look = np.array([s.look_at for s in samples])
    fov = np.array([s.fov_deg for s in samples])
    extent = np.ptp(pos, axis=0).max()
    # continuous: no step is more than a small fraction of the path's extent
    assert np.linalg.norm(np.diff(pos, axis=0), axis=1).max() < 0.01 * extent
    assert np.linalg.norm(np.diff(look, axis=0), axis=1).max() < 0.01
    assert np.abs(np.diff(fov)).max() < 0.1
    # tangent directions agree on both sides of every keyframe (no kinks): chords of length -> 0
    eps = 1e-7
    for t in path.times() if loop else path.times()[1:-1]:
        p = np.array(path.sample(t).position)
        before = p - path.sample(t - eps if t > 0 else 1 - eps).position
        after = path.sample(t + eps).position - p
        cos = before @ after / (np.linalg.norm(before) * np.linalg.norm(after))
        assert cos > 1 - 1e-6, f"kink at t={t}"
        assert np.linalg.norm(after) / np.linalg.norm(before) == pytest.approx(1, abs=1e-3), f"speed jump at t={t}"
    assert not np.allclose(pos[n // 6], (pos[0] + pos[n // 3]) / 2, atol=1e-3)  # curved, not linear
    if loop:
        np.testing.assert_allclose(pos[-1], pos[0])
        assert np.linalg.norm(pos[-2] - pos[-1]) < 0.01 * extent


def test_fov_stays_valid_between_extreme_keyframes():
    keys = [Keyframe((0, 0, 3), (0, 0, 0), f) for f in (1.0, 179.0, 1.0, 179.0)]
    fovs = [CameraPath(keys).sample(i / 300).fov_deg for i in range(301)]
    assert all(0 < f < 180 for f in fovs) and max(fovs) > 170


def test_repeated_keyframe_holds_still_and_turning_stays_near():
    a = Keyframe((0, 0, 3), (0, 0, 0), 20)
    b = Keyframe((0, 0, 3), (1, 0, 0), 20)  # same position, looking elsewhere
    path = CameraPath([a, a, b])
    still = [path.sample(t) for t in np.linspace(0, 0.5, 25)]
    assert all(np.allclose(s.position, a.position, atol=1e-6) and np.allclose(s.look_at, a.look_at, atol=1e-6)
               for s in still)
    turn = [path.sample(t) for t in np.linspace(0.5, 1, 25)]
    looks = [s.look_at[0] for s in turn]
    assert looks == sorted(looks) and looks[-1] == 1.0
    # the camera orbits the moving look-at point (distance 3 -> 3.16), so it drifts only a little
    assert max(np.linalg.norm(np.subtract(s.position, a.position)) for s in turn) < 0.1
    assert all(torch.isfinite(s.label()).all() for s in turn)


def test_camera_keeps_its_distance_around_the_look_at_point():
    """Keyframes on the orbit sphere (as the viewer makes them): every frame stays on it, where a
    straight position spline would cut inside (and EG3D would clip the subject at its ray_start)."""
    pivot = (0.0, 0.0, 0.2)
    keys = [Keyframe.from_orbit(OrbitCamera(yaw=y, pitch=p, radius=2.7, pivot=pivot))
            for y, p in ((0.0, 0.0), (1.2, -0.3), (-1.3, 0.2), (3.0, 0.0))]
    for loop in (False, True):
        path = CameraPath(keys, loop=loop)
        dist = [np.linalg.norm(np.subtract(path.sample(t).position, pivot)) for t in np.linspace(0, 1, 200)]
        np.testing.assert_allclose(dist, 2.7, rtol=1e-6)
    # yaw turns the short way: from 1.2 to -1.3 through the front, from -1.3 to 3.0 through the back
    path = CameraPath(keys)
    mid = path.sample(2.5 / 3).to_orbit()
    assert abs(abs(mid.yaw) - math.pi) < 1.0


def test_json_round_trip(tmp_path):
    path = CameraPath(KEYS, loop=True)
    file = path.save(tmp_path / "path.json")
    data = json.loads(file.read_text())
    assert data["version"] == 1 and data["loop"] is True
    assert data["keyframes"][1] == {"position": [-1.0, 0.0, 2.4], "look_at": [0.0, 0.05, 0.1], "fov": 30.0}
    loaded = CameraPath.load(file)
    assert loaded == path and torch.equal(loaded.labels(7), path.labels(7))
    assert [p.name for p in tmp_path.iterdir()] == ["path.json"]  # no temporary left behind


def _valid() -> dict:
    return CameraPath(KEYS[:2]).to_json()


def _with(change) -> str:
    data = _valid()
    change(data)
    return json.dumps(data)


BAD_FILES = {
    "not JSON": ("{version: 1", "not valid JSON"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\xff", "not a text"),
    "array": ("[1, 2]", "expected a JSON object"),
    "no keyframes": (_with(lambda d: d.update(keyframes=[])), "no keyframes"),
    "keyframes missing": (_with(lambda d: d.pop("keyframes")), "keyframes must be a list"),
    "version": (_with(lambda d: d.update(version=2)), "version must be 1"),
    "loop": (_with(lambda d: d.update(loop="yes")), "loop must be true or false"),
    "unknown top field": (_with(lambda d: d.update(speed=2)), "unknown field 'speed'"),
    "NaN": (_with(lambda d: d["keyframes"][0].update(position=[0, float("nan"), 1])), "NaN is not a valid"),
    "Infinity": (_with(lambda d: d["keyframes"][1].update(fov=float("inf"))), "Infinity is not a valid"),
    "overflow": ('{"version": 1, "keyframes": [{"position": [1e999, 0, 0], "look_at": [0, 0, 0], "fov": 20}]}',
                 "must be finite"),
    "fov 0": (_with(lambda d: d["keyframes"][1].update(fov=0)), "keyframe 1: fov must be in (0, 180)"),
    "fov 180": (_with(lambda d: d["keyframes"][0].update(fov=180)), "fov must be in (0, 180)"),
    "fov string": (_with(lambda d: d["keyframes"][0].update(fov="20")), "fov must be a number"),
    "fov bool": (_with(lambda d: d["keyframes"][0].update(fov=True)), "fov must be a number"),
    "short position": (_with(lambda d: d["keyframes"][0].update(position=[1, 2])), "position must be 3 numbers"),
    "missing look_at": (_with(lambda d: d["keyframes"][1].pop("look_at")), "keyframe 1: missing 'look_at'"),
    "extra key field": (_with(lambda d: d["keyframes"][0].update(roll=1)), "unknown field 'roll'"),
    "keyframe not object": (_with(lambda d: d["keyframes"].append(3)), "keyframe 2: expected an object"),
    "same point": (_with(lambda d: d["keyframes"][1].update(position=[0.0, 0.05, 0.1])), "same point"),
    "vertical": (_with(lambda d: d["keyframes"][0].update(position=[0, 3, 0], look_at=[0, 0, 0])),
                 "straight up or down"),
    "huge integer": ('{"version": 1, "keyframes": [{"position": [' + "9" * 5000 + ', 0, 0]}]}', "not valid JSON"),
    "deep nesting": ("[" * 100000 + "]" * 100000, "nested too deeply"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_files_give_one_line_errors(tmp_path, name):
    content, message = BAD_FILES[name]
    file = tmp_path / "bad.json"
    file.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(StudioError) as info:
        CameraPath.load(file)
    text = str(info.value)
    assert message in text and "\n" not in text and len(text) < 300


def test_unreadable_paths(tmp_path):
    for target, message in ((tmp_path / "missing.json", "No such file"), (tmp_path, "Is a directory")):
        with pytest.raises(StudioError, match=message):
            CameraPath.load(target)
    with pytest.raises(CameraPathError, match="at least one keyframe"):
        CameraPath([])
    with pytest.raises(ValueError, match="path time"):
        CameraPath(KEYS).sample(1.5)
    with pytest.raises(ValueError, match="positive integer"):
        CameraPath(KEYS).labels(0)


def test_fuzzed_files_only_raise_studio_errors(tmp_path):
    """Byte-level mutations of a valid file, loaded in a subprocess with memory and time limits: each
    load either succeeds with finite labels or raises CameraPathError."""
    (tmp_path / "valid.json").write_text(json.dumps(_valid(), indent=1))
    script = textwrap.dedent(f"""
        import random, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        from pathlib import Path
        import torch
        from core.camera_path import CameraPath, CameraPathError
        src = Path({str(tmp_path)!r}) / "valid.json"
        base = src.read_bytes()
        rng = random.Random(0)
        ok = bad = 0
        for i in range(400):
            data = bytearray(base)
            for _ in range(rng.randint(1, 4)):
                op, at = rng.random(), rng.randrange(len(data))
                if op < 0.4:
                    data[at] = rng.choice(b'0123456789-.e,[]{{}}":aNItrufl ')
                elif op < 0.7:
                    del data[at:at + rng.randint(1, 8)]
                else:
                    data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            f = src.with_name("fuzz.json")
            f.write_bytes(bytes(data))
            try:
                labels = CameraPath.load(f).labels(3)
                assert torch.isfinite(labels).all(), bytes(data)
                ok += 1
            except CameraPathError as e:
                assert "\\n" not in str(e)
                bad += 1
        print(ok, bad)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    ok, bad = map(int, result.stdout.split())
    assert ok + bad == 400 and bad > 100


def test_orbit_labels_circle_the_on_screen_view():
    cam = OrbitCamera(yaw=0.5, pitch=-0.2, radius=2.2, pivot=(0.1, 0.0, 0.2), fov_deg=22.0)
    turn = orbit_labels(cam, "360", 4)
    assert torch.equal(turn[0], cam.label()[0])  # starts on screen
    quarter = OrbitCamera(yaw=0.5 + math.pi / 2, pitch=-0.2, radius=2.2, pivot=(0.1, 0.0, 0.2), fov_deg=22.0)
    torch.testing.assert_close(turn[1], quarter.label()[0])
    orbit = orbit_labels(cam, "orbit", 8)
    views = [Keyframe(tuple(m[:3, 3].tolist()), cam.pivot, 22.0).to_orbit()
             for m in orbit[:, :16].view(-1, 4, 4).double()]
    yaws, pitches = np.array([v.yaw for v in views]), np.array([v.pitch for v in views])
    np.testing.assert_allclose(yaws, 0.5 + 0.35 * np.sin(np.arange(8) * np.pi / 4), atol=1e-5)
    np.testing.assert_allclose(pitches, -0.2 + 0.25 * np.cos(np.arange(8) * np.pi / 4), atol=1e-5)
    assert np.allclose([v.radius for v in views], 2.2) and torch.all(orbit[:, 16:] == cam.label()[0, 16:])
    with pytest.raises(ValueError, match="orbit kind"):
        orbit_labels(cam, "spiral", 4)
