"""Keyframed camera paths: smooth interpolation between user-placed views, EG3D labels, JSON files.

A keyframe is a camera position, the point it looks at and its FOV, in world units (core/cameras.py
conventions: +y up, no roll). Between keyframes:
- the look-at point follows a Catmull-Rom spline with centripetal knot spacing (Yuksel et al. 2011:
  tangents that do not swing wide where keyframes are unevenly spaced);
- the camera orbits it: its (yaw, elevation, log distance) around the look-at point follow the same
  kind of spline, yaw turning the short way between keyframes. Interpolating the position itself would
  cut chords through the orbit sphere, and EG3D renders only depths in [ray_start, ray_end] around the
  training radius: a camera that drifts closer clips the subject;
- the FOV follows a uniform Catmull-Rom in log(tan(fov/2)): it stays inside (0, 180) and zooms at an
  even perceived rate.
Every keyframe gets an equal share of the path's time t in [0, 1]; each quantity is C1 in t, so the
camera neither jumps nor jerks at a keyframe.

File format (version 1):
    {"version": 1, "loop": false,
     "keyframes": [{"position": [x, y, z], "look_at": [x, y, z], "fov": degrees}, ...]}
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.cameras import OrbitCamera, _cam2world, camera_label, fov_to_intrinsics
from core.errors import StudioError
from core.fileio import atomic_path

FORMAT_VERSION = 1
MAX_KEYFRAMES = 10_000
MAX_FILE_BYTES = 16 << 20
_KNOT_EPS = 1e-6
"""Smallest knot interval of the centripetal spline (repeated keyframes would divide by zero)."""
_VERTICAL = 1 - 1e-9
"""|cos| of the angle to the vertical above which a view direction has no defined 'up' (no roll)."""
_MAX_ELEVATION = math.pi / 2 - 1e-4
"""Interpolated elevations are kept this far from the poles (a keyframe may be closer)."""


class CameraPathError(StudioError, ValueError):
    """A keyframe or camera path file that cannot describe a camera."""


def _number(value, what: str) -> float:
    """A finite float from a real number (int, float, numpy scalar; not a bool, string, ...)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise CameraPathError(f"{what} must be a number, got {value!r}")
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise CameraPathError(f"{what} must be finite, got {x}")
    return x


def _vec3(value, what: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != 3:
        raise CameraPathError(f"{what} must be 3 numbers, got {str(value)[:60]}")
    return tuple(_number(x, what) for x in value)


@dataclass(frozen=True)
class Keyframe:
    """One view: camera `position`, the point it looks at, FOV in degrees (core.cameras convention)."""
    position: tuple[float, float, float]
    look_at: tuple[float, float, float]
    fov_deg: float

    def __post_init__(self) -> None:
        position, look_at = _vec3(self.position, "position"), _vec3(self.look_at, "look_at")
        fov = _number(self.fov_deg, "fov")
        if not 0 < fov < 180:
            raise CameraPathError(f"fov must be in (0, 180) degrees, got {fov}")
        d = np.subtract(look_at, position)
        norm = float(np.linalg.norm(d))
        if norm == 0:
            raise CameraPathError(f"position and look_at are the same point {list(position)}")
        if abs(d[1]) / norm > _VERTICAL:
            raise CameraPathError(f"the camera at {list(position)} looks straight up or down "
                                  "(its roll is undefined)")
        object.__setattr__(self, "position", position)
        object.__setattr__(self, "look_at", look_at)
        object.__setattr__(self, "fov_deg", fov)

    @classmethod
    def from_orbit(cls, cam: OrbitCamera) -> Keyframe:
        """The viewer camera's current view (its label is reproduced exactly by `label`)."""
        position = cam.cam2world()[0, :3, 3].tolist()
        return cls(tuple(position), tuple(cam.pivot), cam.fov_deg)

    def to_orbit(self) -> OrbitCamera:
        """An OrbitCamera showing this view: pivot = look_at, radius = distance (pitch is limited to
        OrbitCamera's range)."""
        d = np.subtract(self.position, self.look_at)
        radius = float(np.linalg.norm(d))
        # Inverse of core.cameras._sphere_point: y = r cos(phi), phi = arccos(1 - 2 v / pi).
        v = math.pi * (1 - d[1] / radius) / 2
        h = math.pi - math.atan2(d[2], d[0])
        yaw = math.remainder(h - math.pi / 2, 2 * math.pi)
        return OrbitCamera(yaw=yaw, pitch=v - math.pi / 2, radius=radius, pivot=self.look_at,
                           fov_deg=self.fov_deg)

    def cam2world(self, device: torch.device | str | None = None) -> torch.Tensor:
        """OpenCV cam2world [1,4,4] (float32, world up +y, no roll)."""
        origin = torch.tensor([self.position], dtype=torch.float32, device=device)
        target = torch.tensor([self.look_at], dtype=torch.float32, device=device)
        forward = target - origin
        return _cam2world(forward / torch.norm(forward, dim=-1, keepdim=True), origin)

    def label(self, device: torch.device | str | None = None) -> torch.Tensor:
        """EG3D camera label [1,25]."""
        return camera_label(self.cam2world(device), fov_to_intrinsics(self.fov_deg, device))

    def to_json(self) -> dict:
        return {"position": list(self.position), "look_at": list(self.look_at), "fov": self.fov_deg}


def orbit_labels(cam: OrbitCamera, kind: str, frames: int,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Labels [frames, 25] moving around the viewer camera's current view (its pivot, radius and FOV
    kept): 'orbit' is gen_videos' ellipse (yaw +-0.35 sin, pitch +-0.25 cos, one loop) centred on the
    current yaw/pitch instead of the frontal view; '360' turns the yaw once around from the current view."""
    if kind not in ("orbit", "360"):
        raise ValueError(f"orbit kind must be orbit or 360, not {kind!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"number of frames must be a positive integer, got {frames!r}")
    views = []
    for f in range(frames):
        a = 2 * math.pi * f / frames
        yaw, pitch = ((cam.yaw + 0.35 * math.sin(a), cam.pitch + 0.25 * math.cos(a)) if kind == "orbit"
                      else (cam.yaw + a, cam.pitch))
        views.append(dataclasses.replace(cam, yaw=yaw, pitch=pitch).label(device))
    return torch.cat(views)


def _hermite(p1: np.ndarray, p2: np.ndarray, m1: np.ndarray, m2: np.ndarray, s: float) -> np.ndarray:
    s2, s3 = s * s, s * s * s
    return ((2 * s3 - 3 * s2 + 1) * p1 + (s3 - 2 * s2 + s) * m1 + (-2 * s3 + 3 * s2) * p2
            + (s3 - s2) * m2)


def _centripetal(p0, p1, p2, p3, s: float, alpha: float = 0.5) -> np.ndarray:
    """Catmull-Rom between p1 (s = 0) and p2 (s = 1) with knots spaced by distance**alpha
    (0.5: centripetal, 0: uniform), as a cubic Hermite segment.

    The tangents have the Catmull-Rom direction; their length is scaled by the mean knot interval on
    either side of the key, so both segments meeting at a key share it: each interpolated quantity
    is C1 in the path's time (no speed jumps at keys), and so is a camera built from several of them.
    With alpha = 0 this is the uniform Catmull-Rom spline.
    """
    t01, t12, t23 = (max(float(np.linalg.norm(b - a)) ** alpha, _KNOT_EPS)
                     for a, b in ((p0, p1), (p1, p2), (p2, p3)))
    m1 = (p1 - p0) / t01 - (p2 - p0) / (t01 + t12) + (p2 - p1) / t12  # d/d(knot) at p1
    m2 = (p2 - p1) / t12 - (p3 - p1) / (t12 + t23) + (p3 - p2) / t23
    return _hermite(p1, p2, m1 * (t01 + t12) / 2, m2 * (t12 + t23) / 2, s)


def _orbit_coords(key: Keyframe) -> np.ndarray:
    """(yaw, elevation, log distance) of the camera around its look-at point; yaw = atan2(dx, dz)."""
    d = np.subtract(key.position, key.look_at)
    r = float(np.linalg.norm(d))
    return np.array([math.atan2(d[0], d[2]), math.asin(min(max(d[1] / r, -1.0), 1.0)), math.log(r)])


class CameraPath:
    """Keyframes and whether the path closes into a loop; sample(t) for t in [0, 1].

    Open path: keyframe i at t = i / (K - 1), the ends extended by reflection. Loop: keyframe i at
    t = i / K and t = 1 is keyframe 0 again. One keyframe: a static camera. Immutable: edit a copy
    of `keyframes` and build a new path.
    """

    def __init__(self, keyframes: Sequence[Keyframe], loop: bool = False):
        keyframes = tuple(keyframes)
        if not keyframes:
            raise CameraPathError("a camera path needs at least one keyframe")
        if len(keyframes) > MAX_KEYFRAMES:
            raise CameraPathError(f"too many keyframes ({len(keyframes)} > {MAX_KEYFRAMES})")
        if not all(isinstance(k, Keyframe) for k in keyframes):
            raise CameraPathError("keyframes must be Keyframe objects")
        self.keyframes, self.loop = keyframes, bool(loop)
        # Control values per keyframe: look-at [K,3], orbit coordinates [K,3], log tan(fov/2) [K,1].
        self._look = np.array([k.look_at for k in keyframes])
        self._orbit = np.array([_orbit_coords(k) for k in keyframes])
        self._log_tan = np.array([[math.log(math.tan(math.radians(k.fov_deg) / 2))] for k in keyframes])
        # Unwrap yaw so that each step turns the short way; a loop's closing step adds `turn` (a multiple
        # of 2 pi) per lap, so a path of four quarter turns keeps turning instead of winding back.
        steps = np.remainder(np.diff(self._orbit[:, 0]) + math.pi, 2 * math.pi) - math.pi
        self._orbit[1:, 0] = self._orbit[0, 0] + np.cumsum(steps)
        closing = (self._orbit[0, 0] - self._orbit[-1, 0] + math.pi) % (2 * math.pi) - math.pi
        self._turn = self._orbit[-1, 0] + closing - self._orbit[0, 0]

    def __eq__(self, other) -> bool:
        return (isinstance(other, CameraPath) and self.loop == other.loop
                and self.keyframes == other.keyframes)

    def __repr__(self) -> str:
        return f"CameraPath({len(self.keyframes)} keyframes, loop={self.loop})"

    def times(self) -> list[float]:
        """The time t of each keyframe."""
        k = len(self.keyframes)
        if k == 1:
            return [0.0]
        return [i / (k if self.loop else k - 1) for i in range(k)]

    def sample(self, t: float) -> Keyframe:
        """The camera at time t in [0, 1]; exactly keyframe i at its time."""
        if not math.isfinite(t) or not 0 <= t <= 1:
            raise ValueError(f"path time must be in [0, 1], got {t}")
        keys, k = self.keyframes, len(self.keyframes)
        if k == 1:
            return keys[0]
        x = t * (k if self.loop else k - 1)
        nearest = round(x)
        if abs(x - nearest) < 1e-9:
            return keys[nearest % k]
        i = math.floor(x)
        s = x - i
        idx = [i - 1, i, i + 1, i + 2]
        look_at = _centripetal(*self._control(self._look, idx), s)
        yaw, elevation, log_r = _centripetal(*self._control(self._orbit, idx, turn=self._turn), s)
        elevation = min(max(elevation, -_MAX_ELEVATION), _MAX_ELEVATION)
        r = math.exp(log_r)
        offset = r * np.array([math.cos(elevation) * math.sin(yaw), math.sin(elevation),
                               math.cos(elevation) * math.cos(yaw)])
        log_tan = _centripetal(*self._control(self._log_tan, idx), s, alpha=0.0)[0]
        fov_deg = math.degrees(2 * math.atan(math.exp(log_tan)))
        try:
            return Keyframe(tuple((look_at + offset).tolist()), tuple(look_at.tolist()), fov_deg)
        except CameraPathError as e:
            raise CameraPathError(f"camera path at t={t:.4f}: {e}") from None

    def _control(self, values: np.ndarray, idx: list[int], turn: float = 0.0) -> list[np.ndarray]:
        """Rows idx of values [K,D]: a segment's four control points. A loop wraps around (adding
        `turn` to the first coordinate per lap); an open path is mirrored past its ends
        (p[-1] = 2 p[0] - p[1])."""
        k = len(values)
        if self.loop:
            return [values[j % k] + np.eye(values.shape[1])[0] * turn * (j // k) for j in idx]
        return [2 * values[0] - values[1] if j < 0 else 2 * values[-1] - values[-2] if j >= k else values[j]
                for j in idx]

    def frame_times(self, frames: int) -> list[float]:
        """`frames` times spread over the path: an open path includes both ends, a loop leaves out
        t = 1 (it is the first frame again)."""
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"number of frames must be a positive integer, got {frames!r}")
        if frames == 1:
            return [0.0]
        return [f / (frames if self.loop else frames - 1) for f in range(frames)]

    def labels(self, frames: int, device: torch.device | str | None = None) -> torch.Tensor:
        """EG3D camera labels [frames, 25] at `frame_times(frames)`."""
        return torch.cat([self.sample(t).label(device) for t in self.frame_times(frames)])

    # ---- files -------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"version": FORMAT_VERSION, "loop": self.loop,
                "keyframes": [k.to_json() for k in self.keyframes]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON file atomically (a crash never leaves a half-written path)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, data, source: str = "camera path") -> CameraPath:
        """Validate parsed JSON; a problem raises CameraPathError naming it."""
        if not isinstance(data, dict):
            raise CameraPathError(f"{source}: expected a JSON object, got {type(data).__name__}")
        extra = sorted(set(data) - {"version", "loop", "keyframes"})
        if extra:
            raise CameraPathError(f"{source}: unknown field {extra[0]!r}")
        if data.get("version") != FORMAT_VERSION:
            raise CameraPathError(f"{source}: version must be {FORMAT_VERSION}, got {data.get('version')!r}")
        loop = data.get("loop", False)
        if not isinstance(loop, bool):
            raise CameraPathError(f"{source}: loop must be true or false, got {loop!r}")
        frames = data.get("keyframes")
        if not isinstance(frames, list):
            raise CameraPathError(f"{source}: keyframes must be a list")
        if not frames:
            raise CameraPathError(f"{source}: no keyframes")
        if len(frames) > MAX_KEYFRAMES:
            raise CameraPathError(f"{source}: too many keyframes ({len(frames)} > {MAX_KEYFRAMES})")
        keyframes = []
        for i, item in enumerate(frames):
            where = f"{source}: keyframe {i}"
            if not isinstance(item, dict):
                raise CameraPathError(f"{where}: expected an object with position, look_at and fov")
            fields = set(item)
            missing = sorted({"position", "look_at", "fov"} - fields)
            unknown = sorted(fields - {"position", "look_at", "fov"})
            if missing or unknown:
                problem = f"missing {missing[0]!r}" if missing else f"unknown field {unknown[0]!r}"
                raise CameraPathError(f"{where}: {problem}")
            try:
                keyframes.append(Keyframe(item["position"], item["look_at"], item["fov"]))
            except CameraPathError as e:
                raise CameraPathError(f"{where}: {e}") from None
        return cls(keyframes, loop)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CameraPath:
        """Read a camera path file; anything wrong raises CameraPathError with one line naming it."""
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise CameraPathError(f"{path}: {size} bytes is too large for a camera path")
            text = path.read_bytes().decode("utf-8")
        except OSError as e:
            raise CameraPathError(f"cannot read camera path {path}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise CameraPathError(f"{path}: not a text (UTF-8) file") from None

        def no_constant(name: str):
            raise CameraPathError(f"{path}: {name} is not a valid number")
        try:
            data = json.loads(text, parse_constant=no_constant)
        except json.JSONDecodeError as e:
            raise CameraPathError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
        except RecursionError:
            raise CameraPathError(f"{path}: JSON nested too deeply") from None
        except ValueError as e:  # e.g. an integer literal with too many digits
            raise CameraPathError(f"{path}: not valid JSON ({e})") from None
        return cls.from_json(data, str(path))
