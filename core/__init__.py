"""Triplane Studio's shared library: model, renderer, cameras, checkpoints, exports (no GUI, no training).

`import core` changes two process-wide settings, so that a script or notebook gets the CPU speed of
`python main.py`: glibc's allocator keeps large freed blocks in the process (`core.memory`), and OpenMP
threads sleep instead of spinning while they wait (OMP_WAIT_POLICY=PASSIVE unless already set; OpenMP reads
it when torch loads, so it takes effect when `core` is imported before torch). TRIPLANE_PROCESS_SETTINGS=0
in the environment leaves both alone (TRIPLANE_KEEP_FREED_MEMORY=0 only the allocator).
"""
import os

from core.memory import keep_freed_memory

WAIT_POLICY_GIVEN = "OMP_WAIT_POLICY" in os.environ or os.environ.get("TRIPLANE_PROCESS_SETTINGS", "1") == "0"
"""The OpenMP wait policy is the user's, not ours (core.compute_process leaves it to its children)."""
if os.environ.get("TRIPLANE_PROCESS_SETTINGS", "1") != "0":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()
