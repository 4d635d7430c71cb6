"""The installed package and the process it runs in: `pip install .` gives a `triplane-studio` command that
works from any directory; another project's `training` package (the original EG3D's) earlier on the Python
path is one line, not a confusing import error; `import core` sets its process settings unless told not to."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("core", "app", "cli", "training", "remote", "shaders", "assets", "main.py", "pyproject.toml", "README.md")


def _eg3d_checkout(tmp_path: Path) -> Path:
    """A directory shaped like the original EG3D code: its own `training` package."""
    root = tmp_path / "eg3d"
    (root / "training").mkdir(parents=True)
    (root / "training" / "__init__.py").write_text("")
    (root / "training" / "networks_stylegan2.py").write_text("class Generator:\n    pass\n")
    return root


def _run(argv: list, cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip install` of a copy of the checkout into a --target directory (offline: no build isolation)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                        "--no-build-isolation", "--disable-pip-version-check", "--target", str(tmp / "site"), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return tmp / "site"


def test_installed_command_runs_from_another_directory(installed, tmp_path):
    """`triplane-studio info` on the installed default model, started away from the checkout: the code and
    the model both come from the installation."""
    r = _run([installed / "bin" / "triplane-studio", "info", installed / "assets" / "default_model.ckpt"],
             cwd=tmp_path, pythonpath=[installed])
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(None, 1) for line in r.stdout.splitlines() if not line.startswith(" ") and " " in line)
    assert fields["format"] == "triplane-studio checkpoint" and fields["path"].startswith(str(installed)), r.stdout


@pytest.mark.parametrize("where", ["installed", "checkout"])
def test_a_foreign_training_package_first_on_the_path_is_one_line(installed, tmp_path, where):
    """An EG3D-like checkout before ours on the Python path: the command names the clash in one line, exit 2."""
    eg3d = _eg3d_checkout(tmp_path)
    if where == "installed":
        r = _run([installed / "bin" / "triplane-studio", "info", installed / "assets" / "default_model.ckpt"],
                 cwd=tmp_path, pythonpath=[eg3d, installed])
    else:
        r = _run([sys.executable, "-c", "import sys, main; sys.exit(main.main(['--help']))"], cwd=tmp_path,
                 pythonpath=[eg3d, ROOT])
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "'training'" in lines[0], r.stderr
    assert str(eg3d / "training") in lines[0], lines[0]


def test_importing_core_sets_process_settings_unless_opted_out(tmp_path):
    """OMP_WAIT_POLICY (read by OpenMP when torch loads) and the allocator setting come with `import core`:
    a freed 64 MB array stays resident (the next large tensor reuses its pages instead of faulting in fresh
    zeroed ones). TRIPLANE_PROCESS_SETTINGS=0 leaves both alone (the array goes back to the OS, OpenMP keeps
    its own default); TRIPLANE_KEEP_FREED_MEMORY=0 only the allocator."""
    code = ("import core, os, numpy as np\n"
            "def rss(): return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
            "r0 = rss(); a = np.ones(1 << 24, np.float32); del a\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), (rss() - r0) >> 20)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "TRIPLANE_KEEP_FREED_MEMORY")}

    def fresh(**extra: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, **extra}, capture_output=True,
                             text=True, check=True, timeout=120).stdout.split()
        return out[0], int(out[1])

    policy, kept = fresh()
    assert policy == "PASSIVE" and kept >= 60, (policy, kept)
    policy, kept = fresh(TRIPLANE_PROCESS_SETTINGS="0")
    assert policy == "None" and kept <= 8, (policy, kept)
    policy, kept = fresh(TRIPLANE_KEEP_FREED_MEMORY="0")
    assert policy == "PASSIVE" and kept <= 8, (policy, kept)
    assert fresh(OMP_WAIT_POLICY="ACTIVE")[0] == "ACTIVE", "an explicit setting must win"
