"""Training panel: watch a run directory (curves, kimg, images/s, ETA, latest grid, hot reload of the
newest snapshot) and start/stop a training run.

Reading the run directory and running the trainer are training.runner's (RunReader, TrainSpec,
TrainingProcess): the panel reads through a RunReader and asks the session to start or stop the
process (StartTraining / StopTraining actions), so a run started here is the one a shell would start,
and a run that cannot start shows the trainer's own one-line reason here.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from imgui_bundle import imgui, implot

from app.actions import OpenModel, StartTraining, StopTraining
from app.files import FileField
from app.gl import Texture, texture_ref
from app.imgui_utils import CLAMP, disabled, em, help_marker, info_table
from app.panel import Panel
from app.state import AppState, TrainingState
from training.runner import RunReader, series

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0
STALE_TICKS = 5
"""A watched run that has not logged for this many tick intervals is shown as not progressing."""
STALE_MIN_S = 300.0
PLOTS = {"losses": ("loss_G", "loss_D_real", "loss_D_fake"), "regularizers": ("reg_r1", "reg_density", "reg_sr")}


def eta_text(ticks: list[dict], target_kimg: float | None, ended: str = "") -> str:
    """'h:mm:ss' left at the recent images/s; `ended` (why the run is over) once it is, 'done' when the
    last tick reached the target, '-' when unknown."""
    if ended:
        return ended
    if not ticks or not target_kimg:
        return "-"
    last = ticks[-1]
    if last.get("kimg", 0.0) >= target_kimg:
        return "done"
    rate = last.get("images_per_s") or 0.0
    if rate <= 0:
        return "-"
    seconds = max(target_kimg - last.get("kimg", 0.0), 0.0) * 1000 / rate
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 3600:.0f} h"


def run_over(t: TrainingState, run_dir: str, ticks: list[dict], metrics_mtime: float, now: float) -> str:
    """Why the watched run is over ('' while it may still be running): a run started here has exited;
    a run started elsewhere has not logged for STALE_TICKS tick intervals (at least STALE_MIN_S) since
    its metrics file last changed (`metrics_mtime`, 0 when unknown)."""
    if t.run_dir == run_dir and t.exit_code is not None and not t.running:
        return "failed" if t.error else "stopped" if t.exit_code in (130, -2) else "finished"
    times = [e["time_s"] for e in ticks[-2:] if isinstance(e.get("time_s"), (int, float))]
    interval = times[1] - times[0] if len(times) == 2 else 0.0
    quiet = now - metrics_mtime
    if metrics_mtime and quiet > max(STALE_TICKS * interval, STALE_MIN_S):
        return f"no progress for {quiet / 60:.0f} min"
    return ""


class TrainingPanel(Panel):
    name = "Training"
    label_em = 10.5

    def __init__(self) -> None:
        super().__init__()
        self.run_dir = FileField("", "folder", title="Training run directory")
        self.data = FileField("", "open", ("Datasets (.zip)", "*.zip"), "Dataset")
        self.config = "tiny"
        self.kimg, self.snap, self.tick = 20.0, 0.0, 0.0
        self.log_y = False
        self.reader: RunReader | None = None
        self.ticks: list[dict] = []
        self.options: dict = {}
        self.grid = Texture()
        self.grid_path: Path | None = None
        self.snapshot: Path | None = None
        self._next_poll = 0.0
        self._metrics_mtime = 0.0

    def draw(self, state: AppState) -> None:
        t = state.training
        self.run_dir.text = self.run_dir.text or t.run_dir
        self.run_dir.draw("run dir", None)
        imgui.same_line()
        if imgui.button("Watch") or self.run_dir.take_chosen():
            self.watch(state, self.run_dir.text.strip())
        _, t.auto_reload = imgui.checkbox("load new snapshots automatically", t.auto_reload)
        self._process_controls(state)
        if self.reader is None:
            imgui.text_disabled("Watch a run directory to see its curves and grids.")
            return
        last = self.ticks[-1] if self.ticks else {}
        target = self.options.get("kimg")
        info_table([("kimg", f"{last.get('kimg', 0):.2f}" + (f" / {target:g}" if target else "")),
                    ("images/s", f"{last.get('images_per_s', 0):.1f}"),
                    ("ETA", eta_text(self.ticks, target, run_over(state.training, str(self.reader.run_dir),
                                                                  self.ticks, self._metrics_mtime, time.time()))),
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
                xs, ys = series(self.ticks, key)
                if xs:
                    implot.plot_line(key, np.asarray(xs), np.asarray(ys))
        finally:
            implot.end_plot()

    def watch(self, state: AppState, run_dir: str) -> None:
        """Follow a run directory (training.runner.RunReader)."""
        state.training.run_dir = run_dir
        served = state.training.reader
        self.reader = served if served is not None and str(served.run_dir) == run_dir else \
            RunReader(run_dir) if run_dir else None
        self.ticks, self.options, self.grid_path, self.snapshot, self._next_poll = [], {}, None, None, 0.0

    def update(self, state: AppState) -> None:
        """Once a second, visible or not: new metric lines, options, the newest grid and snapshot."""
        if state.training.run_dir and (self.reader is None or str(self.reader.run_dir) != state.training.run_dir):
            self.watch(state, state.training.run_dir)   # a run started from this panel
        if self.reader is None or time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + POLL_SECONDS
        self.ticks = [e for e in self.reader.metrics() if e.get("event") == "tick"]
        try:
            self._metrics_mtime = (self.reader.run_dir / "metrics.jsonl").stat().st_mtime
        except OSError:
            self._metrics_mtime = 0.0
        if not self.options:
            self.options = self.reader.options() or {}
        grid = self.reader.newest_grids().get("image")
        if grid is not None and grid != self.grid_path:
            self._load_grid(grid)
        snapshot = self.reader.newest_snapshot()
        if snapshot is not None and snapshot != self.snapshot:
            self.snapshot = snapshot
            if state.training.auto_reload:
                state.actions.append(OpenModel(str(snapshot), keep_view=state.model.path is not None))

    def _load_grid(self, path: Path) -> None:
        from PIL import Image
        try:
            with Image.open(path) as im:
                self.grid.upload(np.asarray(im.convert("RGB")))
            self.grid_path = path
        except OSError as e:  # a grid being replaced right now: try again at the next poll
            log.warning("cannot read grid %s: %s", path, e)

    def _process_controls(self, state: AppState) -> None:
        t = state.training
        if imgui.tree_node("Start a training run"):
            try:
                with disabled(t.running):
                    self.data.draw("dataset", None)
                    from training.config import PRESETS
                    names = sorted(PRESETS)
                    index = names.index(self.config) if self.config in names else 0
                    _, index = imgui.combo("config", index, names)
                    self.config = names[index]
                    _, self.kimg = imgui.drag_float("kimg", self.kimg, 0.5, 0.1, 1e6, "%.1f", CLAMP)
                    _, self.snap = imgui.drag_float("snapshot every", self.snap, 0.05, 0.0, 1e4, "%.2f kimg", CLAMP)
                    help_marker("0 = the config's default interval. Each snapshot is hot-reloaded here.")
                    _, self.tick = imgui.drag_float("log every", self.tick, 0.01, 0.0, 1e4, "%.2f kimg", CLAMP)
                    help_marker("Metrics-log (tick) interval; 0 = the config's default.")
                    if imgui.button("Start"):
                        self.start(state)
            finally:
                imgui.tree_pop()
        if t.running:
            imgui.text("training running")
            imgui.same_line()
            with disabled(state.job.running):
                if imgui.button("Stop"):
                    state.actions.append(StopTraining())
        elif t.error:
            imgui.text_colored(imgui.ImVec4(1.0, 0.45, 0.4, 1.0), "training failed:")
            imgui.text_wrapped(t.error)
        elif t.exit_code is not None:
            imgui.text_disabled(f"training finished (exit code {t.exit_code})")

    def start(self, state: AppState) -> None:
        """Ask the session to start `main.py train` (training.runner) in the run directory."""
        from training.runner import TrainSpec
        run_dir, data = self.run_dir.text.strip(), self.data.text.strip()
        if not run_dir or not data:
            state.set_status("training needs a run dir and a dataset", error=True)
            return
        spec = TrainSpec(run_dir=run_dir, data=data, config=self.config, kimg=float(self.kimg),
                         snap=float(self.snap) if self.snap > 0 else None,
                         tick=float(self.tick) if self.tick > 0 else None)
        state.actions.append(StartTraining(spec))

    def close(self) -> None:
        self.grid.delete()
