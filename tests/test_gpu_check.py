"""scripts/gpu_check.py on a CPU: the parity section runs tests/test_parity.py, the texture-path section reads
back what the studio uploads, the inversion section runs both camera modes, and the interop hook falls back
to the host copy with a reason when no CUDA-GL binding works."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT


def test_interop_section_reads_back_the_uploaded_pixels(display, tmp_path):
    result = tmp_path / "interop.json"
    env = {**os.environ, "DISPLAY": display}
    env.pop("PYOPENGL_PLATFORM", None)
    proc = subprocess.run([sys.executable, "-m", "scripts.gpu_check", "--section", "interop", "--device", "cpu",
                           "--quick", "--result", str(result)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(result.read_text())
    assert "error" not in r, r
    for path in ("host copy", "device copy"):
        assert r[path]["path"].startswith("host copy"), r[path]  # CPU frames: no interop
        assert r[path]["same_pixels_as_expected"] is True and r[path]["max_abs_pixel_diff"] == 0
        assert r[path]["ms_per_upload"] > 0


def test_parity_section_runs_the_suites_parity_tests_on_the_device(tmp_path):
    result = tmp_path / "parity.json"
    proc = subprocess.run([sys.executable, "-m", "scripts.gpu_check", "--section", "parity", "--device", "cpu",
                           "--quick", "--result", str(result)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(result.read_text())
    assert r["pass"] and r["failed"] == [] and r["passed"] == 2, r  # test_mapping, state_dict and pickle
    assert set(r["tests"]) == {"test_mapping[state_dict]", "test_mapping[pickle]"}


def test_invert_section_inverts_with_the_camera_given_and_estimated(tmp_path):
    result = tmp_path / "invert.json"
    proc = subprocess.run([sys.executable, "-m", "scripts.gpu_check", "--section", "invert", "--device", "cpu",
                           "--quick", "--result", str(result)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(result.read_text())
    assert "error" not in r, r
    for run in ("cpu given", "cpu estimated"):  # the mean w scores about 12 dB on these views
        assert r[run]["novel_psnr_db"] > 14 and r[run]["seconds"] > 0, r
    assert r["cpu given"]["yaw_err_deg"] == 0 and abs(r["cpu estimated"]["yaw_err_deg"]) < 180


def test_cuda_uploader_without_bindings_keeps_the_host_copy_and_says_why():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: scripts/gpu_check.py checks the interop path there")
    from app.interop import TextureUploader
    up = TextureUploader(torch.device("cuda"))
    assert not up.wants_device_frames and up.path.startswith("host copy")
    assert "pycuda" in up.reason and "cuda.bindings" in up.reason
