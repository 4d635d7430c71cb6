"""GPU proof in one call: CUDA parity, frame rates, training speed and the CUDA-GL texture path.

    python3 -m scripts.gpu_check [--device cuda] [--out DIR] [--budget SECONDS] [--quick]   (repo root)

Runs on a bare machine whose python has torch, numpy, pillow (and, for the GL section, PyOpenGL:
scripts/gpu_check.sh installs carried wheels). Every section runs in its own subprocess with its own
time limit, so one that fails, hangs or crashes records that and the others still run. Results go to
DIR/gpu_check.json (rewritten after every section, so a run cut short keeps what finished) and the
sections' output to DIR/gpu_check.log. DIR defaults to $OUT, else ./gpu_out.

Sections:
  env      torch/CUDA/driver versions, nvidia-smi
  parity   tests/test_parity.py on the device: every stage of the fixture generator against the original
           implementation's CPU results (shared/fixtures/eg3d_small), TF32 off
  bench    core.bench.run_frame_modes (as `main.py bench --modes`) on the ffhq512-128-size model: fps per
           frame mode
  interop  an EGL (or $DISPLAY GLX) context; the studio's TextureUploader with the CUDA-GL copy and
           with the host copy: same pixels?, milliseconds per 512² upload
  train    images/s of training steps (training.bench) for the tiny and ffhq presets, fp32 and the preset's
           mixed precision, and of the default model's recipe at several batch sizes
  invert   single-image inversion of the default model on the device (camera given: W+ then PTI; camera
           estimated: W+ after search and refinement) against the same given-camera run on the CPU:
           novel-view PSNR, camera error, seconds
  serve    `main.py serve` on the device, clients on the CPU side: the suite's remote tests (frames equal
           `render` on the device) and attached vs local frames/s (scripts/bench_remote.py)
  mesh     textured GLB export on the device (decoder and views baking), read back with trimesh; phase
           times of an ffhq512-size model (scripts/bench_textured_mesh.py)
--quick shrinks everything (small bench model, few frames) to prove the script end to end on a CPU.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

# As main.py: OpenMP threads that spin while waiting are many times slower on a shared CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("env", "parity", "bench", "interop", "train", "invert", "serve", "mesh")
# Upper limits in seconds per section (--budget, 420 s by default, caps the sum); --quick uses them too.
BUDGETS = {"env": 20, "parity": 60, "bench": 200, "interop": 45, "train": 120, "invert": 90, "serve": 90,
           "mesh": 90}
# Frame modes, in groups that share one process (section_runs), each with its own time limit in seconds.
BENCH_GROUPS = [
    (["fp32", "tf32", "bf16", "fp16"], 70),
    (["bf16+graph", "fp16+graph", "fp32+graph", "bf16+graph+onechunk"], 65),
    (["bf16+compile+graph"], 65),
]
TRAIN_RUNS = [("tiny", "fp32"), ("tiny", "mixed"), ("ffhq", "fp32"), ("ffhq", "mixed")]
SWEEP_BATCHES = "8,32,64,128"  # the default model's recipe: how images/s grow with the batch on one device


def fixture_dir() -> Path | None:
    """The eg3d_small fixtures: $TRIPLANE_SHARED, shared/ in the checkout, ../shared, or .gpucheck/."""
    candidates = [Path(os.environ["TRIPLANE_SHARED"])] if os.environ.get("TRIPLANE_SHARED") else []
    candidates += [ROOT / "shared", ROOT.parent / "shared", ROOT / ".gpucheck"]
    for base in candidates:
        d = base / "fixtures" / "eg3d_small"
        if (d / "cases.pt").is_file() and (d / "state_dict.pt").is_file() and (d / "config.json").is_file():
            return d
    return None


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


# ---- sections (each runs in a child process: `gpu_check.py --section NAME`) ---------------------------

def section_env(args) -> dict:
    import torch
    out = {"python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "cuda_available": torch.cuda.is_available(),
           "platform": platform.platform(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count,
                   capability=f"{p.major}.{p.minor}")
    for mod in ("numpy", "PIL", "OpenGL", "cuda.bindings", "cupy", "pycuda", "triton"):
        try:
            m = __import__(mod, fromlist=["__version__"])
            out[f"module {mod}"] = getattr(m, "__version__", "present")
        except Exception as e:  # missing or broken: record which
            out[f"module {mod}"] = f"missing ({first_line(e)})"
    if torch.cuda.is_available():
        try:
            out["ceilings"] = ceilings(torch)
        except Exception as e:  # the rest of the section still counts
            out["ceilings"] = {"error": first_line(e)}
    if shutil.which("nvidia-smi"):
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,"
                            "power.limit", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        out["nvidia-smi"] = (r.stdout or r.stderr).strip()
    return out


def ceilings(torch) -> dict:
    """The two rates METHOD.md asks for first: device copy bandwidth and a large bf16 matrix product
    (median seconds per call through core.bench.median_time)."""
    from core.bench import median_time
    cuda = torch.device("cuda")
    src = torch.rand(2**30, device=cuda)  # 4 GiB of random float32, freed before the matrices
    dst = torch.empty_like(src)
    copy_s = median_time(lambda: dst.copy_(src), 5, cuda)
    src = dst = None
    a, b = (torch.randn(8192, 8192, device=cuda, dtype=torch.bfloat16) for _ in range(2))
    mm_s = median_time(lambda: a @ b, 10, cuda)
    return {"device copy TB/s (read + write)": round(2 * 4 * 2**30 / copy_s / 1e12, 2),
            "bf16 8192³ matmul TFLOP/s": round(2 * 8192**3 / mm_s / 1e12, 1)}


def pytest_on_device(args, tests: list[str], keyword: str | None = None) -> dict:
    """The suite's own tests on the device (TRIPLANE_TEST_DEVICE, tests/conftest.py): one entry per test,
    passed / failed (with its first line) / skipped (with the reason)."""
    import xml.etree.ElementTree as ET
    env = {"TRIPLANE_TEST_DEVICE": args.device}
    if (d := fixture_dir()) is not None:
        env["TRIPLANE_SHARED"] = str(d.parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        run = run_child([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests,
                         *(["-k", keyword] if keyword else []), f"--junitxml={report}"], args.section_budget, env=env)
        if not report.is_file():
            return {"error": f"pytest wrote no report ({run.get('error') or run['rc']})"}
        results: dict[str, str] = {}
        for case in ET.parse(report).iter("testcase"):
            outcome = "passed"
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    message = (node.get("message") or "").strip().splitlines()
                    outcome = f"{'failed' if tag != 'skipped' else 'skipped'}: {message[0] if message else ''}"
            results[case.get("name")] = outcome
    failed = [k for k, v in results.items() if v.startswith("failed")]
    return {"device": args.device, "tests": results, "passed": sum(v == "passed" for v in results.values()),
            "failed": failed, "pass": run["rc"] == 0 and not failed}


def section_parity(args) -> dict:
    """tests/test_parity.py on the device: every stage of the fixture generator against the original's CPU
    results, TF32 off."""
    if fixture_dir() is None:
        return {"skipped": "fixtures not found (shared/fixtures/eg3d_small, ../shared, .gpucheck/ or "
                           "$TRIPLANE_SHARED); scripts/gpu_prepare.sh copies them into .gpucheck/"}
    return pytest_on_device(args, ["tests/test_parity.py" + ("::test_mapping" if args.quick else "")])


SERVE_TESTS = ("frame_at_rest or jpeg_preview or stale_requests or twenty_clients or vanishing "
               "or jobs_export or serving_imports")


def section_serve(args) -> dict:
    """`main.py serve` on the device with clients on the CPU side: the suite's remote tests with the server on
    the device (a frame at rest equals `main.py render` on the device bit for bit, latest wins, 20 clients,
    jobs and downloads), then frames/s attached vs the local engine (scripts/bench_remote.py)."""
    out = {"tests": pytest_on_device(args, ["tests/test_remote_server.py"], "test_a_frame" if args.quick
                                     else SERVE_TESTS)}
    cmd = [sys.executable, "-m", "scripts.bench_remote", "--device", args.device, "--rounds", "1",
           "--seconds", "1" if args.quick else "3"]
    out["bench_remote"] = run_child(cmd, args.section_budget)
    return out


def section_mesh(args) -> dict:
    """Textured mesh export on the device: the mesh command's views baking for the default model, read back
    with trimesh, and scripts/bench_textured_mesh.py's phase times for an ffhq512-size model. No decimation
    (--faces): pymeshlab's 106 MB wheel does not fit the device call's 64 MB."""
    import numpy as np
    import trimesh
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for source in ("decoder", "views"):
            cmd = [sys.executable, "main.py", "mesh", "assets/default_model.ckpt", "--seeds", "0", "--format", "glb",
                   "--texture", "256" if args.quick else "1024", "--texture-from", source, "--device", args.device,
                   "--res", "64" if args.quick else "256", "--out", f"{tmp}/{source}"]
            entry = run_child(cmd, args.section_budget / 3)
            glb = Path(tmp, source, "seed0000.glb")
            if glb.is_file():
                geometry = next(iter(trimesh.load(glb, process=False).geometry.values()))
                texture = geometry.visual.material.baseColorTexture
                entry.update(faces=len(geometry.faces), uv=len(geometry.visual.uv), texture=list(texture.size),
                             texture_mean_rgb=[round(float(v), 1) for v in
                                               np.asarray(texture.convert("RGB")).reshape(-1, 3).mean(0)])
            out[f"default model, {source}"] = entry
    cmd = [sys.executable, "-m", "scripts.bench_textured_mesh", "--model", "default" if args.quick else "ffhq512",
           "--faces", "0", "--texture-from", "views", "--device", args.device] + (["--res", "64"] if args.quick else [])
    out["bench_textured_mesh"] = run_child(cmd, args.section_budget / 3)
    return out


def section_bench(args) -> dict:
    """One group of frame modes through core.bench.run_frame_modes; the result file is rewritten after every
    scenario, so a group killed at its time limit keeps the figures it finished."""
    import torch

    from core.bench import FrameMode, machine_description, run_frame_modes
    device = torch.device(args.device)
    model, frames, seconds = ("small", 5, 2.0) if args.quick else ("ffhq512", 200, 2.5)
    machine = machine_description(device)

    def save(results: dict) -> None:
        write_result(args.result, {"machine": machine, "results": results})
    results = run_frame_modes(device, [FrameMode.parse(m) for m in args.modes.split(",")], model, frames, seconds,
                              on_update=save)
    return {"machine": machine, "results": results}


def bench_summary(groups: dict) -> dict:
    """fps per mode and scenario, plus the fastest mode for the 512² orbit frame."""
    table: dict[str, dict] = {}
    orbit: dict[str, float] = {}
    for g in groups.values():
        for mode, scen in g.get("results", {}).get("modes", {}).items():
            for name, r in scen.items():
                if isinstance(r, dict):
                    table.setdefault(mode, {})[name] = (
                        f"{r['fps']:.1f} fps, max|Δ| vs fp32 {r['diff_vs_fp32']['max_abs']:.1e}"
                        f"{', NON-FINITE' if r['diff_vs_fp32']['nonfinite'] else ''}"
                        if "fps" in r else r.get("error", "?"))
                    if name.startswith("orbit") and "fps" in r and not r["diff_vs_fp32"]["nonfinite"]:
                        orbit[mode] = round(r["fps"], 1)
    best = max(orbit, key=orbit.get) if orbit else None
    return {"fps": table, "fastest orbit mode": best, "fastest orbit fps": orbit.get(best),
            "goal 60 fps reached by": sorted(m for m, f in orbit.items() if f >= 60)}


# ---- interop ----------------------------------------------------------------------------------------

def egl_context():
    """A current OpenGL 3.3 core context without a window: EGL device platform (the GPU), else the
    default display; returns a description. Needs PYOPENGL_PLATFORM=egl before OpenGL is imported."""
    import ctypes

    from OpenGL import EGL
    dpy, how = None, ""
    try:
        from OpenGL.EGL.EXT.device_enumeration import eglQueryDevicesEXT
        from OpenGL.EGL.EXT.platform_device import EGL_PLATFORM_DEVICE_EXT
        devices = (EGL.EGLDeviceEXT * 8)()
        count = EGL.EGLint()
        if eglQueryDevicesEXT(8, devices, ctypes.pointer(count)) and count.value:
            dpy = EGL.eglGetPlatformDisplayEXT(EGL_PLATFORM_DEVICE_EXT, devices[0], None)
            how = f"EGL device 0 of {count.value}"
    except Exception as e:  # extension missing: fall back to the default display
        how = f"no EGL device enumeration ({first_line(e)}); "
    if not dpy:
        dpy = EGL.eglGetDisplay(EGL.EGL_DEFAULT_DISPLAY)
        how += "EGL default display"
    major, minor = EGL.EGLint(), EGL.EGLint()
    if not EGL.eglInitialize(dpy, ctypes.pointer(major), ctypes.pointer(minor)):
        raise RuntimeError(f"eglInitialize failed ({how})")
    attrs = [EGL.EGL_SURFACE_TYPE, EGL.EGL_PBUFFER_BIT, EGL.EGL_RENDERABLE_TYPE, EGL.EGL_OPENGL_BIT,
             EGL.EGL_RED_SIZE, 8, EGL.EGL_GREEN_SIZE, 8, EGL.EGL_BLUE_SIZE, 8, EGL.EGL_ALPHA_SIZE, 8, EGL.EGL_NONE]
    config, n = EGL.EGLConfig(), EGL.EGLint()
    if not EGL.eglChooseConfig(dpy, (EGL.EGLint * len(attrs))(*attrs), ctypes.pointer(config), 1,
                               ctypes.pointer(n)) or n.value < 1:
        raise RuntimeError("eglChooseConfig found no RGBA8 pbuffer config for desktop OpenGL")
    surface = EGL.eglCreatePbufferSurface(dpy, config, (EGL.EGLint * 5)(EGL.EGL_WIDTH, 16, EGL.EGL_HEIGHT, 16,
                                                                        EGL.EGL_NONE))
    EGL.eglBindAPI(EGL.EGL_OPENGL_API)
    ctx_attrs = [EGL.EGL_CONTEXT_MAJOR_VERSION, 3, EGL.EGL_CONTEXT_MINOR_VERSION, 3,
                 EGL.EGL_CONTEXT_OPENGL_PROFILE_MASK, EGL.EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT, EGL.EGL_NONE]
    ctx = EGL.eglCreateContext(dpy, config, EGL.EGL_NO_CONTEXT, (EGL.EGLint * len(ctx_attrs))(*ctx_attrs))
    if not ctx or not EGL.eglMakeCurrent(dpy, surface, surface, ctx):
        raise RuntimeError(f"could not make an OpenGL 3.3 core context current ({how})")
    return f"{how}, EGL {major.value}.{minor.value}"


def glx_context():
    """A hidden GLFW window on $DISPLAY (Xvfb with the NVIDIA GLX vendor, say)."""
    import glfw
    if not glfw.init():
        raise RuntimeError("glfw.init failed")
    for hint, value in ((glfw.VISIBLE, False), (glfw.CONTEXT_VERSION_MAJOR, 3), (glfw.CONTEXT_VERSION_MINOR, 3),
                        (glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)):
        glfw.window_hint(hint, value)
    window = glfw.create_window(64, 64, "gpu_check", None, None)
    if not window:
        raise RuntimeError("glfw could not create a window")
    glfw.make_context_current(window)
    return f"GLFW window on {os.environ.get('DISPLAY')}"


def read_texture(texture_id: int, w: int, h: int):
    """The texture's RGBA8 pixels as [h, w, 4], in memory order (row 0 = the first uploaded row)."""
    import numpy as np
    import OpenGL.GL as gl
    fbo = int(gl.glGenFramebuffers(1))
    gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, fbo)
    gl.glFramebufferTexture2D(gl.GL_FRAMEBUFFER, gl.GL_COLOR_ATTACHMENT0, gl.GL_TEXTURE_2D, texture_id, 0)
    gl.glPixelStorei(gl.GL_PACK_ALIGNMENT, 1)
    data = gl.glReadPixels(0, 0, w, h, gl.GL_RGBA, gl.GL_UNSIGNED_BYTE)
    gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, 0)
    gl.glDeleteFramebuffers(1, [fbo])
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    return np.frombuffer(data, np.uint8).reshape(h, w, 4)


def section_interop(args) -> dict:
    """The studio's TextureUploader: interop (device-to-device) against host copy, pixels and time."""
    import torch
    out: dict = {"PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM")}
    out["context"] = glx_context() if os.environ.get("PYOPENGL_PLATFORM") != "egl" else egl_context()
    import OpenGL.GL as gl

    from app.gl import Texture
    from app.interop import TextureUploader, to_rgba8
    out["GL"] = " | ".join(gl.glGetString(k).decode() for k in (gl.GL_VENDOR, gl.GL_RENDERER, gl.GL_VERSION))
    device = torch.device(args.device)
    size = 128 if args.quick else 512
    gen = torch.Generator().manual_seed(3)
    base = torch.rand(3, size // 8, size // 8, generator=gen) * 2 - 1
    image = torch.nn.functional.interpolate(base[None], size=(size, size), mode="bilinear")[0]
    image = (image + 0.05 * torch.randn(3, size, size, generator=gen)).to(device)  # gradients + noise
    opacity = torch.rand(1, size // 4, size // 4, generator=gen).to(device)
    expected = to_rgba8(image, opacity).cpu().numpy()
    uploaders = {"host copy": TextureUploader(torch.device("cpu")), "device copy": TextureUploader(device)}
    n = 20 if args.quick else 200
    for name, up in uploaders.items():
        tex = Texture()
        r: dict = {"path_before": up.path, "reason": up.reason}
        try:
            up.upload_rgb(image, tex, opacity)
            got = read_texture(tex.id, size, size)
            r["path"], r["after_first_upload_reason"] = up.path, up.reason
            r["same_pixels_as_expected"] = bool((got == expected).all())
            r["max_abs_pixel_diff"] = int(abs(got.astype(int) - expected.astype(int)).max())
            for reps in (5, n):  # a warm-up, then the timed uploads
                t = time.perf_counter()
                for _ in range(reps):
                    up.upload_rgb(image, tex, opacity)
                gl.glFinish()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            r["ms_per_upload"] = (time.perf_counter() - t) / n * 1000
            r["uploads_timed"], r["size"] = n, f"{size}x{size} RGBA8 (from a [3,{size},{size}] frame on {device})"
            r["path_after_timing"] = up.path
        except Exception as e:
            r["error"] = first_line(e)
            r["traceback"] = traceback.format_exc(limit=4)
        out[name] = r
        tex.delete()
    if device.type == "cuda" and not out["device copy"].get("path", "").startswith("CUDA-GL"):
        out["device copy"]["note"] = "the device path fell back to a host copy: see reason"
    return out


# ---- training ---------------------------------------------------------------------------------------

def section_train(args) -> dict:
    """Images/s of training steps (training.bench) for one recipe and precision, or a batch sweep."""
    import torch

    from training.bench import step_trainer, time_steps
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        if args.batches:  # the default model's recipe at several batch sizes, fp32
            out: dict = {"recipe": "default-model", "precision": "fp32"}
            for batch in [int(b) for b in args.batches.split(",")]:
                trainer = step_trainer("default-model", Path(tmp) / f"data{batch}", Path(tmp) / f"run{batch}",
                                       device, batch, precision="fp32", images=128)
                out[f"batch {batch}"] = time_steps(trainer, 10**6, warmup=3, max_seconds=args.section_budget
                                                   / (3 * len(args.batches.split(","))))
                trainer.close()
            return out
        batch = {"tiny": 8, "ffhq": 4}[args.preset]  # ffhq: the original's 32 over 8 GPUs = 4 per GPU
        t0 = time.perf_counter()
        trainer = step_trainer(args.preset, Path(tmp) / "data", Path(tmp) / "run", device, batch,
                               precision=args.precision, images=2 * batch)
        print(f"{args.preset} {args.precision}: trainer built {time.perf_counter() - t0:.1f} s", flush=True)
        first = time_steps(trainer, 1)
        print(f"{args.preset} {args.precision}: first step {first['step_s'][0]:.1f} s", flush=True)
        timing = time_steps(trainer, 2 if args.quick else 16, warmup=1 if args.quick else 3,
                            max_seconds=args.section_budget * 0.6)
        trainer.close()
    return {"preset": args.preset, "precision": args.precision, "first_step_s": first["step_s"][0], **timing,
            "half_precision_in_effect": bool({"float16", "bfloat16"} & set(timing["activation_dtypes"])),
            "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}}


# ---- orchestration ----------------------------------------------------------------------------------

def section_invert(args) -> dict:
    """scripts/bench_invert.py's protocol on one seed of the default model: the device against the CPU."""
    import math

    import torch

    from core.cameras import frontal_label
    from core.checkpoint import load_generator
    from core.images import seed_ws
    from scripts.bench_invert import psnr, render, result_views
    from training.inversion import InversionOptions, Inverter, OrbitLabel
    from training.perceptual import DiscriminatorFeatures, load_discriminator
    model = ROOT / "assets" / "default_model.ckpt"
    steps, tune, refine = (10, 2, 3) if args.quick else (100, 30, 25)
    results: dict = {"seed": 2, "steps": steps, "tune": tune, "refine_steps": refine}
    runs = [(args.device, False), (args.device, True)] + ([("cpu", False)] if args.device != "cpu" else [])
    for device, estimate in runs:
        G = load_generator(model, device)
        perceptual = DiscriminatorFeatures(load_discriminator(model).to(device))
        label = frontal_label(G.options, None, device, yaw=math.radians(25))
        ws_true = seed_ws(G, 2).to(device)
        with torch.no_grad():
            target = G.synthesis(ws_true, label)["image"].clamp(-1, 1)
        truth = OrbitLabel.from_label(label[0], G.options.avg_camera_pivot).to(device)
        opts = InversionOptions(steps=steps, space="w+", tune_steps=0 if estimate else tune,
                                refine_steps=refine)
        torch.manual_seed(0)
        t = time.monotonic()
        inv = Inverter(G, target, opts, perceptual)
        res = inv.run(None if estimate else label[0])
        seconds = time.monotonic() - t
        offsets = [math.radians(-45), math.radians(-25)]
        scores = [psnr(v, render(G, ws_true, truth(o).detach()))
                  for v, o in zip(result_views(inv, res, truth.radius, offsets), offsets)]
        results[f"{device} {'estimated' if estimate else 'given'}"] = {
            "novel_psnr_db": round(sum(scores) / 2, 2), "loss": res.loss, "seconds": round(seconds, 1),
            "yaw_err_deg": round(math.degrees(res.yaw) - 25, 1), "pitch_err_deg": round(math.degrees(res.pitch), 1)}
    return results


def run_child(cmd: list[str], limit: float, log=print, env: dict | None = None) -> dict:
    """Run a child with a time limit; its output goes to the log. Returns rc, seconds, error and its last
    lines."""
    log(f"$ {' '.join(cmd)}  (limit {limit:.0f} s)")
    t = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, start_new_session=True)
    except OSError as e:
        return {"error": first_line(e)}
    tail: list[str] = []
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        tail = ["(killed at the time limit)"]
    for line in (out or "").splitlines():
        log("  | " + line)
    lines = [ln for ln in (out or "").splitlines() if ln.strip()]
    entry = {"rc": proc.returncode, "seconds": round(time.monotonic() - t, 1), "output": lines[-12:]}
    if tail:
        entry["error"] = f"timed out after {limit:.0f} s"
    elif proc.returncode:
        entry["error"] = lines[-1] if lines else f"exit code {proc.returncode}"
    return entry


def child_section(args) -> int:
    """In the child: run one section, write its JSON to --result."""
    try:
        result = SECTION_FUNCS[args.section](args)
    except Exception as e:
        traceback.print_exc()
        result = {"error": first_line(e)}
    write_result(args.result, result)
    return 0


def write_result(path: str, result: dict) -> None:
    """Replace the result file whole: a child killed at any moment leaves the last complete result."""
    from core.fileio import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=str))


def orchestrate(args) -> int:
    out_dir = Path(args.out or os.environ.get("OUT") or "gpu_out")
    out_dir.mkdir(parents=True, exist_ok=True)
    log_file = open(out_dir / "gpu_check.log", "a")

    def log(line: str) -> None:
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    report: dict = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "device": args.device, "quick": args.quick, "budget_s": args.budget, "sections": {}}
    json_path = out_dir / "gpu_check.json"
    deadline = time.monotonic() + args.budget
    wanted = args.sections.split(",")
    for name in SECTIONS:
        if name not in wanted:
            continue
        remaining = deadline - time.monotonic()
        limit = min(BUDGETS[name], remaining)
        if limit < 10:
            report["sections"][name] = {"skipped": "out of time"}
            continue
        log(f"== {name} (up to {limit:.0f} s)")
        t = time.monotonic()
        env = {"PYOPENGL_PLATFORM": "egl"} if name == "interop" and not os.environ.get("DISPLAY") else None
        runs = section_runs(name, args)
        if runs is None:
            result = run_section_child(name, args, limit, log, [], env)
        else:  # one child each, sharing the section's time: a crash or hang costs only its own figures
            result = {}
            for i, (key, extra, cap) in enumerate(runs):
                share = min(cap, (limit - (time.monotonic() - t)) / (len(runs) - i))
                result[key] = run_section_child(name, args, share, log, extra) if share >= 10 else \
                    {"skipped": "out of time"}
            if name == "bench":
                result["summary"] = bench_summary(result)
            elif args.quick:
                result["ffhq"] = {"skipped": "--quick: the ffhq preset is too large for a CPU"}
        result["section_seconds"] = round(time.monotonic() - t, 1)
        report["sections"][name] = result
        json_path.write_text(json.dumps(report, indent=1, default=str))
        log(f"   {name}: {summary_line(name, result)}")
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    json_path.write_text(json.dumps(report, indent=1, default=str))
    log("\n== summary")
    for name, result in report["sections"].items():
        log(f"{name:8} {summary_line(name, result)}")
    log(f"results: {json_path}")
    return 0


def section_runs(name: str, args) -> list[tuple[str, list[str], float]] | None:
    """The children of a section that runs several, as (result key, arguments, time cap); None for one child.
    bench: a group of frame modes each (a graph capture or compile that goes wrong cannot take the eager
    figures with it); train: each preset and precision, and the default model's batch sweep."""
    if name == "bench":
        groups = [(["fp32", "bf16", "fp16+onechunk"], 120), (["fp32+graph"], 60)] if args.quick else BENCH_GROUPS
        return [(",".join(modes), ["--modes", ",".join(modes)], cap) for modes, cap in groups]
    if name == "train":
        return [(f"{p} {q}", ["--preset", p, "--precision", q], math.inf) for p, q in TRAIN_RUNS
                if not (args.quick and p == "ffhq")] + \
            [("default-model batch sweep", ["--batches", "4,8" if args.quick else SWEEP_BATCHES], math.inf)]
    return None


def run_section_child(name: str, args, limit: float, log, extra: list[str], env: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "scripts.gpu_check", "--section", name, "--device", args.device,
               "--result", str(result_path), "--section-budget", str(int(limit))] + extra
        if args.quick:
            cmd.append("--quick")
        entry = run_child(cmd, limit, log, env)
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError):  # killed or crashed before its first result
            return {"error": entry.get("error", "no result"), "child": entry}
        if entry.get("rc"):
            result["child"] = entry
        return result


def summary_line(name: str, r: dict) -> str:
    if "skipped" in r or "error" in r:
        return f"{'skipped: ' + r['skipped'] if 'skipped' in r else 'ERROR ' + str(r['error'])}"
    if name == "env":
        return f"torch {r.get('torch')} CUDA {r.get('torch_cuda')} {r.get('gpu', 'no GPU')} {r.get('ceilings', '')}"
    if name == "parity":
        return f"tests/test_parity.py on {r['device']}: {r['passed']} passed" + \
            (f", FAILED {', '.join(r['failed'])}" if r["failed"] else "") + ("" if r["pass"] else " (FAIL)")
    if name == "bench":
        s = r.get("summary", {})
        return f"fastest orbit {s.get('fastest orbit mode')} {s.get('fastest orbit fps')} fps; " \
               f"≥60 fps: {s.get('goal 60 fps reached by')}"
    if name == "interop":
        parts = []
        for k in ("host copy", "device copy"):
            v = r.get(k, {})
            parts.append(f"{k}: {v.get('path', '?')} same={v.get('same_pixels_as_expected')} "
                         f"{v.get('ms_per_upload', float('nan')):.3f} ms" if "error" not in v else f"{k}: {v['error']}")
        return "; ".join(parts)
    if name == "train":
        def rate(v: dict) -> str:
            if "images_per_s" in v:
                return f"{v['images_per_s']:.1f} img/s"
            sweep = {k: w["images_per_s"] for k, w in v.items() if isinstance(w, dict) and "images_per_s" in w}
            return ", ".join(f"{k} {x:.1f} img/s" for k, x in sweep.items()) or str(v.get("skipped") or v.get("error"))
        return "; ".join(f"{k} {rate(v)}" for k, v in r.items() if isinstance(v, dict))
    if name == "serve":
        t = r["tests"]
        return (f"remote tests on {t.get('device')}: {t.get('passed')} passed" +
                (f", FAILED {', '.join(t['failed'])}" if t.get("failed") else "") + (t.get("error") or "") +
                f"; bench_remote rc {r['bench_remote']['rc']}")
    if name == "mesh":
        return "; ".join(f"{k}: rc {v['rc']} {v.get('seconds', '')} s {v.get('faces', '')} faces"
                         for k, v in r.items() if isinstance(v, dict) and "rc" in v)
    if name == "invert":
        return "; ".join(f"{k} {v['novel_psnr_db']} dB in {v['seconds']} s" for k, v in r.items()
                         if isinstance(v, dict))
    return ""


SECTION_FUNCS = {"env": section_env, "parity": section_parity, "bench": section_bench, "interop": section_interop,
                 "train": section_train, "invert": section_invert, "serve": section_serve, "mesh": section_mesh}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (to check the script itself)")
    p.add_argument("--out", help="results folder (default $OUT, else ./gpu_out)")
    p.add_argument("--budget", type=float, default=420, help="seconds for all sections (default 420)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true", help="small sizes: prove the script end to end on a CPU")
    p.add_argument("--section", choices=list(SECTION_FUNCS), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--section-budget", type=float, default=60, help=argparse.SUPPRESS)
    p.add_argument("--preset", default="tiny", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--batches", help=argparse.SUPPRESS)
    p.add_argument("--modes", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if args.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            print("error: --device cuda but torch sees no CUDA device (use --device cpu to check the script)",
                  file=sys.stderr)
            return 2
    if args.section:
        return child_section(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
