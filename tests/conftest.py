"""Shared test fixtures: paths to ../shared/fixtures and the small ground-truth generator."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as main.py: no spinning threads on shared CPUs
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRIPLANE_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "eg3d_small"

torch.set_num_threads(min(2, torch.get_num_threads()))
# The parity tests run on this device (scripts/gpu_check.py sets cuda); float32 without TF32, as the fixtures.
DEVICE = torch.device(os.environ.get("TRIPLANE_TEST_DEVICE", "cpu"))
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(scope="session")
def device() -> torch.device:
    return DEVICE


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"fixtures not found at {FIXTURES} (set TRIPLANE_SHARED to the shared/ folder)")
    return FIXTURES


@pytest.fixture(scope="session")
def fixture_config(fixture_dir) -> dict:
    return json.loads((fixture_dir / "config.json").read_text())


@pytest.fixture(scope="session")
def cases(fixture_dir) -> dict:
    return torch.load(fixture_dir / "cases.pt", weights_only=True)


def build_fixture_generator(fixture_dir: Path):
    """The fixture's TriPlaneGenerator from config.json + state_dict.pt, in eval mode."""
    from core.triplane import TriPlaneGenerator
    cfg = json.loads((fixture_dir / "config.json").read_text())
    kwargs = {k: v for k, v in cfg["G_kwargs"].items() if k != "class_name"}
    G = TriPlaneGenerator(**kwargs).eval().requires_grad_(False)
    G.load_state_dict(torch.load(fixture_dir / "state_dict.pt", weights_only=True))
    G.neural_rendering_resolution = cfg["neural_rendering_resolution"]
    return G


@pytest.fixture(scope="session")
def small_G(fixture_dir):
    """Fixture generator (shared across tests: do not modify it; deepcopy if you must)."""
    return build_fixture_generator(fixture_dir)


@pytest.fixture(scope="session")
def snapshot_pkl(fixture_dir) -> Path:
    return fixture_dir / "network-snapshot-small.pkl"


def start_xvfb(screen: str) -> tuple[subprocess.Popen, str]:
    """Start Xvfb on a free display number; returns the process and ':N' once its socket is up."""
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is not installed (apt-get install xvfb; scripts/test.sh does this)")
    for number in range(140 + os.getpid() % 50, 400):
        if Path(f"/tmp/.X{number}-lock").exists() or Path(f"/tmp/.X11-unix/X{number}").exists():
            continue
        server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", screen, "-nolisten", "tcp"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if Path(f"/tmp/.X11-unix/X{number}").exists():
                return server, f":{number}"
            if server.poll() is not None:
                break
            time.sleep(0.05)
        server.kill()
        server.wait()
    pytest.fail("could not start Xvfb on any display number")


@pytest.fixture(scope="session")
def display():
    """$DISPLAY, or a private Xvfb server (llvmpipe GL) for the whole session."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    server, name = start_xvfb("1280x800x24")
    os.environ["DISPLAY"] = name
    yield name
    os.environ.pop("DISPLAY", None)
    server.terminate()
    server.wait()
