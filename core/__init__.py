"""Triplane Studio's shared library: model, renderer, cameras, checkpoints, exports (no GUI, no training).

Importing it applies the allocator setting the generator's CPU speed depends on (see `core.memory`).
"""
from core.memory import keep_freed_memory

keep_freed_memory()
