"""The studio attached to `main.py serve` against the studio's local engine, on the default model:
frames per second while dragging (preview rung) and at rest (super-resolved frames), and the latency a
full frame at rest adds over the link.

    .venv/bin/python -m scripts.bench_remote [--seconds 6] [--link loopback|netem|proxy] [--rtt-ms 30] [--mbit 50]
    DISPLAY=:N .venv/bin/python -m scripts.bench_remote --studio    # the studio itself, local vs --connect

Requests are the studio's own ladder (app.state.render_ladder): the drag preview and the final SR frame,
the camera orbiting a little for every request. "streamed": a request every 1/60 s, as the studio submits
while the mouse moves (latest wins: stale requests are dropped), counting the frames that come back;
"one at a time": the next request only after the previous frame arrived. Local runs use
core.worker.RenderWorker in this process; attached runs a `serve` subprocess and remote.client.RemoteEngine.

--link netem|proxy (root): the server runs in a network namespace behind a veth pair. netem delays each
direction by rtt/2 and limits the rate; where the kernel lacks netem, proxy limits the rate with tbf and
adds the delay in a userspace TCP proxy inside the namespace (TCP then does not see the delay itself, so
slow start after idle is not modelled: an optimistic figure, reported as such).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "assets" / "default_model.ckpt"
TARGET_FPS = 30.0
"""--studio: the Render panel's target frame rate (the preview size adapts to the measured round trip)."""
NS, HOST_IF, NS_IF, HOST_IP, NS_IP = "triplane-bench", "tpbench0", "tpbench1", "10.231.0.1", "10.231.0.2"


def ladder(options, nrr: int, yaw: float, dragging: bool):
    """The studio's request for a view `yaw` radians off frontal: the drag preview or the final SR frame."""
    from app.state import AppState, render_ladder
    from core.cameras import OrbitCamera
    state = AppState()
    state.model.neural_resolution = nrr
    state.camera = dataclasses.replace(OrbitCamera.from_options(options), yaw=yaw)
    state.interaction.dragging = dragging
    return render_ladder(state)[0 if dragging else -1]


def streamed(worker, make, seconds: float, **submit) -> float:
    """Frames per second coming back while a new request is submitted every 1/60 s."""
    seen, frames, i = None, 0, 0
    start = time.monotonic()
    while (now := time.monotonic()) - start < seconds:
        i += 1
        worker.submit(make(i), **submit)
        frame = worker.latest()
        if frame is not None and frame is not seen:
            seen, frames = frame, frames + 1
            assert frame.error is None, frame.error
        time.sleep(max(0.0, start + i / 60 - time.monotonic()))
    return frames / (now - start)


def one_at_a_time(render, make, count: int, pause: float = 0.0) -> list[float]:
    """Seconds from request to frame, one request at a time (after `pause` seconds of quiet each)."""
    times = []
    for i in range(count):
        time.sleep(pause)
        start = time.perf_counter()
        frame = render(make(i))
        times.append(time.perf_counter() - start)
        assert frame.error is None, frame.error
    return times


def local_render(worker):
    def render(request):
        worker.submit(request)
        worker.wait_idle()
        return worker.latest()
    return render


def measure(target, options, nrr: int, seconds: float, encodings: dict[str, str]) -> dict[str, float]:
    """The figures for one target: a RenderWorker (local) or a RemoteEngine (attached)."""
    remote = hasattr(target, "stats")
    preview = lambda i: ladder(options, nrr, 0.3 * (i % 40) / 40, True)
    full = lambda i: ladder(options, nrr, 0.3 * (i % 40) / 40, False)
    render = (lambda r: target.render(r, encodings["full"])) if remote else local_render(target)
    for make in (preview, full):  # warm caches (ws, planes) and the connection
        one_at_a_time(render, make, 3)
    out = {}
    kw = (lambda rung: {"encoding": encodings[rung]}) if remote else (lambda rung: {})
    out["drag preview, streamed (fps)"] = streamed(target, preview, seconds, **kw("preview"))
    out["full frame, streamed (fps)"] = streamed(target, full, seconds, **kw("full"))
    render_preview = (lambda r: target.render(r, encodings["preview"])) if remote else render
    out["drag preview, one at a time (fps)"] = 1 / statistics.median(one_at_a_time(render_preview, preview, 20))
    out["full frame, one at a time (fps)"] = 1 / statistics.median(one_at_a_time(render, full, 10))
    out["full frame at rest after 1 s idle (ms)"] = 1000 * statistics.median(one_at_a_time(render, full, 8, 1.0))
    if remote:
        target.render(full(0), encodings["full"])
        out["bytes per full frame"] = target.stats()["frame_bytes"]
        target.render(preview(0), encodings["preview"])
        out["bytes per preview"] = target.stats()["frame_bytes"]
        out["ping round trip (ms)"] = target.stats()["rtt_ms"]
    return out


def measure_studio(studio, seconds: float) -> dict[str, float]:
    """The studio's own loop (app.studio.Studio, local or attached): while the camera turns a little every
    UI frame as a left drag turns it (the session's preview rung, its size adapted to TARGET_FPS),
    the frames shown per second and the UI frames per second; then the time from the last input to the
    final frame on screen (the settle delay after input, then raw and SR at full size)."""
    s = studio.state
    s.view.target_fps = TARGET_FPS

    def settle() -> float:
        start = time.monotonic()
        while not studio.settled:
            studio.step()
            if time.monotonic() - start > 120:
                raise SystemExit(f"the studio did not settle: {s.status}")
        return time.monotonic() - start

    def drag(length: float) -> tuple[float, float]:
        shown, steps, start = studio.frames_shown, 0, time.monotonic()
        while time.monotonic() - start < length:
            s.camera.orbit(0.01, 0.0)
            s.interaction.touch()
            studio.step()
            steps += 1
        elapsed = time.monotonic() - start
        return (studio.frames_shown - shown) / elapsed, steps / elapsed

    settle()
    drag(1.0)   # warm up (and let the preview size adapt)
    settle()
    out = {}
    out["studio: frames shown while dragging (fps)"], out["studio: UI frames while dragging (fps)"] = drag(seconds)
    rests = []
    for _ in range(5):
        drag(0.2)
        rests.append(settle())
    out["studio: last input to final frame (ms)"] = 1000 * statistics.median(rests)
    out["studio: preview scale after dragging"] = s.perf.preview_scale
    return out


def sh(*cmd: str, ns: bool = False) -> None:
    subprocess.run((["ip", "netns", "exec", NS] if ns else []) + list(cmd), check=True)


def link_up(kind: str, rtt_ms: float, mbit: float) -> None:
    """A veth pair to a namespace, each direction delayed by rtt/2 (netem) and rate-limited."""
    link_down()
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
    sh("ip", "link", "set", NS_IF, "netns", NS)
    sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", HOST_IF)
    sh("ip", "link", "set", HOST_IF, "up")
    sh("ip", "addr", "add", f"{NS_IP}/24", "dev", NS_IF, ns=True)
    sh("ip", "link", "set", NS_IF, "up", ns=True)
    sh("ip", "link", "set", "lo", "up", ns=True)
    for dev, ns in ((HOST_IF, False), (NS_IF, True)):
        if kind == "netem":
            sh("tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", f"{rtt_ms / 2}ms", "rate", f"{mbit}mbit",
               ns=ns)
        else:
            sh("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{mbit}mbit", "burst", "32kb", "limit",
               "1mb", ns=ns)


def link_down() -> None:
    subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)


async def _delay_proxy(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    """Forward TCP connections to `target`, each byte `delay` seconds late in each direction."""
    async def pipe(reader, writer):
        queue: asyncio.Queue = asyncio.Queue()

        async def read():
            while data := await reader.read(65536):
                queue.put_nowait((time.monotonic() + delay, data))
            queue.put_nowait((time.monotonic() + delay, b""))

        task = asyncio.create_task(read())
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()
        await task

    async def handle(reader, writer):
        up_reader, up_writer = await asyncio.open_connection(*target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    server = await asyncio.start_server(handle, *listen)
    async with server:
        await server.serve_forever()


def start_server(token: Path, host: str, port: int, ns: bool, device: str) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "main.py"), "serve", str(MODEL), "--host", host, "--port", str(port),
           "--token-file", str(token), "--device", device]
    proc = subprocess.Popen((["ip", "netns", "exec", NS] if ns else []) + cmd, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    while "serving" not in proc.stdout.readline():
        if proc.poll() is not None:
            raise SystemExit("serve did not start")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc


def studio_rounds(url: str, token: Path, tmp: Path, args) -> list[tuple[dict, dict]]:
    """measure_studio on a local Studio and on an attached one, alternately, `args.rounds` times."""
    import torch

    from app.attached import attach
    from app.studio import Studio
    rounds = []
    for r in range(args.rounds):
        figures = []
        for attached in (False, True):
            backend = attach(url, str(token)) if attached else None
            studio = Studio(url if attached else str(MODEL), torch.device(args.device), window_size=(1000, 640),
                            settings_dir=tmp / f"settings-{r}-{attached}", backend=backend)
            try:
                figures.append(measure_studio(studio, args.seconds))
            finally:
                studio.close()
        rounds.append((figures[0], figures[1]))
        print(f"round {r + 1} done, load {os.getloadavg()[0]:.2f}", flush=True)
    return rounds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0, help="length of each streamed run")
    p.add_argument("--rounds", type=int, default=3, help="local and attached measured alternately this often")
    p.add_argument("--link", choices=("loopback", "netem", "proxy"), default="loopback")
    p.add_argument("--rtt-ms", type=float, default=30.0)
    p.add_argument("--mbit", type=float, default=50.0)
    p.add_argument("--preview", default="jpeg", help="encoding of drag previews attached (jpeg, png, raw)")
    p.add_argument("--full", default="png", help="encoding of full frames attached (png, raw)")
    p.add_argument("--device", default="cpu", help="where the server and the local engine render (cpu, cuda)")
    p.add_argument("--studio", action="store_true", help="measure the studio's own loop (needs a display, e.g. "
                   "Xvfb): a Studio on the local engine against a Studio attached with --connect's backend")
    p.add_argument("--run-proxy", nargs=3, metavar=("LISTEN", "TARGET", "DELAY_S"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run_proxy:
        listen, target = ((h, int(port)) for h, port in (a.rsplit(":", 1) for a in args.run_proxy[:2]))
        asyncio.run(_delay_proxy(listen, target, float(args.run_proxy[2])))
        return 0

    import torch

    from core.checkpoint import load_generator
    from core.engine import RenderEngine
    from core.worker import RenderWorker
    from remote.client import RemoteEngine
    G = load_generator(MODEL, args.device)
    options, nrr = G.options, int(G.neural_rendering_resolution)
    print(f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}", flush=True)
    worker = RenderWorker(RenderEngine(G, args.device))
    encodings = {"preview": args.preview, "full": args.full}
    helpers: list[subprocess.Popen] = []
    rounds: list[tuple[dict, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        token = Path(tmp) / "token"
        try:
            if args.link == "loopback":
                helpers.append(start_server(token, "127.0.0.1", 7990, ns=False, device=args.device))
                url = "ws://127.0.0.1:7990"
            else:
                link_up(args.link, args.rtt_ms, args.mbit)
                if args.link == "netem":
                    helpers.append(start_server(token, NS_IP, 7990, ns=True, device=args.device))
                else:
                    helpers.append(start_server(token, "127.0.0.1", 7990, ns=True, device=args.device))
                    helpers.append(subprocess.Popen(
                        ["ip", "netns", "exec", NS, sys.executable, "-m", "scripts.bench_remote", "--run-proxy",
                         f"{NS_IP}:7991", "127.0.0.1:7990", str(args.rtt_ms / 2000)], cwd=ROOT))
                    time.sleep(1.0)
                url = f"ws://{NS_IP}:{7990 if args.link == 'netem' else 7991}"
            from remote.client import read_token
            if args.studio:
                worker.close()
                rounds = studio_rounds(url, token, Path(tmp), args)
            else:
                engine = RemoteEngine(url, read_token(token))
                for r in range(args.rounds):  # alternating, so that a change of the machine's load hits both
                    rounds.append((measure(worker, options, nrr, args.seconds, {}),
                                   measure(engine, options, nrr, args.seconds, encodings)))
                    print(f"round {r + 1} done, load {os.getloadavg()[0]:.2f}", flush=True)
                engine.close()
        finally:
            worker.close()
            for proc in reversed(helpers):
                proc.terminate()
                proc.wait(30)
            if args.link != "loopback":
                link_down()
    link = "loopback" if args.link == "loopback" else f"{args.link}, {args.rtt_ms:g} ms RTT, {args.mbit:g} Mbit/s"
    frames = "PNG frames" if args.studio else f"previews {args.preview}, full frames {args.full}"
    print(f"| figure (median of {args.rounds} rounds) | local | attached ({link}; {frames}) "
          "| attached / local (median of the rounds' ratios) |")
    print("|---|---|---|---|")
    for key in rounds[0][1]:
        mine = [local.get(key) for local, _ in rounds]
        theirs = [attached[key] for _, attached in rounds]
        if mine[0] is None:
            print(f"| {key} | | {statistics.median(theirs):.1f} | |")
            continue
        ratios = statistics.median(t / m for t, m in zip(theirs, mine))
        print(f"| {key} | {statistics.median(mine):.1f} | {statistics.median(theirs):.1f} | {ratios:.2f} |")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
