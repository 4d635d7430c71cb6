"""Fuzzing the checkpoint loaders: a few hundred seeded mutations of the fixture pickle and of a .ckpt, loaded in
two worker processes under an address-space limit and a per-mutation time limit (scripts/fuzz_checkpoints.py).
Every mutation must load or end in one CheckpointError of one line: no other exception, no signal, no hang, no
peak memory beyond the bound. The larger offline run and its totals are in the README's safety section."""
from __future__ import annotations

import importlib.util

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("fuzz_checkpoints", ROOT / "scripts" / "fuzz_checkpoints.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

COUNTS = {"pickle-prefix": 200, "ckpt": 160, "pickle": 16}


def test_mutated_checkpoints_end_in_one_line_checkpoint_errors(tmp_path, snapshot_pkl):
    prefix = fuzz.prefix_copy(snapshot_pkl, tmp_path / "prefix.pkl", 2_000_000)
    bases = {"pickle-prefix": str(prefix), "pickle": str(snapshot_pkl), "ckpt": str(ROOT / "assets/default_model.ckpt")}
    report = fuzz.run_fuzz(bases, COUNTS, workers=2, seed0=0, timeout_s=600)
    assert report["failures"] == []
    assert len(report["results"]) == sum(COUNTS.values())
    assert report["totals"].get("error", 0) > 0.8 * sum(COUNTS.values())  # the mutations really break files
