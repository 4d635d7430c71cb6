"""`main.py serve RUN_DIR` while `main.py train` writes snapshots into it (tiny sizes): the client sees the
newer snapshots hot-reloaded (its frames then equal a local render of the newest snapshot), the curves and
the image grids of the run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
from remote_helpers import ROOT, start_server
from test_remote_server import _wait_for

from core.checkpoint import load_generator
from core.engine import Latent, RenderEngine, RenderRequest
from core.imaging import to_uint8
from remote.client import RemoteEngine
from training.loop import list_snapshots
from training.synthetic import SynthSettings, write_synthetic_dataset


def test_a_served_run_reloads_new_snapshots_and_serves_curves_and_grids(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", 8, 32, seed=1, settings=SynthSettings(kinds=("box",),
                                                                                            max_prims=1))
    run = tmp_path / "run"
    trainer = subprocess.Popen(
        [sys.executable, "main.py", "train", "--data", str(data), "--out", str(run), "--config", "tiny", "--batch",
         "2", "--kimg", "1", "--snap", "0.002", "--tick", "0.002", "--swd-images", "0", "--grid", "1x1",
         "--device", "cpu"], cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    served = engine = None
    try:
        _wait_for(lambda: list_snapshots(run) or trainer.poll() is not None, "the first snapshot", 180)
        assert list_snapshots(run), trainer.stderr.read().decode()[-2000:]
        served = start_server(run, tmp_path / "serve.token", tmp_path / "serve.log")
        assert served.line.startswith("serving run at ws://127.0.0.1:")
        engine = RemoteEngine(served.url, served.token)
        first = engine.model["generation"]
        _wait_for(lambda: engine.model["generation"] > first, "a hot reload", 180)
        assert "reloaded" in served.log_text()
        trainer.send_signal(signal.SIGINT)  # stops with a last snapshot
        assert trainer.wait(120) in (0, 130)
        newest = list_snapshots(run)[-1].name
        _wait_for(lambda: engine.model["file"] == newest, f"the client to see {newest}", 60)
        request = RenderRequest(latent=Latent(seed=1), superresolution=False)
        frame = engine.render(request)
        local = RenderEngine(load_generator(run / newest, "cpu"), "cpu").render(request)
        assert frame.error is None and np.array_equal(to_uint8(frame.image_raw), to_uint8(local.image_raw))

        summary = engine.run_metrics(0)
        ticks = [e for e in summary["entries"] if e.get("event") == "tick"]
        assert ticks and summary["snapshot"] == newest and summary["metrics"] == len(summary["entries"])
        assert summary["options"]["batch"] == 2
        assert engine.run_metrics(len(summary["entries"]))["entries"] == []
        name, grid = engine.run_grid("image")
        assert name.startswith("fakes") and grid.shape[2] == 3 and grid.std() > 0
        _wait_for(lambda: engine.run is not None and engine.run["snapshot"] == newest, "run_changed")
    finally:
        if trainer.poll() is None:
            trainer.kill()
        trainer.wait()
        trainer.stderr.close()
        if engine is not None:
            engine.close()
        if served is not None:
            assert served.stop() == 130
