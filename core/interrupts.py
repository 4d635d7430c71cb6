"""SIGTERM and Ctrl-C as a stop request that long work honours within seconds, at safe points.

A batch scheduler (SLURM, Kubernetes) sends SIGTERM and kills the job some 30 s later. The CLI's handler
(cli/common.py) raises at once, which stops any Python loop; work that wants to finish tidily (the trainer
saving a resumable snapshot) installs `cooperative()` instead, which only records the signal, and polls
`check()` at safe points. `torch_checks()` adds such points inside torch work: before every module's forward
and in the backward pass at every module output, so one long training step or image grid is cut within
seconds, not waited for. A second signal during cooperative handling raises at once (atomic writes then
leave no partial file).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_received: int | None = None
_shield = 0


class Interrupted(KeyboardInterrupt):
    """Raised by check() once a stop was requested; `signum` names the signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def record(signum: int) -> None:
    """Note a stop request (signal handlers call this)."""
    global _received
    _received = signum


def received() -> int | None:
    """The signal of the pending stop request, or None."""
    return _received


def clear() -> None:
    global _received
    _received = None


def name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_code(signum: int) -> int:
    """The shell's convention for a process stopped by a signal: 128 + its number (130 Ctrl-C, 143 SIGTERM)."""
    return 128 + signum


def check() -> None:
    """A safe point: raise Interrupted if a stop was requested (not inside `shielded()`)."""
    if _received is not None and not _shield:
        raise Interrupted(_received)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A block that safe points do not cut (writing the final snapshot)."""
    global _shield
    _shield += 1
    try:
        yield
    finally:
        _shield -= 1


def _on_signal(signum: int, frame) -> None:
    if _received is not None:  # the second one: stop now
        raise Interrupted(signum)
    record(signum)


@contextlib.contextmanager
def cooperative() -> Iterator[None]:
    """SIGINT/SIGTERM only record a stop request during the block (on the main thread); the handlers that
    were there before are put back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _grad_check(grad):
    check()
    return None


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _forward_pre(module, args) -> None:
    if _on_main_thread():
        check()


def _forward(module, args, output) -> None:
    if not _on_main_thread():
        return
    check()
    if getattr(output, "requires_grad", False) and output.grad_fn is not None:
        output.register_hook(_grad_check)


@contextlib.contextmanager
def torch_checks() -> Iterator[None]:
    """Safe points inside torch work during the block: before and after every module's forward, and in the
    backward pass wherever a module's output gets its gradient (the CPU runs backward on this thread, so the
    signal handler runs there too). Only for work on the main thread, which alone receives signals: the
    hooks are global, and other threads' torch work (a viewer's rendering) must not be cut."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from torch.nn.modules import module as nn_module
    handles = [nn_module.register_module_forward_pre_hook(_forward_pre),
               nn_module.register_module_forward_hook(_forward)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
