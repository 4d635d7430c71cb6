"""Studio side of training: launch `main.py train` as a subprocess and read a run directory live.

The trainer only appends whole JSON lines to metrics.jsonl and writes grids and snapshots atomically,
so a reader polling the directory never sees a half-written file (a line still being written is
simply left for the next poll).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from training.loop import METRICS_FILE, OPTIONS_FILE, list_snapshots

ROOT = Path(__file__).resolve().parents[1]
LOG_FILE = "train.log"


def series(entries: list[dict], key: str, event: str = "tick") -> tuple[list[float], list[float]]:
    """(kimg, value) pairs of one logged quantity over a run's metrics entries, for plotting."""
    rows = [(float(e["kimg"]), float(e[key])) for e in entries
            if e.get("event") == event and isinstance(e.get(key), (int, float)) and "kimg" in e]
    return [x for x, _ in rows], [y for _, y in rows]


class RunReader:
    """Incremental view of a run directory: metrics entries, newest grids and snapshot."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._entries: list[dict] = []
        self._offset = 0

    def options(self) -> dict | None:
        try:
            return json.loads((self.run_dir / OPTIONS_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def metrics(self) -> list[dict]:
        """All complete metrics entries so far (new lines are read incrementally)."""
        path = self.run_dir / METRICS_FILE
        try:
            size = path.stat().st_size
        except OSError:
            return self._entries
        if size < self._offset:  # the file was trimmed by a resume: read it again
            self._entries, self._offset = [], 0
        with open(path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].splitlines():
            try:
                self._entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        self._offset += end
        return self._entries

    def newest_snapshot(self) -> Path | None:
        snaps = list_snapshots(self.run_dir)
        return snaps[-1] if snaps else None

    def newest_grids(self) -> dict[str, Path]:
        """{'image', 'raw', 'depth', 'reals'} -> newest grid PNG paths that exist."""
        fakes = sorted(p for p in self.run_dir.glob("fakes?????????.png"))
        out: dict[str, Path] = {}
        if fakes:
            stem = fakes[-1].with_suffix("")
            out["image"] = fakes[-1]
            for kind in ("raw", "depth"):
                p = Path(f"{stem}_{kind}.png")
                if p.exists():
                    out[kind] = p
        if (self.run_dir / "reals.png").exists():
            out["reals"] = self.run_dir / "reals.png"
        return out


@dataclass
class TrainSpec:
    """What to launch: `main.py train` arguments."""
    run_dir: str
    data: str | None = None
    config: str = "tiny"
    kimg: float | None = None
    snap: float | None = None
    tick: float | None = None
    batch: int | None = None
    batch_gpu: int | None = None
    init: str | None = None
    resume: bool = False
    device: str | None = None

    def argv(self) -> list[str]:
        args = ["train"]
        if self.resume:
            args += ["--resume", self.run_dir]
        else:
            args += ["--out", self.run_dir, "--config", self.config]
        if self.data:
            args += ["--data", self.data]
        recipe = () if self.resume else (("--batch", self.batch), ("--batch-gpu", self.batch_gpu),
                                          ("--init", self.init))  # a resumed run keeps its recipe
        for flag, value in (("--kimg", self.kimg), ("--snap", self.snap), ("--tick", self.tick), *recipe,
                            ("--device", self.device)):
            if value is not None:
                args += [flag, str(value)]
        return args


class TrainingProcess:
    """A training subprocess whose output goes to <run_dir>/train.log."""

    def __init__(self, spec: TrainSpec, python: str = sys.executable):
        self.spec, self.python = spec, python
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.running:
            raise RuntimeError("training is already running")
        run_dir = Path(self.spec.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(run_dir / LOG_FILE, "ab") as log:
            self._proc = subprocess.Popen([self.python, str(ROOT / "main.py"), *self.spec.argv()],
                                          stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            text = (Path(self.spec.run_dir) / LOG_FILE).read_bytes()[-chars:]
        except OSError:
            return ""
        return text.decode("utf-8", "replace").replace("\r", "\n")

    def stop(self, timeout: float = 300.0) -> None:
        """Ask the run to stop: it finishes the current step, writes a snapshot and exits.

        Killed after `timeout` seconds; even then the newest complete snapshot is the resume point.
        """
        if not self.running:
            return
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
