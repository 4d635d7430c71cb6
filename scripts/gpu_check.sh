#!/usr/bin/env bash
# One-call GPU proof (scripts/gpu_check.py): parity, frame rates, training speed, CUDA-GL texture path.
# Results: $OUT/gpu_check.json and $OUT/gpu_check.log ($OUT defaults to ./gpu_out).
#
# On the lent GPU machine (bare: its own python3 with torch, no network), from the repo root, after
# scripts/gpu_prepare.sh filled .gpucheck/ here and with `.gpucheck` named in the call's carry:
#   bash scripts/gpu_check.sh                      # at most 7-8 minutes; call with timeout_s 540
# On any machine, to check the script itself:
#   bash scripts/gpu_check.sh --device cpu --quick
# Extra arguments go to gpu_check.py (--budget SECONDS, --sections env,parity,bench,interop,train,invert,serve,mesh).
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python

# The GL section needs libEGL/libOpenGL (glvnd) and PyOpenGL, serve websockets, mesh trimesh, PyMCubes and
# xatlas; the GPU image has none of them. Unpack the carried debs and install the carried wheels (CPython
# 3.12) only on the lent machine (its driver is mounted at /usr/local/nvidia), the debs only when missing.
if [ -d /usr/local/nvidia ] && [ "$(id -u)" = 0 ] && ls .gpucheck/gl/*.deb >/dev/null 2>&1 \
   && ! ldconfig -p | grep -q 'libEGL.so.1 .*x86-64'; then
  for f in .gpucheck/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  echo "unpacked $(ls .gpucheck/gl/*.deb | wc -l) GL loader packages"
fi
vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-$vendor}
if [ -d /usr/local/nvidia ] && ls .gpucheck/whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/gpucheck-site .gpucheck/whl/*.whl && export PYTHONPATH=/tmp/gpucheck-site${PYTHONPATH:+:$PYTHONPATH}
fi

# The driver keeps to --budget (default 420 s) by itself; this is the backstop.
timeout --kill-after=15 "${GPU_CHECK_TIMEOUT:-500}" "$PY" -m scripts.gpu_check "$@"
rc=$?
[ $rc = 124 ] && echo "gpu_check: killed at ${GPU_CHECK_TIMEOUT:-500} s; $OUT/gpu_check.json holds the sections that finished"
exit $rc
