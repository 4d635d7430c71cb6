"""Triplane Studio's shared library: model, renderer, cameras, checkpoints, exports (no GUI, no training).

Importing it gives a script or notebook the same CPU speed as `python main.py`: the allocator setting of
`core.memory`, and OpenMP threads that sleep instead of spinning while they wait (OMP_WAIT_POLICY, read
when torch loads OpenMP: effective when `core` is imported before torch; an explicit setting wins).
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from core.memory import keep_freed_memory  # noqa: E402  (after the environment it must not precede)

keep_freed_memory()
