"""Time to refuse hash-flood pickles: {'G_ema': container} of integers that all share one hash, filled in each
way the unpickler allows (tests/test_checkpoint.py builds them; BENCHMARKS.md has the figures).

    python -m scripts.bench_hash_flood
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from core.errors import CheckpointError
from core.network_pickle import read_network_pickle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_checkpoint import _flood  # noqa: E402

KINDS = ("set", "set-batches", "set-small-batches", "frozenset", "set-call", "frozenset-call")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            for n in (50_000, 200_000):
                path = Path(tmp) / f"{kind}-{n}.pkl"
                path.write_bytes(_flood(kind, n))
                t0 = time.perf_counter()
                try:
                    read_network_pickle(path)
                    outcome = "LOADED"
                except CheckpointError as e:
                    outcome = str(e).split(": ", 1)[-1]
                print(f"{kind:18} {n:>8,} items {path.stat().st_size / 1e6:4.1f} MB "
                      f"{time.perf_counter() - t0:6.2f} s  {outcome}")


if __name__ == "__main__":
    main()
