#!/usr/bin/env bash
# Fine-tune the default model on a lent GPU: several runs side by side (the small model is launch-bound, so
# one GPU serves them all), each stopped with SIGTERM at the deadline, when the trainer writes its last
# snapshot. G_ema and D of each run's newest snapshot land in $OUT/<run>.ckpt (the shipped file's format), its
# metrics in $OUT/<run>.jsonl. Compare them with the shipped model here (assets/README.md's checks) before
# shipping any of them.
#
#   bash scripts/gpu_train_default.sh SECONDS [DATA]        (repo root; DATA defaults to data/toys128)
#   DEVICE=cpu ONLY=b32 bash scripts/gpu_train_default.sh 120 (to check the script here: one run, on the CPU)
#
# DATA: `python main.py dataset synth --family toys --out data/toys128 --count 1600 --res 128 --seed 0`,
# carried to the device machine (`carry: ["data/toys128"]`).
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: gpu_train_default.sh SECONDS [DATA]}
data=${2:-data/toys128}
export OUT=${OUT:-gpu_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT" runs
# name | options on top of: --config tiny --init assets/default_model.ckpt --gamma 0.5 --sr-consistency 20
RUNS=(
  "b32|--batch 32 --seed 11"
  "b64|--batch 64 --seed 12"
  "b64lr|--batch 64 --seed 13 --glr 0.0015 --dlr 0.0012"
  "b128|--batch 128 --seed 14"
)
pids=()
[ -n "${ONLY:-}" ] && mapfile -t RUNS < <(printf '%s\n' "${RUNS[@]}" | grep "^${ONLY}|")
for spec in "${RUNS[@]}"; do
  name=${spec%%|*}
  # shellcheck disable=SC2086  # the options are words
  timeout -s TERM -k 30 "$seconds" "$PY" main.py train --data "$data" --out "runs/$name" --config tiny \
    --init assets/default_model.ckpt --gamma 0.5 --sr-consistency 20 --kimg 10000 --snap 8 --tick 2 \
    --swd-images 64 --device "${DEVICE:-cuda}" ${spec#*|} >"runs/$name.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
for spec in "${RUNS[@]}"; do
  name=${spec%%|*}
  tail -c 600 "runs/$name.log" | tr '\r' '\n' | tail -2
  cp "runs/$name/metrics.jsonl" "$OUT/$name.jsonl" 2>/dev/null
  "$PY" - "$name" <<'EOF'
import sys
from pathlib import Path
from core.checkpoint import load_generator, save_checkpoint
from training.perceptual import load_discriminator
name = sys.argv[1]
snaps = sorted(Path("runs", name).glob("network-snapshot-*.ckpt"))
if snaps:
    import os
    save_checkpoint(Path(os.environ["OUT"]) / f"{name}.ckpt", load_generator(snaps[-1], "cpu"),
                    D=load_discriminator(snaps[-1]))
    print(f"{name}: {snaps[-1].name} -> {name}.ckpt")
else:
    print(f"{name}: no snapshot")
EOF
done
