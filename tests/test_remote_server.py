"""`main.py serve` in a subprocess on 127.0.0.1, used as a client on another machine would use it: frames
compared with `main.py render`'s PNGs, hostile connections, many clients, vanishing clients, model opening
confined to the served folder, jobs with downloads, and the server being headless."""
from __future__ import annotations

import math
import pickle
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DEVICE
from remote_helpers import ROOT, raw_client, rss_of, start_server
from websockets.exceptions import ConnectionClosed

from core.config import RenderOptions
from core.engine import Latent, RenderRequest
from core.imaging import depth_to_uint8, to_uint8
from core.progress import Progress
from remote import protocol as P
from remote.client import RemoteEngine, RemoteError

MODEL = ROOT / "assets" / "default_model.ckpt"
BOXCYL = ROOT / "tests" / "data" / "boxcyl_model.ckpt"
SMALL = dict(resolution=32, superresolution=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    shutil.copy(MODEL, root / "model.ckpt")
    (root / "sub").mkdir()
    shutil.copy(BOXCYL, root / "sub" / "boxcyl.ckpt")
    (root / "escape.ckpt").symlink_to(BOXCYL)  # a link out of the served folder
    token_file = tmp_path_factory.mktemp("cfg") / "serve.token"
    server = start_server(root / "model.ckpt", token_file, root.parent / "serve.log")
    server.root = root
    yield server
    assert server.stop() == 130  # Ctrl-C
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]


@pytest.fixture
def client(served):
    engine = RemoteEngine(served.url, served.token)
    yield engine
    engine.close()


def _render_label(yaw_deg: float, pitch_deg: float, options: RenderOptions) -> tuple[float, ...]:
    from core.cameras import frontal_label
    label = frontal_label(options, None, yaw=math.radians(yaw_deg), pitch=math.radians(pitch_deg))
    return tuple(float(x) for x in label[0].tolist())


def _png(path: Path) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB"))


def test_serve_prints_the_address_the_attach_command_and_the_tunnel(served):
    import os
    import stat
    assert stat.S_IMODE(os.stat(served.token_file).st_mode) == 0o600  # created by serve
    line = served.line
    assert line.startswith("serving model.ckpt at ws://127.0.0.1:")
    assert f"python main.py --connect {served.url} --token-file " in line
    assert f"ssh -fN -L {served.port}:127.0.0.1:{served.port} " in line and "scp " in line
    assert "\n" not in line


def test_a_frame_at_rest_is_what_render_writes(served, client, tmp_path):
    """Lossless both ways (raw bytes and PNG): the image, the raw image and the depth PNG of `main.py render`
    for the same seed, psi and camera, bit for bit."""
    out = tmp_path / "render"
    r = subprocess.run([sys.executable, "main.py", "render", str(MODEL), "--seeds", "3", "--yaw", "30", "--pitch",
                        "10", "--psi", "0.7", "--mode", "image,image_raw,image_depth", "--no-grid",
                        "--device", str(DEVICE), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    options = RenderOptions.from_kwargs(client.model["rendering_kwargs"])
    request = RenderRequest(latent=Latent(seed=3, psi=0.7), camera=_render_label(30, 10, options))
    for encoding in ("raw", "png"):
        frame = client.render(request, encoding=encoding)
        assert frame.error is None and frame.request is request
        name = out / "seed0003_yaw+30_pitch+10_{}.png"
        assert np.array_equal(to_uint8(frame.image), _png(str(name).format("image"))), encoding
        assert np.array_equal(to_uint8(frame.image_raw), _png(str(name).format("image_raw"))), encoding
        assert np.array_equal(depth_to_uint8(frame.depth, False, frame.opacity), _png(str(name).format("image_depth")))
    assert client.stats()["frame_bytes"] > 0 and client.stats()["rtt_ms"] is not None


def test_a_jpeg_preview_is_close_and_smaller(client):
    request = RenderRequest(latent=Latent(seed=1))
    exact = client.render(request, encoding="raw")
    raw_bytes = client.stats()["frame_bytes"]
    preview = client.render(request, encoding="jpeg")
    assert client.stats()["frame_bytes"] < raw_bytes / 2
    diff = np.abs(to_uint8(preview.image).astype(int) - to_uint8(exact.image).astype(int))
    assert 0 < diff.mean() < 4


def test_stale_requests_are_dropped_latest_wins(client):
    before = client.server_stats()["rendered"]
    requests = [RenderRequest(latent=Latent(seed=100 + i), **SMALL) for i in range(30)]
    for request in requests:
        client.submit(request)
    assert client.wait_idle(120)
    assert client.latest().request is requests[-1] and client.latest().error is None
    rendered = client.server_stats()["rendered"] - before
    assert 1 <= rendered < 30, rendered


def test_a_bad_request_value_comes_back_as_a_frame_error(client):
    frame = client.render(RenderRequest(latent=Latent(seed=1), resolution=1000))
    assert frame.error and "limit" in frame.error
    frame = client.render(RenderRequest(latent=Latent(source="nobody")))
    assert frame.error and "nobody" in frame.error
    assert client.render(RenderRequest(**SMALL)).error is None  # still served


def _wait_for(condition, what: str, limit: float = 60.0):
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def _closed_without_answer(sock: socket.socket) -> bytes:
    """Everything the server sent before closing (b'' for nothing)."""
    sock.settimeout(15)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_hostile_connections_are_closed_while_another_client_is_served(served, client):
    stop, frames, errors = threading.Event(), [0], []

    def keep_rendering():
        i = 0
        while not stop.is_set():
            i += 1
            frame = client.render(RenderRequest(latent=Latent(seed=i % 3), **SMALL), timeout=60)
            errors.extend([frame.error] if frame.error else [])
            frames[0] += 1

    worker = threading.Thread(target=keep_rendering)
    worker.start()
    _wait_for(lambda: frames[0] > 0, "the first frame")
    log_start = len(served.log_text())
    rss_start = rss_of(served.proc.pid)
    try:
        for payload in (bytes(range(256)) * 64, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", served.port)) as sock:
                try:
                    sock.sendall(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                assert b"101 Switching" not in _closed_without_answer(sock)
        bad_hellos = [{"type": "hello", "protocol": 1, "token": "0" * 32},      # wrong token
                      {"type": "hello", "protocol": 1},                       # missing token
                      {"type": "render", "token": served.token}]              # not a hello
        for hello in bad_hellos:
            ws = raw_client(served, hello)
            with pytest.raises(ConnectionClosed) as e:
                ws.recv(timeout=15)
            assert e.value.rcvd is None  # no close frame, no message: nothing answered
        slow = raw_client(served)  # asks for frames and never reads them
        for i in range(100):
            slow.send(P.encode_text({"type": "render", "encoding": "raw", "request": P.to_json(
                RenderRequest(latent=Latent(seed=i % 3)))}))
        hostile = ["{not json", P.encode_text({"type": "shutdown"}), "[" * 20000 + "]" * 20000,
                   b"\x00\x00\x00\x05hello", P.pack({"type": "upload_chunk", "id": "x", "offset": 0}, [b"data"]),
                   "x" * (P.MAX_MESSAGE + 1)]
        for message in hostile:
            ws = raw_client(served)
            ws.send(message)
            with pytest.raises(ConnectionClosed) as e:
                while True:
                    ws.recv(timeout=15)  # (a frame or a pong may come first)
            assert e.value.rcvd is not None and e.value.rcvd.code in (1008, 1009), (message[:20], e.value)
        frames_during = frames[0]
        _wait_for(lambda: frames[0] > frames_during + 2, "frames after the attacks")  # still served
        slow.close()
    finally:
        stop.set()
        worker.join(60)
    assert not errors
    log = served.log_text()[log_start:]
    assert log.count("refused 127.0.0.1") == len(bad_hellos), log
    assert log.count("closing client") == len(hostile) - 1, log  # the oversized one: closed by the transport
    assert rss_of(served.proc.pid) - rss_start < 200 * 2**20
    stats = client.server_stats()
    assert stats["clients"] == 1 and stats["waiting_renders"] == 0


def test_twenty_clients_at_once_are_all_served(served, client):
    references = {s: client.render(RenderRequest(latent=Latent(seed=s), **SMALL)) for s in range(4)}
    results: dict[int, object] = {}

    def one(i: int) -> None:
        try:
            engine = RemoteEngine(served.url, served.token)
            try:
                results[i] = engine.render(RenderRequest(latent=Latent(seed=i % 4), **SMALL), timeout=240)
            finally:
                engine.close()
        except Exception as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(results) == list(range(20))
    for i, frame in results.items():
        assert not isinstance(frame, Exception) and frame.error is None, (i, frame)
        assert np.array_equal(to_uint8(frame.image_raw), to_uint8(references[i % 4].image_raw)), i


def test_a_client_vanishing_mid_frame_frees_what_it_held(served, client):
    ws = raw_client(served)
    ws.send(P.encode_text({"type": "upload_begin", "id": "u", "kind": "image", "name": "a.png", "size": 10}))
    ws.send(P.encode_text({"type": "render", "request": P.to_json(
        RenderRequest(latent=Latent(seed=77), resolution=64))}))
    ws.send(P.encode_text({"type": "job", "id": "v", "kind": "ExportVideo", "fields": {
        "path": "vanish.mp4", "frames": 2000, "request": P.to_json(RenderRequest(**SMALL))}}))
    _wait_for(lambda: client.server_stats()["jobs"] == 1, "the job to start")
    ws.socket.shutdown(socket.SHUT_RDWR)  # gone, without a closing handshake
    ws.socket.close()
    stats = _wait_for(lambda: (s := client.server_stats())["clients"] == 1 and s["jobs"] == 0 and s, "cleanup")
    assert stats["waiting_renders"] == 0 and stats["uploads"] == 0 and stats["upload_files"] == 0
    assert not list((served.root / "exports").glob("*vanish*")) if (served.root / "exports").exists() else True


def test_models_open_only_from_the_served_folder_or_as_uploads(served, client, tmp_path):
    for name, why in (("../model.ckpt", "'..'"), ("/etc/passwd", "relative"), ("escape.ckpt", "leads outside"),
                      ("nothing.ckpt", "no such file")):
        with pytest.raises(RemoteError, match=why):
            client.open(name)
    assert sorted(client.files("models")) == ["model.ckpt", "sub/boxcyl.ckpt"]
    default = client.render(RenderRequest(latent=Latent(seed=5), **SMALL))
    model = client.open("sub/boxcyl.ckpt")
    assert model["name"] == "sub/boxcyl.ckpt" and client.model["rows"]["file"] == "sub/boxcyl.ckpt"
    other = client.render(RenderRequest(latent=Latent(seed=5), **SMALL))
    assert other.error is None and not np.array_equal(to_uint8(other.image_raw), to_uint8(default.image_raw))

    class Boom:
        def __reduce__(self):
            import os
            return os.system, ("touch pwned",)

    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps({"G_ema": Boom()}, protocol=2))
    with pytest.raises(RemoteError, match="system"):
        client.open_upload(hostile)
    assert not (ROOT / "pwned").exists() and not (served.root / "pwned").exists()
    progress = Progress()
    model = client.open_upload(MODEL, progress)
    assert model["name"] == "upload:default_model.ckpt" and progress.done == progress.total == MODEL.stat().st_size
    again = client.render(RenderRequest(latent=Latent(seed=5), **SMALL))
    assert np.array_equal(to_uint8(again.image_raw), to_uint8(default.image_raw))  # the same bytes as served
    client.open(None)
    assert client.model["name"] == "model.ckpt"


def test_jobs_export_into_the_served_folder_and_download_with_progress(served, client, tmp_path):
    import trimesh
    job = client.job("ExportMesh", {"path": "meshes/seed4.ply", "latent": {"seed": 4},
                                    "options": {"resolution": 48}})
    assert job.wait(240) and job.error is None, job.error
    assert job.result["files"] == ["meshes/seed4.ply"] and job.progress.total > 0
    progress = Progress()
    local = client.download("meshes/seed4.ply", tmp_path / "seed4.ply", progress)
    assert local.read_bytes() == (served.root / "exports" / "meshes" / "seed4.ply").read_bytes()
    assert progress.done == progress.total == local.stat().st_size
    assert len(trimesh.load(local).faces) > 100
    for fields, why in (({"path": "../x.ply"}, "'..'"), ({"path": "x.exe"}, "must end in"),
                        ({"path": "y.ply", "options": {"resolution": 4096}}, "resolution")):
        job = client.job("ExportMesh", fields)
        assert job.wait(60) and why in job.error, job.error
    with pytest.raises(RemoteError, match="no such file"):
        client.download("../model.ckpt".replace("../", ""), tmp_path / "m.ckpt")
    video = client.job("ExportVideo", {"path": "long.mp4", "frames": 2000,
                                       "request": P.to_json(RenderRequest(**SMALL))})
    _wait_for(lambda: video.progress.done > 0, "video frames")
    video.cancel()
    assert video.wait(60) and video.cancelled
    assert not [p for p in (served.root / "exports").iterdir() if "long" in p.name]
    planes = client.job("InspectPlanes", {"latent": {"seed": 4}, "channel": 3})
    assert planes.wait(60) and planes.error is None
    assert planes.arrays["scalar"].shape[0] == 3 and len(planes.result["stats"]) == 3


def test_an_uploaded_image_inverts_into_a_latent_the_client_renders(served, client, tmp_path):
    from PIL import Image
    target = client.render(RenderRequest(latent=Latent(seed=6)))
    image = tmp_path / "target.png"
    Image.fromarray(to_uint8(target.image)).save(image)
    upload = client.upload_image(image)
    job = client.job("StartInversion", {"image": upload, "camera": "angles", "yaw_deg": 0, "pitch_deg": 0,
                                        "options": {"steps": 6, "w_avg_samples": 200}})
    assert job.wait(300) and job.error is None, job.error
    assert "reconstruction" in job.previews and job.previews["reconstruction"].shape == (128, 128, 3)
    assert len(job.arrays["losses"]) == job.result["steps"] > 0
    inverted = client.render(RenderRequest(latent=Latent(source=job.result["source"])))
    assert inverted.error is None
    save = client.job("SaveInversion", {"source": job.result["source"], "what": "latent", "path": "inv/latent.npz"})
    assert save.wait(60) and save.error is None, save.error
    from core.latents import load_latent
    latent = load_latent(client.download("inv/latent.npz", tmp_path / "latent.npz"))
    assert latent.ws.shape == (1, client.model["num_ws"], client.model["w_dim"])


def test_the_invert_panels_camera_check_and_framing_run_as_jobs(client, tmp_path):
    """PreviewInvertView sends the model's mean w at yaw/pitch (what the server streams for psi 0 there);
    StartInversion's frame re-frames an uploaded photo; bad fields come back as one-line job errors."""
    from PIL import Image
    options = RenderOptions.from_kwargs(client.model["rendering_kwargs"])
    job = client.job("PreviewInvertView", {"yaw_deg": 30.0, "pitch_deg": -12.5})
    assert job.wait(120) and job.error is None, job.error
    frame = client.render(RenderRequest(latent=Latent(seed=0, psi=0.0), camera=_render_label(30.0, -12.5, options)))
    assert np.array_equal(job.arrays["view"], to_uint8(frame.image))
    photo = np.full((150, 220, 3), 128, np.uint8)   # grey backdrop, the object off centre
    photo[90:140, 150:200] = (200, 60, 40)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    upload = client.upload_image(tmp_path / "photo.png")
    run = client.job("StartInversion", {"image": upload, "camera": "angles", "frame": 0.64,
                                        "options": {"steps": 1, "w_avg_samples": 20}})
    assert run.wait(300) and run.error is None, run.error
    assert "centred and scaled to 0.64" in run.result["image_preparation"]
    for kind, fields, why in (("PreviewInvertView", {"yaw_deg": 30.0, "pitch_deg": 120}, "pitch_deg"),
                              ("EstimateInvertCamera", {"image": upload, "frame": 3}, "frame"),
                              ("EstimateInvertCamera", {"image": "nothing"}, "uploaded")):
        bad = client.job(kind, fields)
        assert bad.wait(60) and why in bad.error and "\n" not in bad.error, bad.error


def test_serving_imports_no_gl_glfw_or_imgui(tmp_path):
    """A bare GPU node has no GL: run `serve` in a fresh interpreter, render a frame and run a job through it,
    then look at what that interpreter imported."""
    from remote_helpers import free_port
    port, token = free_port(), tmp_path / "serve.token"
    code = f"""
import os, sys, threading, time
import main
from core.engine import RenderRequest
from remote.client import RemoteEngine, read_token
threading.Thread(target=main.main, args=(["serve", {str(MODEL)!r}, "--port", "{port}", "--token-file",
                                          {str(token)!r}],), daemon=True).start()
for _ in range(600):
    try:
        engine = RemoteEngine("ws://127.0.0.1:{port}", read_token({str(token)!r}), reconnect=False)
        break
    except Exception:
        time.sleep(0.2)
assert engine.render(RenderRequest(resolution=32)).error is None
job = engine.job("InspectPlanes", {{"channel": 0}})
assert job.wait(60) and job.error is None, job.error
print(sorted(m for m in sys.modules if m.split(".")[0] in ("imgui_bundle", "glfw", "OpenGL", "pycuda")
             or (m.startswith("app.") and m not in ("app.actions", "app.handlers"))), flush=True)
os._exit(0)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"serving default_model.ckpt at ws://127.0.0.1:{port}" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_idle_connections_time_out_and_clients_reconnect_after_a_server_restart(tmp_path):
    """The client keeps its model and its newest request across a restart of the server (same port)."""
    from remote_helpers import free_port
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    shutil.copy(MODEL, root / "model.ckpt")
    shutil.copy(BOXCYL, root / "sub" / "boxcyl.ckpt")
    token, port = tmp_path / "serve.token", free_port()
    first = start_server(root / "model.ckpt", token, tmp_path / "first.log", "--idle-timeout", "2", port=port)
    engine = RemoteEngine(first.url, first.token, ping_s=0.5)
    try:
        silent = raw_client(first)
        with pytest.raises(ConnectionClosed) as e:
            while True:
                silent.recv(timeout=20)
        assert e.value.rcvd.code == 1000
        _wait_for(lambda: "idle for 2 s" in first.log_text(), "the server's log line")
        engine.open("sub/boxcyl.ckpt")
        before = engine.render(RenderRequest(latent=Latent(seed=2), **SMALL))
        assert engine.status == "connected" and engine.reconnects == 0  # pinging: never idle
        first.proc.kill()
        first.proc.wait()
        first.proc.stdout.close()
        _wait_for(lambda: engine.status == "disconnected, reconnecting", "the client to notice")
        request = RenderRequest(latent=Latent(seed=2), **SMALL)
        submission = engine.submit(request)  # while no server runs
        second = start_server(root / "model.ckpt", token, tmp_path / "second.log", port=port)
        try:
            _wait_for(lambda: engine.latest_submission >= submission, "the frame after reconnecting", 120)
            frame = engine.latest()
            assert engine.reconnects == 1 and engine.status == "connected"
            assert engine.model["name"] == "sub/boxcyl.ckpt"  # opened again, before the request was sent
            assert frame.request is request and frame.error is None
            assert np.array_equal(to_uint8(frame.image_raw), to_uint8(before.image_raw))
        finally:
            engine.close()
            assert second.stop() == 130
    finally:
        engine.close()
        first.stop()


def test_bad_serve_arguments_are_one_line(tmp_path):
    loose = tmp_path / "loose.token"
    loose.write_text("a" * 32)
    loose.chmod(0o644)
    cases = [([str(tmp_path / "missing.ckpt")], "no such file"), ([str(tmp_path)], "without network-snapshot"),
             ([str(MODEL), "--token-file", str(loose)], "chmod 600"), ([str(MODEL), "--port", "70000"], "65535")]
    with socket.socket() as busy:  # --host 0.0.0.0 warns; a port in use is one line too
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        cases.append(([str(MODEL), "--host", "0.0.0.0", "--port", str(busy.getsockname()[1])], "address"))
        for args, why in cases:
            if "--token-file" not in args:
                args = [*args, "--token-file", str(tmp_path / "serve.token")]
            r = subprocess.run([sys.executable, "main.py", "serve", *args, "--device", "cpu"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
            lines = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
            assert r.returncode == 2 and len(lines) == 1 and why in lines[0], r.stderr
            assert "Traceback" not in r.stderr and r.stdout == ""
            if "0.0.0.0" in args:
                assert "warning: --host 0.0.0.0 accepts connections from every network" in r.stderr
