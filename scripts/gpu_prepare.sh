#!/usr/bin/env bash
# Run HERE (a machine with network), before the device call: fills .gpucheck/ (git-ignored) with what
# the bare GPU machine lacks for scripts/gpu_check.sh, about 40 MB. Then call the device tool with
#   carry: [".gpucheck"]   command: bash scripts/gpu_check.sh   timeout_s: 540
#  fixtures/eg3d_small/  config.json, state_dict.pt, cases.pt, sr_2x.pt (parity), unless ./shared exists
#  whl/                  wheels for the device's CPython 3.12: PyOpenGL (+ accelerate) for the GL section,
#                        websockets and simplejpeg (serve), trimesh, PyMCubes and xatlas (mesh)
#  gl/                   libEGL/libOpenGL/GLX glvnd loader debs (GL section; the device README's recipe)
set -euo pipefail
cd "$(dirname "$0")/.."
dst=.gpucheck
mkdir -p "$dst/whl" "$dst/gl"
if [ ! -d shared/fixtures/eg3d_small ]; then
  src=${TRIPLANE_SHARED:-../shared}/fixtures/eg3d_small
  mkdir -p "$dst/fixtures/eg3d_small"
  for f in config.json state_dict.pt cases.pt sr_2x.pt; do cp "$src/$f" "$dst/fixtures/eg3d_small/"; done
fi
PIP=${PIP:-python3 -m pip}
plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d "$dst/whl" \
  PyOpenGL==3.1.10 PyOpenGL-accelerate==3.1.10 websockets==17.4 simplejpeg==1.9.0 trimesh==5.2.0 PyMCubes==0.1.6 \
  xatlas==0.0.11
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
apt-get $o update -qq
(cd "$dst/gl" && apt-get $o download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 2>&1 | tail -1)
du -sh "$dst"
