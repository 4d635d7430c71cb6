"""Fuzz the checkpoint loaders: seeded mutations of a network pickle and of a .ckpt, loaded in worker
processes with an address-space limit and a time limit per mutation.

Every mutation must end in success or one CheckpointError with a one-line message: no other exception, no
signal, no hang, no memory beyond a bound. Seeded, so a failure is reproduced by its (corpus, seed).

    python scripts/fuzz_checkpoints.py --pickle ../shared/fixtures/eg3d_small/network-snapshot-small.pkl \
        --ckpt assets/default_model.ckpt --mutations 3000 --workers 2

tests/test_fuzz.py runs a few hundred of these in the suite.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIME_LIMIT_S = 20.0
"""Per mutation (a full load and build of the fixture pickle takes about 1 s on a busy 2-core machine)."""
EXTRA_MEMORY = 768 << 20
"""Peak RSS may grow this much beyond a clean load of the base files (plus 3x the mutated file's size)."""


# ---- mutations (deterministic given the base bytes and the seed) ---------------------------------------------
def _opcode_positions(data: bytes) -> list[int]:
    import pickletools
    positions: list[int] = []
    with contextlib.suppress(Exception):  # a truncated base: keep the opcodes read so far
        for _op, _arg, pos in pickletools.genops(data):
            positions.append(pos)
    return positions or [0]


_OPCODES = sorted({op.code.encode("latin-1")[0] for op in __import__("pickletools").opcodes})
_EXTREMES = [b"\xff" * 8, b"\x7f" + b"\xff" * 7, b"\x00" * 8, b"\xff\xff\xff\x7f", b"\x80\x00\x00\x00"]


def mutate_pickle(data: bytes, positions: list[int], rng: random.Random) -> bytes:
    """1-3 structure-aware mutations: opcodes, their arguments, slices, truncation."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos = min(rng.choice(positions) + rng.choice((0, 0, 1, 2, 3, 5)), len(b) - 1)
        kind = rng.randrange(8)
        if kind == 0:
            b[pos] ^= 1 << rng.randrange(8)
        elif kind == 1:
            b[pos] = rng.choice(_OPCODES)
        elif kind == 2:
            ext = rng.choice(_EXTREMES)
            b[pos + 1:pos + 1 + len(ext)] = ext
        elif kind == 3:
            del b[rng.randrange(len(b)):]
        elif kind == 4:
            a = rng.choice(positions)
            n = rng.randint(1, 64)
            b[pos:pos] = b[a:a + n]
        elif kind == 5:
            del b[pos:pos + rng.randint(1, 16)]
        elif kind == 6:
            b[rng.randrange(len(b))] = rng.randrange(256)
        else:
            b[pos] = rng.randrange(256)
        if not b:
            b = bytearray(b"\x80")
    return bytes(b)


def mutate_ckpt(entries: list[tuple[str, bytes]], positions: list[int], rng: random.Random) -> bytes:
    """Mostly a mutated data.pkl inside a valid zip (so the CRCs pass); also records and raw zip bytes."""
    entries = list(entries)
    kind = rng.randrange(10)
    pkl = next(i for i, (name, _) in enumerate(entries) if name.endswith("data.pkl"))
    if kind < 6:
        entries[pkl] = (entries[pkl][0], mutate_pickle(entries[pkl][1], positions, rng))
    elif kind == 6:
        i = rng.randrange(len(entries))
        rec = bytearray(entries[i][1]) or bytearray(b"\x00")
        rec[rng.randrange(len(rec))] ^= 1 << rng.randrange(8)
        entries[i] = (entries[i][0], bytes(rec))
    elif kind == 7:
        i = rng.randrange(len(entries))
        entries[i] = (entries[i][0], entries[i][1][:rng.randrange(len(entries[i][1]) + 1)])
    elif kind == 8:
        del entries[rng.randrange(len(entries))]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, payload in entries:
            zf.writestr(name, payload)
    raw = buf.getvalue()
    if kind == 9:
        b = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        raw = bytes(b)
    return raw


# ---- worker: load mutations, report one JSON line per mutation ---------------------------------------------
class _Timeout(BaseException):
    pass


def _worker(job: dict) -> None:
    import signal

    resource.setrlimit(resource.RLIMIT_AS, (job["address_space"], job["address_space"]))
    import torch

    torch.set_num_threads(1)
    from core.checkpoint import load_generator
    from core.errors import CheckpointError

    bases: dict[str, tuple] = {}
    for corpus, path in job["bases"].items():
        data = Path(path).read_bytes()
        if corpus.startswith("ckpt"):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                entries = [(i.filename, zf.read(i)) for i in zf.infolist()]
            pkl = next(p for n, p in entries if n.endswith("data.pkl"))
            bases[corpus] = (entries, _opcode_positions(pkl))
        else:
            bases[corpus] = (data, _opcode_positions(data))
        load_generator(path) if not corpus.endswith("prefix") else None  # warm up: the clean peak
    base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def on_alarm(signum, frame):
        raise _Timeout()
    signal.signal(signal.SIGALRM, on_alarm)
    tmp = Path(tempfile.mkdtemp(prefix="fuzz13-"))
    for corpus, seed in job["items"]:
        rng = random.Random(f"{corpus}:{seed}")
        base, positions = bases[corpus]
        raw = mutate_ckpt(base, positions, rng) if corpus.startswith("ckpt") else mutate_pickle(base, positions, rng)
        path = tmp / ("m.ckpt" if corpus.startswith("ckpt") else "m.pkl")
        path.write_bytes(raw)
        print(json.dumps({"begin": [corpus, seed]}), flush=True)
        t0 = time.monotonic()
        result = {"corpus": corpus, "seed": seed, "size": len(raw)}
        signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
        try:
            load_generator(path)
            result["outcome"] = "loaded"
        except CheckpointError as e:
            msg = str(e)
            result["outcome"] = "error" if "\n" not in msg and len(msg) < 600 else "bad-message"
            if "not enough memory" in msg:  # the address-space limit was hit: an amplification
                result["outcome"] = "memory"
            result["message"] = msg[:600]
        except _Timeout:
            result["outcome"] = "timeout"
        except BaseException as e:  # noqa: BLE001  (this is what the fuzzer looks for)
            result["outcome"] = "exception"
            result["message"] = f"{type(e).__name__}: {str(e)[:300]}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        result["seconds"] = round(time.monotonic() - t0, 3)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result["peak_mb"] = peak >> 20
        if peak > base_peak + EXTRA_MEMORY + 3 * len(raw):
            result["outcome"] = "memory"
        print(json.dumps(result), flush=True)
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()


def run_fuzz(bases: dict[str, str], counts: dict[str, int], workers: int = 2, seed0: int = 0,
             address_space: int = 4 << 30, timeout_s: float = 3600) -> dict:
    """Run the mutations in `workers` processes -> {'results': [...], 'failures': [...], 'totals': {...}}."""
    items = [(corpus, seed0 + i) for corpus, n in counts.items() for i in range(n)]
    chunks = [items[w::workers] for w in range(workers)]
    results: list[dict] = []
    failures: list[dict] = []
    procs = []
    jobs = tempfile.TemporaryDirectory(prefix="fuzz13-jobs-")
    for w, chunk in enumerate(chunks):
        if not chunk:
            continue
        job = Path(jobs.name) / f"job{w}.json"
        job.write_text(json.dumps({"bases": {c: bases[c] for c in {c for c, _ in chunk}}, "items": chunk,
                                   "address_space": address_space}))
        p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(job)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"})
        procs.append((p, chunk))
    deadline = time.monotonic() + timeout_s
    for p, chunk in procs:
        try:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        begun = None
        done = set()
        for line in out.splitlines():
            rec = json.loads(line)
            if "begin" in rec:
                begun = tuple(rec["begin"])
                continue
            results.append(rec)
            done.add((rec["corpus"], rec["seed"]))
            if rec["outcome"] not in ("loaded", "error"):
                failures.append(rec)
        if p.returncode != 0:
            failures.append({"corpus": begun[0] if begun else None, "seed": begun[1] if begun else None,
                             "outcome": f"worker exit {p.returncode}", "message": err.strip()[-500:]})
        missing = [i for i in chunk if tuple(i) not in done]
        if missing and p.returncode == 0:
            failures.append({"outcome": "missing", "message": f"{len(missing)} mutations not run"})
    jobs.cleanup()
    totals = Counter(r["outcome"] for r in results)
    return {"results": results, "failures": failures, "totals": dict(totals),
            "max_seconds": max((r["seconds"] for r in results), default=0),
            "max_peak_mb": max((r["peak_mb"] for r in results), default=0)}


def prefix_copy(src: str | os.PathLike, dst: str | os.PathLike, nbytes: int) -> Path:
    """The first `nbytes` of a pickle (a fast fuzz base: the structure of G without most tensors)."""
    with open(src, "rb") as f:
        Path(dst).write_bytes(f.read(nbytes))
    return Path(dst)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(json.loads(Path(sys.argv[2]).read_text()))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pickle", default=str(ROOT.parent / "shared/fixtures/eg3d_small/network-snapshot-small.pkl"))
    p.add_argument("--ckpt", default=str(ROOT / "assets/default_model.ckpt"))
    p.add_argument("--mutations", type=int, default=3000, help="total, split over the corpora")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=("pickle-prefix", "pickle", "ckpt"), help="one corpus, all mutations")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        prefix = prefix_copy(args.pickle, Path(tmp) / "prefix.pkl", 2_000_000)
        bases = {"pickle-prefix": str(prefix), "pickle": args.pickle, "ckpt": args.ckpt}
        n = args.mutations
        counts = {"pickle-prefix": n * 4 // 10, "pickle": n * 2 // 10, "ckpt": n - n * 4 // 10 - n * 2 // 10}
        if args.only:
            counts = {args.only: n}
        t0 = time.monotonic()
        report = run_fuzz(bases, counts, args.workers, args.seed)
    per_corpus = Counter((r["corpus"], r["outcome"]) for r in report["results"])
    print(f"{len(report['results'])} mutations in {time.monotonic() - t0:.0f} s: {report['totals']}")
    for (corpus, outcome), count in sorted(per_corpus.items()):
        print(f"  {corpus:<14} {outcome:<10} {count}")
    slowest = max(report["results"], key=lambda r: r["seconds"], default=None)
    if slowest:
        print(f"slowest mutation {slowest['seconds']:.2f} s ({slowest['corpus']} seed {slowest['seed']}: "
              f"{slowest['outcome']} {slowest.get('message', '')[:120]}), largest peak RSS {report['max_peak_mb']} MB")
    for f in report["failures"][:20]:
        print("FAIL", json.dumps(f))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
