"""Absurd command lines get one line at parse time; out-of-memory gets one line naming the setting to lower;
SIGTERM and Ctrl-C stop a command promptly and leave no hidden temp files; stale ones are removed next time."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT

import main
from cli.common import run_guarded, writable_dir

MODEL = str(ROOT / "assets" / "default_model.ckpt")


@pytest.mark.parametrize("argv, option", [
    (["render", MODEL, "--seeds", "0-99999999999", "--out", "o"], "--seeds"),
    (["render", MODEL, "--seeds", "0-20000", "--out", "o"], "--seeds"),
    (["render", MODEL, "--seeds", "0", "--out", "o", "--device", "bogus"], "--device"),
    (["render", MODEL, "--seeds", "0", "--out", "o", "--psi", "nan"], "--psi"),
    (["render", MODEL, "--seeds", "0", "--out", "o", "--yaw", "nan"], "--yaw"),
    (["render", MODEL, "--seeds", "0", "--out", "o", "--views", "0"], "--views"),
    (["render", MODEL, "--seeds", "0", "--out", "o", "--fov", "180"], "--fov"),
    (["video", MODEL, "--seeds", "0", "--out", "o.mp4", "--fps", "inf"], "--fps"),
    (["video", MODEL, "--seeds", "0", "--out", "o.mp4", "--grid", "1000x1000"], "--grid"),
    (["video", MODEL, "--seeds", "0", "--out", "o.mp4", "--frames", "-1"], "--frames"),
    (["train", "--data", "d", "--out", "o", "--grid", "1000x1000"], "--grid"),
    (["train", "--data", "d", "--out", "o", "--grid", "17x16"], "--grid"),
    (["mesh", MODEL, "--seeds", "0", "--out", "o", "--res", "100000"], "--res"),
    (["mesh", MODEL, "--seeds", "0", "--out", "o", "--level", "nan"], "--level"),
    (["dataset", "synth", "--out", "o", "--res", "100000"], "--res"),
    (["dataset", "synth", "--out", "o", "--radius", "nan"], "--radius"),
    (["dataset", "synth", "--out", "o", "--pitch-deg", "nan,1"], "--pitch-deg"),
    (["dataset", "synth", "--out", "o", "--count", "0"], "--count"),
    (["--frames", "inf"], "--frames"),
    (["--device", "gpu7"], "--device"),
])
def test_absurd_arguments_are_one_line_at_parse_time(capsys, argv, option):
    with pytest.raises(SystemExit) as e:
        main.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: argument {option}"), err


@pytest.mark.parametrize("exc", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB\n"
                                                        "frame #0: c10::Error"), MemoryError()])
def test_out_of_memory_is_one_line_naming_the_setting(capsys, exc):
    def fn(args):
        raise exc
    assert run_guarded(fn, argparse.Namespace(batch=64, config="ffhq", res=None)) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out of memory" in err and "--batch" in err and "--config" in err


def test_swallowed_interrupt_is_raised_again(tmp_path):
    """trimesh's optional imports catch BaseException: a Ctrl-C there must still stop the command."""
    done = tmp_path / "completed"
    code = f"""
import argparse, time
from cli.common import run_guarded
def fn(args):
    print("ready", flush=True)
    for _ in range(50):  # like trimesh's imports: every interrupt is swallowed here
        try:
            time.sleep(0.02)
        except BaseException:
            pass
    for _ in range(300):
        time.sleep(0.01)
    open({str(done)!r}, "w").write("ran to completion")
raise SystemExit(run_guarded(fn, argparse.Namespace()))
"""
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err.strip() == "interrupted"
    assert not done.exists()


def test_sigterm_during_video_leaves_no_temp_files(tmp_path):
    out = tmp_path / "v.mp4"
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "video", MODEL, "--seeds", "0", "--frames", "2000",
                          "--res", "16", "--device", "cpu", "--out", str(out)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".v.*.tmp.mp4")) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(tmp_path.glob(".v.*.tmp.mp4")), "the video never started"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and err.strip().splitlines()[-1] == "terminated"
    assert sorted(x.name for x in tmp_path.iterdir()) == []


@pytest.fixture
def plain_ctrl_c():
    """Python's own SIGINT handler (run_guarded, called in-process above, leaves its re-raising one)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupt_while_ffmpeg_starts_orphans_nothing(tmp_path, monkeypatch, plain_ctrl_c):
    """Ctrl-C between fork and exec of ffmpeg (inside Popen) used to leave ffmpeg unknown to the writer, so
    nothing stopped it and it could write its file after the cleanup (CI caught one in the test above)."""
    from core.fileio import atomic_path
    from core.imaging import Mp4Writer
    started, fork_exec = [], subprocess._fork_exec

    def interrupted_fork_exec(*args):
        started.append(fork_exec(*args))
        signal.raise_signal(signal.SIGINT)
        return started[-1]

    monkeypatch.setattr(subprocess, "_fork_exec", interrupted_fork_exec)
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "v.mp4") as tmp:
        writer = Mp4Writer(tmp)
        try:
            writer.append(np.zeros((16, 16, 3), np.uint8))
        finally:
            writer.close()
    with pytest.raises(ChildProcessError):  # the writer stopped ffmpeg and reaped it
        os.waitpid(started[0], os.WNOHANG)
    assert sorted(x.name for x in tmp_path.iterdir()) == []


def test_deferred_signals_hold_an_interrupt_until_the_block_ends(plain_ctrl_c):
    from core.fileio import deferred_signals
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals():
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.01)
            reached.append("end of block")
        reached.append("after block")
    assert reached == ["end of block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            pass
        pid -= 1


def test_stale_temp_files_of_a_killed_run_are_removed_next_time(tmp_path):
    dead = _dead_pid()
    stale = [tmp_path / f".seed0000.{dead}-k2j3.tmp.ply", tmp_path / f".v.cameras.{dead}-abc.tmp.npy"]
    live = tmp_path / f".v.{os.getppid()}-xyz.tmp.mp4"  # a running process's file stays
    for p in (*stale, live):
        p.write_bytes(b"partial")
    writable_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]


def test_interrupt_handled_inside_a_command_is_not_raised_again(tmp_path):
    """A command that catches Ctrl-C itself and returns normally exits normally (no late re-raise)."""
    code = """
import argparse, os, signal, time
from cli.common import run_guarded
def fn(args):
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        return 7
raise SystemExit(run_guarded(fn, argparse.Namespace()) + (time.sleep(1) or 0))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 7 and r.stderr == ""


def test_closed_output_pipe_stops_quietly():
    """`main.py info X | head -1`: the reader goes away; no 'Broken pipe' error line, exit 141 like other tools."""
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "info", str(ROOT / "assets" / "default_model.ckpt")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    p.stdout.close()  # before the child has written anything (importing torch takes a second)
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == ""
