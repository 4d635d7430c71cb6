"""Camera label, samplers, OpenGL matrices and OrbitCamera against EG3D ref §4 and the fixture."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core import cameras
from core.cameras import (
    OrbitCamera,
    camera_label,
    focal_to_fov,
    fov_to_intrinsics,
    frontal_label,
    gaussian_pose,
    intrinsics_from_focal,
    lookat_pose,
    orbit_360,
    split_label,
    uniform_pose,
    video_orbit,
)
from core.config import RenderOptions
from core.ray_sampler import sample_rays

FFHQ = RenderOptions(avg_camera_radius=2.7, avg_camera_pivot=(0.0, 0.0, 0.2))
HALF_PI = math.pi / 2


def assert_rotation(cam2world: torch.Tensor) -> None:
    r = cam2world[..., :3, :3].double()
    eye = torch.eye(3, dtype=torch.float64).expand_as(r)
    assert torch.allclose(r.transpose(-1, -2) @ r, eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(r.shape[0], dtype=torch.float64), atol=1e-5)
    assert torch.equal(cam2world[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(r.shape[0], 4))


def project(label: torch.Tensor, point) -> np.ndarray:
    """World point -> normalised pixel (u, v) through the label's cam2world and intrinsics."""
    m, k = (t[0].double() for t in split_label(label))
    p_cam = torch.linalg.inv(m) @ torch.tensor([*point, 1.0], dtype=torch.float64)
    uvw = k @ p_cam[:3]
    return (uvw[:2] / uvw[2]).numpy()


def test_frontal_ffhq_label_numbers():
    c = camera_label(lookat_pose(HALF_PI, HALF_PI, 2.7), fov_to_intrinsics(18.837))
    m, k = split_label(c)
    assert torch.allclose(m[0, :3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0])), atol=1e-6)
    assert torch.allclose(m[0, :3, 3], torch.tensor([0.0, 0.0, 2.7]), atol=1e-6)
    assert k[0, 0, 0].item() == pytest.approx(4.2634, abs=1e-4)
    assert torch.equal(k[0], torch.tensor([[k[0, 0, 0], 0, 0.5], [0, k[0, 0, 0], 0.5], [0, 0, 1]]))


def test_yaw_and_pitch_directions():
    right = lookat_pose(HALF_PI + 0.3, HALF_PI, 2.7)
    above = lookat_pose(HALF_PI, HALF_PI - 0.3, 2.7)
    assert right[0, 0, 3] > 0.5 and abs(right[0, 1, 3]) < 1e-6
    assert above[0, 1, 3] > 0.5 and abs(above[0, 0, 3]) < 1e-6
    assert abs(float(above[0, :3, 3].norm()) - 2.7) < 1e-5


def test_phi_mapping_and_pitch_clamp():
    v = 1.0
    m = lookat_pose(HALF_PI, v, 2.0)
    assert m[0, 1, 3].item() == pytest.approx(2.0 * (1 - 2 * v / math.pi), abs=1e-6)
    top = lookat_pose(HALF_PI, -1.0, 2.0)  # clamped to 1e-5: essentially at the pole, still finite
    assert torch.isfinite(top).all() and top[0, 1, 3].item() == pytest.approx(2.0, abs=1e-4)


def test_rotations_are_orthonormal():
    torch.manual_seed(3)
    poses = [lookat_pose(1.2, 1.9, 2.7, (0.1, -0.2, 0.3), batch=8, yaw_std=0.5, pitch_std=0.5),
             gaussian_pose(HALF_PI, HALF_PI, 0.3, 0.2, radius=2.7, batch=8),
             uniform_pose(HALF_PI, HALF_PI, 1.0, 1.0, radius=1.7, batch=8)]
    for pose in poses:
        assert pose.shape == (8, 4, 4)
        assert_rotation(pose)


def test_samplers_look_at_their_target():
    torch.manual_seed(0)
    for pose, target in [(lookat_pose(2.0, 1.0, 2.7, (0.3, 0.1, -0.2), batch=4, yaw_std=0.4), (0.3, 0.1, -0.2)),
                         (gaussian_pose(2.0, 1.0, 0.4, 0.4, radius=1.7, batch=4), (0, 0, 0)),
                         (uniform_pose(2.0, 1.0, 0.4, 0.4, radius=1.7, batch=4), (0, 0, 0))]:
        to_target = torch.nn.functional.normalize(torch.tensor(target) - pose[:, :3, 3], dim=-1)
        assert torch.allclose(pose[:, :3, 2], to_target, atol=1e-5)


def test_sampler_noise_order_and_reproducibility():
    torch.manual_seed(7)
    h_noise, v_noise = torch.randn(3, 1), torch.randn(3, 1)
    torch.manual_seed(7)
    pose = gaussian_pose(HALF_PI, HALF_PI, 0.3, 0.2, radius=2.7, batch=3)
    for i in range(3):
        one = gaussian_pose(HALF_PI + 0.3 * h_noise[i].item(), HALF_PI + 0.2 * v_noise[i].item(), radius=2.7)
        assert torch.allclose(pose[i], one[0], atol=1e-5)
    torch.manual_seed(7)
    u_h, u_v = torch.rand(3, 1), torch.rand(3, 1)
    torch.manual_seed(7)
    pose = uniform_pose(HALF_PI, HALF_PI, 0.3, 0.2, radius=2.7, batch=3)
    one = gaussian_pose(HALF_PI + 0.3 * (2 * u_h[1].item() - 1), HALF_PI + 0.2 * (2 * u_v[1].item() - 1),
                        radius=2.7)
    assert torch.allclose(pose[1], one[0], atol=1e-5)


def test_label_round_trip_and_errors():
    torch.manual_seed(1)
    m = lookat_pose(1.3, 1.7, 2.5, batch=3, yaw_std=0.2)
    k = torch.stack([intrinsics_from_focal(f) for f in (1.5, 4.0, 4.2647)])
    c = camera_label(m, k)
    assert c.shape == (3, 25)
    m2, k2 = split_label(c)
    assert torch.equal(m2, m) and torch.equal(k2, k)
    assert torch.equal(camera_label(m, k[1])[:, 16:], k[1].reshape(1, 9).expand(3, 9))
    with pytest.raises(ValueError, match="intrinsics"):
        camera_label(m, k[:2])
    with pytest.raises(ValueError, match="label"):
        split_label(torch.zeros(2, 24))


def test_fov_focal_inverse():
    assert fov_to_intrinsics(45.0)[0, 0].item() == pytest.approx(1.7074, abs=1e-4)
    for fov in (12.0, 18.837, 30.0, 45.0):
        assert focal_to_fov(fov_to_intrinsics(fov)[0, 0].item()) == pytest.approx(fov, abs=1e-4)
    # kept as a float: the original int-FOV bug (18.837 -> 18) would give ~4.465
    assert fov_to_intrinsics(18.837)[0, 0].item() != pytest.approx(fov_to_intrinsics(18)[0, 0].item(), abs=0.1)
    with pytest.raises(ValueError):
        fov_to_intrinsics(0.0)


def test_orbit_camera_with_origin_pivot_equals_lookat():
    for yaw, pitch in [(0.0, 0.0), (0.4, -0.2), (-1.1, 0.7)]:
        cam = OrbitCamera(yaw=yaw, pitch=pitch, radius=2.3, pivot=(0.0, 0.0, 0.0))
        assert torch.equal(cam.cam2world(), lookat_pose(HALF_PI + yaw, HALF_PI + pitch, 2.3))


def test_orbit_camera_orbit_pan_dolly():
    cam = OrbitCamera.from_options(FFHQ)
    assert torch.allclose(cam.cam2world()[0, :3, 3], torch.tensor([0.0, 0.0, 2.9]), atol=1e-6)
    cam.orbit(0.3, 0.0)
    assert cam.cam2world()[0, 0, 3] > 0.5
    cam.orbit(0.0, -10.0)
    assert cam.pitch == pytest.approx(-cameras.MAX_PITCH)
    assert cam.cam2world()[0, 1, 3] > 2.5
    cam.orbit(-0.3, cameras.MAX_PITCH - 0.2)
    assert (cam.yaw, cam.pitch) == pytest.approx((0.0, -0.2))

    before = cam.cam2world()[0]
    cam.pan(0.1, -0.05)
    after = cam.cam2world()[0]
    moved = after[:3, 3] - before[:3, 3]
    expected = 2.7 * (0.1 * before[:3, 0] - 0.05 * -before[:3, 1])
    assert torch.allclose(moved, expected, atol=1e-5)
    assert torch.allclose(after[:3, :3], before[:3, :3], atol=1e-6)  # pan translates only
    assert project(cam.label(), cam.pivot) == pytest.approx((0.5, 0.5), abs=1e-6)

    cam.dolly(math.log(2.0))
    assert cam.radius == pytest.approx(1.35)
    assert float((cam.cam2world()[0, :3, 3] - torch.tensor(cam.pivot)).norm()) == pytest.approx(1.35, abs=1e-5)
    cam.dolly(100.0)
    assert cam.radius == cameras.MIN_RADIUS

    cam.reset(FFHQ)
    assert cam == OrbitCamera.from_options(FFHQ)


def test_orbit_camera_snap_and_validation():
    cam = OrbitCamera(pivot=(0.0, 0.0, 0.0), radius=2.0)
    expected = {"front": (0, 0, 2), "right": (2, 0, 0), "left": (-2, 0, 0), "back": (0, 0, -2)}
    for view, centre in expected.items():
        cam.snap(view)
        assert torch.allclose(cam.cam2world()[0, :3, 3], torch.tensor(centre, dtype=torch.float32), atol=1e-5)
    cam.snap("top")
    assert cam.cam2world()[0, 1, 3] > 1.9
    with pytest.raises(ValueError, match="view"):
        cam.snap("bottom")
    with pytest.raises(ValueError, match="pivot"):
        OrbitCamera(pivot=(0.0, 0.0))
    assert OrbitCamera(pitch=3.0).pitch == pytest.approx(cameras.MAX_PITCH)


def test_central_ray_passes_through_pivot():
    cam = OrbitCamera(yaw=-0.6, pitch=0.25, radius=2.2, pivot=(0.1, 0.05, 0.2))
    m, k = split_label(cam.label())
    origins, dirs = sample_rays(m, k, 2)  # 2x2: the image centre is the shared corner of 4 pixels
    centre_dir = torch.nn.functional.normalize(dirs[0].mean(0), dim=0)
    to_pivot = torch.tensor(cam.pivot) - origins[0, 0]
    assert torch.allclose(centre_dir, to_pivot / to_pivot.norm(), atol=1e-5)
    origins, dirs = sample_rays(m, k, 3)  # odd resolution: the middle pixel's ray is exact
    assert torch.allclose(dirs[0, 4], to_pivot / to_pivot.norm(), atol=1e-6)


def test_fixture_cameras_reproduced_exactly(cases):
    c_cond = frontal_label(FFHQ, 18.837)
    for seed, yaw in zip(range(3), (0.4, 0.0, -0.4)):
        case = cases["per_seed"][seed]
        assert torch.equal(c_cond, case["c_cond"])
        c = camera_label(lookat_pose(HALF_PI + yaw, HALF_PI - 0.2, 2.7, (0.0, 0.0, 0.2)), fov_to_intrinsics(18.837))
        assert torch.allclose(c, case["c"], atol=1e-6, rtol=0)


def test_frontal_label_and_rng_untouched():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    label = frontal_label(FFHQ, device="cpu", yaw=0.2)
    OrbitCamera().label()
    video_orbit(3, 10)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(label, camera_label(lookat_pose(HALF_PI + 0.2, HALF_PI, 2.7, (0.0, 0.0, 0.2)),
                                           fov_to_intrinsics(18.837)))


def test_video_orbit_path():
    num = 120
    for f in (0, 17, 60):
        t = 2 * 3.14 * f / num
        expected = lookat_pose(3.14 / 2 + 0.35 * math.sin(t), 3.14 / 2 - 0.05 + 0.25 * math.cos(t), 2.7, (0, 0, 0.2))
        assert torch.equal(video_orbit(f, num), expected)
    assert video_orbit(0, num)[0, 1, 3] < -0.3  # starts at pitch frontal + 0.2: camera below
    assert video_orbit(60, num)[0, 1, 3] > 0.4  # half way: pitch frontal - 0.3: camera above
    assert video_orbit(30, num)[0, 0, 3] > 0.8  # a quarter in: yaw offset ~ +0.35 -> camera on +x
    with pytest.raises(ValueError):
        video_orbit(0, 0)


def test_orbit_360_turns_around_pivot():
    pivot = torch.tensor([0.0, 0.0, 0.2])
    poses = [orbit_360(f, 8, radius=2.7)[0] for f in range(8)]
    for pose in poses:
        assert float((pose[:3, 3] - pivot).norm()) == pytest.approx(2.7, abs=1e-5)
    assert torch.allclose(poses[0], OrbitCamera(radius=2.7).cam2world()[0])
    assert poses[2][0, 3] > 2.6 and poses[4][2, 3] < -2.4  # quarter turn on +x, half turn behind


def test_checkpoint_fov_is_the_default_everywhere():
    """Our trainer records the dataset's FOV in rendering_kwargs; tools and viewer default to it."""
    from core.cameras import OrbitCamera, fov_to_intrinsics, frontal_label
    from core.config import RenderOptions
    opts = RenderOptions.from_kwargs({"avg_camera_radius": 1.8, "avg_camera_pivot": [0, 0, 0],
                                      "avg_camera_fov": 42.9})
    assert torch.equal(frontal_label(opts)[0, 16:].view(3, 3), fov_to_intrinsics(42.9))
    cam = OrbitCamera.from_options(opts)
    assert cam.fov_deg == 42.9 and cam.radius == 1.8
    cam.fov_deg = 10.0
    cam.reset(opts)
    assert cam.fov_deg == 42.9
    assert RenderOptions.from_kwargs({}).avg_camera_fov == 18.837  # original checkpoints: EG3D's tools' FOV
