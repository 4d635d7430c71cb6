"""Training panel: watch a run directory (curves, kimg, images/s, ETA, latest grid, hot reload of the
newest snapshot) and start/stop a training run as a separate process.

It talks to training only through the run directory's files (metrics.jsonl, training_options.json,
fakes*.png, network-snapshot-*.ckpt) and the `python main.py train` command, so the UI stays live
whatever the trainer does, and a run started here is the same as one started from a shell.
"""
from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from imgui_bundle import imgui, implot

from app.gl import Texture, texture_ref
from app.imgui_utils import disabled, em, info_table
from app.panel import Panel
from app.state import AppState

log = logging.getLogger(__name__)
MAIN = Path(__file__).resolve().parents[1] / "main.py"
METRICS_FILE, OPTIONS_FILE, SNAPSHOT_GLOB = "metrics.jsonl", "training_options.json", "network-snapshot-*.ckpt"
POLL_SECONDS = 1.0
PLOTS = {"losses": ("loss_G", "loss_D_real", "loss_D_fake"), "regularizers": ("reg_r1", "reg_density")}


class MetricsLog:
    """Incremental reader of a run's metrics.jsonl (tick lines): series per key against kimg."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0
        self.ticks: list[dict] = []
        self.snapshots: list[dict] = []

    def poll(self) -> bool:
        """Read lines appended since the last poll (restart if the file was rewritten); True if any."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        if size < self.offset:
            self.offset, self.ticks, self.snapshots = 0, [], []
        if size == self.offset:
            return False
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]          # a half-written last line waits for the next poll
        self.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            (self.snapshots if entry.get("event") == "snapshot" else self.ticks).append(entry)
        return bool(complete)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        rows = [(t["kimg"], t[key]) for t in self.ticks if isinstance(t.get(key), (int, float)) and "kimg" in t]
        if not rows:
            return np.zeros(0), np.zeros(0)
        xs, ys = np.asarray(rows, np.float64).T
        return np.ascontiguousarray(xs), np.ascontiguousarray(ys)


def eta_text(ticks: list[dict], target_kimg: float | None) -> str:
    """'h:mm:ss' left at the recent images/s, or '-'."""
    if not ticks or not target_kimg:
        return "-"
    last = ticks[-1]
    rate = last.get("images_per_s") or 0.0
    if rate <= 0:
        return "-"
    seconds = max(target_kimg - last.get("kimg", 0.0), 0.0) * 1000 / rate
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 3600:.0f} h"


class TrainingPanel(Panel):
    name = "Training"

    def __init__(self) -> None:
        super().__init__()
        self.dir_text = ""
        self.data_text = ""
        self.config = "tiny"
        self.kimg = 20.0
        self.log_y = False
        self.metrics: MetricsLog | None = None
        self.options: dict = {}
        self.grid = Texture()
        self.grid_path: Path | None = None
        self.snapshot: Path | None = None
        self.process: subprocess.Popen | None = None
        self.stop_requested = 0.0
        self._next_poll = 0.0

    def draw(self, state: AppState) -> None:
        t = state.training
        _, self.dir_text = imgui.input_text("run dir", self.dir_text or t.run_dir)
        imgui.same_line()
        if imgui.button("Watch"):
            self._watch(state, self.dir_text.strip())
        _, t.auto_reload = imgui.checkbox("load new snapshots automatically", t.auto_reload)
        self._process_controls(state)
        if self.metrics is None:
            imgui.text_disabled("Watch a run directory to see its curves and grids.")
            return
        ticks = self.metrics.ticks
        last = ticks[-1] if ticks else {}
        target = self.options.get("kimg")
        info_table([("kimg", f"{last.get('kimg', 0):.2f}" + (f" / {target:g}" if target else "")),
                    ("images/s", f"{last.get('images_per_s', 0):.1f}"), ("ETA", eta_text(ticks, target)),
                    ("snapshot", self.snapshot.name if self.snapshot else "-")], "train-info")
        _, self.log_y = imgui.checkbox("log scale", self.log_y)
        for title, keys in PLOTS.items():
            self._plot(title, keys)
        if self.grid_path is not None:
            imgui.text(self.grid_path.name)
            w, h = self.grid.size
            width = imgui.get_content_region_avail().x
            imgui.image(texture_ref(self.grid.id), imgui.ImVec2(width, width * h / max(w, 1)))

    def _plot(self, title: str, keys: tuple[str, ...]) -> None:
        auto = implot.AxisFlags_.auto_fit
        if not implot.begin_plot(title, imgui.ImVec2(-1, em(11))):
            return
        try:
            implot.setup_axes("kimg", "", auto, auto)
            if self.log_y:
                implot.setup_axis_scale(implot.ImAxis_.y1, implot.Scale_.sym_log)
            for key in keys:
                xs, ys = self.metrics.series(key)
                if len(xs):
                    implot.plot_line(key, xs, ys)
        finally:
            implot.end_plot()

    def _watch(self, state: AppState, run_dir: str) -> None:
        state.training.run_dir = run_dir
        self.metrics = MetricsLog(Path(run_dir) / METRICS_FILE) if run_dir else None
        self.options, self.grid_path, self.snapshot, self._next_poll = {}, None, None, 0.0

    def update(self, state: AppState) -> None:
        """Once a second, visible or not: new metric lines, options, the newest grid and snapshot."""
        if self.metrics is None or time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + POLL_SECONDS
        run = Path(state.training.run_dir)
        self.metrics.poll()
        if not self.options and (run / OPTIONS_FILE).exists():
            try:
                self.options = json.loads((run / OPTIONS_FILE).read_text())
            except (OSError, ValueError) as e:
                log.warning("cannot read %s: %s", run / OPTIONS_FILE, e)
        grids = sorted(p for p in run.glob("fakes*.png") if not p.stem.endswith(("_raw", "_depth")))
        if grids and grids[-1] != self.grid_path:
            self._load_grid(state, grids[-1])
        snaps = sorted(run.glob(SNAPSHOT_GLOB))
        if snaps and snaps[-1] != self.snapshot:
            self.snapshot = snaps[-1]
            if state.training.auto_reload:
                state.model.open_request = str(self.snapshot)
                state.model.keep_view = state.model.path is not None

    def _load_grid(self, state: AppState, path: Path) -> None:
        from PIL import Image
        try:
            with Image.open(path) as im:
                self.grid.upload(np.asarray(im.convert("RGB")))
            self.grid_path = path
        except OSError as e:  # a grid being replaced right now: try again at the next poll
            log.warning("cannot read grid %s: %s", path, e)

    def _process_controls(self, state: AppState) -> None:
        running = self.process is not None and self.process.poll() is None
        if imgui.tree_node("Start a training run"):
            try:
                with disabled(running):
                    _, self.data_text = imgui.input_text("dataset", self.data_text)
                    from training.config import PRESETS
                    names = sorted(PRESETS)
                    index = names.index(self.config) if self.config in names else 0
                    _, index = imgui.combo("config", index, names)
                    self.config = names[index]
                    _, self.kimg = imgui.input_float("kimg", self.kimg, 1.0, 10.0, "%.1f")
                    if imgui.button("Start") and self.data_text.strip() and self.dir_text.strip():
                        self._start(state)
            finally:
                imgui.tree_pop()
        if self.process is not None:
            code = self.process.poll()
            if code is None:
                imgui.text(f"training process {self.process.pid} running")
                imgui.same_line()
                if not self.stop_requested and imgui.button("Stop"):
                    self.process.send_signal(signal.SIGINT)   # the trainer stops between steps
                    self.stop_requested = time.monotonic()
                elif self.stop_requested and time.monotonic() - self.stop_requested > 10 and imgui.button("Kill"):
                    self.process.kill()
            else:
                imgui.text_disabled(f"training process exited with code {code}")

    def _start(self, state: AppState) -> None:
        run_dir = Path(self.dir_text.strip())
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            console = open(run_dir / "studio-train.log", "ab")
        except OSError as e:
            state.set_status(f"cannot start training in {run_dir}: {e}", error=True)
            return
        cmd = [sys.executable, str(MAIN), "train", "--data", self.data_text.strip(), "--out", str(run_dir),
               "--config", self.config, "--kimg", f"{self.kimg:g}"]
        with console:
            self.process = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, cwd=MAIN.parent)
        self.stop_requested = 0.0
        self._watch(state, str(run_dir))
        state.set_status(f"training started (pid {self.process.pid}); console log in {run_dir}/studio-train.log")

    def close(self) -> None:
        """Stop a run started here, so closing the studio does not leave a trainer behind."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.grid.delete()
