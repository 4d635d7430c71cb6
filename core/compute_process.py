"""Run one long torch computation in a child process that has every CPU core.

The studio leaves a core to its UI thread (torch.set_num_threads(cpu_count - 1)), a second torch thread in a
job thread oversubscribes the cores, and `main.py`'s PASSIVE OpenMP wait policy costs small back-to-back ops a
quarter of their time: on the 2-core machine the camera estimate took 118 s in the studio and 85 s from the
command line (BENCHMARKS.md). A child process computes with all cores and OpenMP's default wait policy while
the studio draws at a reduced rate.

The child is `python -m core.compute_process FILE`: FILE holds a function of our packages ("module:function")
and its arguments (torch.save, read back with weights_only: tensors and plain values only). The child writes one
JSON line per progress tick and one with the result (or the error) on its stdout; the parent kills it on
Cancel, and the child exits by itself when the parent goes away (its stdin closes).
"""
from __future__ import annotations

import importlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import core
from core.errors import StudioError, one_line
from core.progress import Cancelled, Progress

PACKAGES = ("core", "app", "cli", "training", "remote")
"""A child runs functions of these packages only."""
ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.1
"""How often the parent checks for Cancel while it waits for the child's next line."""
_running = 0
_running_lock = threading.Lock()


def running() -> int:
    """How many children compute now (the studio draws less often meanwhile)."""
    return _running


def run_in_child(name: str, function: str, args: dict[str, Any], progress: Progress | None = None,
                 on_tick: Callable[[dict[str, Any]], None] | None = None, threads: int | None = None) -> Any:
    """`function` ("module:function(args: dict, tick) -> JSON-able result") in a child process with `threads`
    torch threads (None: torch's default, one per core) -> its result; each tick(**fields) of the child
    arrives as on_tick(fields). Cancel on `progress`, or an exception here (Ctrl+C, SIGTERM), kills the
    child; its error, or its end without a result, is a StudioError of one line that starts with `name`."""
    global _running
    if function.split(".")[0] not in PACKAGES:
        raise ValueError(f"{name}: {function!r} is not a function of our packages")
    with _running_lock:
        _running += 1
    try:
        return _run(name, function, args, progress or Progress(), on_tick, threads)
    finally:
        with _running_lock:
            _running -= 1


def _run(name: str, function: str, args: dict[str, Any], progress: Progress,
         on_tick: Callable[[dict[str, Any]], None] | None, threads: int | None) -> Any:
    with tempfile.TemporaryDirectory(prefix="triplane-job-") as tmp:
        job, err_path = Path(tmp) / "job.pt", Path(tmp) / "stderr.txt"
        torch.save({"function": function, "args": args, "threads": threads}, job)
        paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # our packages first, as main.py sees them
        if not core.WAIT_POLICY_GIVEN:   # OpenMP's own default: spin a little, then sleep (BENCHMARKS.md)
            env.pop("OMP_WAIT_POLICY", None)
            env.setdefault("GOMP_SPINCOUNT", "10000")
        with open(err_path, "wb") as err:
            child = subprocess.Popen([sys.executable, "-m", "core.compute_process", str(job)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=err, env=env)
        lines: queue.Queue[bytes | None] = queue.Queue()

        def read() -> None:
            with child.stdout:
                for line in child.stdout:
                    lines.put(line)
            lines.put(None)

        threading.Thread(target=read, name=f"child-{name}", daemon=True).start()
        try:
            while True:
                try:
                    line = lines.get(timeout=POLL_S)
                except queue.Empty:
                    if progress.cancelled():
                        raise Cancelled(f"{name} stopped") from None
                    continue
                if line is None:
                    child.wait()
                    tail = err_path.read_text(errors="replace").strip().splitlines()
                    raise StudioError(f"{name}: the child process ended (exit code {child.returncode})"
                                      + (f": {tail[-1][:200]}" if tail else ""))
                message = json.loads(line)
                if "tick" in message and on_tick is not None:
                    on_tick(message["tick"])
                elif "error" in message:
                    raise StudioError(f"{name}: {message['error']}")
                elif "result" in message:
                    return message["result"]
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
            child.stdin.close()


def _exit_with_parent() -> None:
    """Exit as soon as the parent is gone: its end of our stdin closes (it never writes to it)."""
    sys.stdin.buffer.read()
    os._exit(3)


def main(argv: list[str]) -> int:
    """The child: run the job in FILE, answer on the original stdout (all else printed goes to stderr)."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    threading.Thread(target=_exit_with_parent, daemon=True).start()

    def say(**message: Any) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    try:
        job = torch.load(argv[0], weights_only=True)
        if job["threads"]:
            torch.set_num_threads(job["threads"])
        module, function = job["function"].split(":")
        if module.split(".")[0] not in PACKAGES:
            raise ValueError(f"{module} is not one of our packages")
        result = getattr(importlib.import_module(module), function)(job["args"], lambda **t: say(tick=t))
    except Exception as e:  # noqa: BLE001  one line to the parent, whatever the computation raised
        say(error=one_line(e, 300))
        return 1
    say(result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
