"""`bench --modes` on the small model (CPU): each mode's pixels against plain fp32, and mode parsing."""
from __future__ import annotations

import pytest
import torch

from core.bench import FrameMode, run_frame_modes


def test_frame_mode_names_round_trip_and_bad_names_are_refused():
    m = FrameMode.parse("bf16+onechunk+graph")
    assert (m.precision, m.graph, m.compile, m.onechunk) == ("bf16", True, False, True)
    assert FrameMode.parse(m.name) == m
    for bad in ("bf17", "fp32+grph", ""):
        with pytest.raises(ValueError):
            FrameMode.parse(bad)


def test_frame_modes_on_cpu_measure_their_difference_from_fp32():
    modes = [FrameMode.parse(m) for m in ("fp32", "fp32+onechunk", "fp16", "fp32+graph")]
    r = run_frame_modes(torch.device("cpu"), modes, model="small", frames=2, seconds=1, warmup=0,
                        log=lambda _: None)["modes"]
    scenarios = [k for k, v in r["fp32"].items() if isinstance(v, dict)]
    assert len(scenarios) == 3
    for name in scenarios:
        assert r["fp32"][name]["fps"] > 0 and r["fp32"][name]["frames"] >= 1
        assert r["fp32"][name]["diff_vs_fp32"]["max_abs"] == 0  # same path: bit-identical frames
        # one renderer chunk for all rays computes the same pixels (the studio relies on chunking being exact)
        assert r["fp32+onechunk"][name]["diff_vs_fp32"]["max_abs"] <= 1e-5
        # fp16 autocast really ran: round-off shows, but stays small and finite
        half = r["fp16"][name]["diff_vs_fp32"]
        assert 0 < half["max_abs"] < 0.05 and half["nonfinite"] == 0
        assert "CUDA graphs need a CUDA device" in r["fp32+graph"][name]["error"]
