#!/usr/bin/env bash
# Every GPU figure in one run of at most 9 minutes on one GPU; JSON under benchmarks/results/
# named by device (*_gpu_<kind>.json, kind from JAX's device_kind, e.g. nvidia_h200), in this order:
#   1. env_throughput.py: navigation env-only at 4096 envs, SafetyPointGoal1, SafetyPointButton1
#      (MJX's JAX implementation; 6. the same and SafetyCarGoal2 with Warp, where warp-lang is installed)
#   2. throughput.py at 4096 envs: env-only, PPO-Lag, SHAPO-euclidean, Brax PPO (THROUGHPUT_SKIP,
#      default "fisher trpo" where --skip offers trpo: their compiles do not fit in 8 minutes; Brax
#      PPO runs in BRAX_PYTHON, default PYTHON, the same pins, through brax_peer/run.py's
#      jax.device_put_replicated; benchmarks/brax_peer/.venv, made with BRAX_PEER_CUDA=1 bash
#      benchmarks/brax_peer/setup.sh, runs it on Brax's own jax 0.9.2; skipped when absent)
#   3. scaling.py: 4096 envs, 16 seeds x 256 envs
#   4. paper_throughput.py: SHAPO-PIDLag training steps/s, paper preset, 16 vmapped seeds
#   5. env_throughput.py: SafetyCarGoal2 at 1024 envs, 20 steps (at 4096 envs it gave no row in
#      128 s on an H200; on 2 CPU cores it takes 10 s per batched step at 1024 envs)
#   7. shapo-train --physics-impl warp in the paper's setting (SafetyPointGoal1, trpo_pid, preset
#      paper, 16 seeds, 4 updates), where warp-lang is installed: its run directory
#      train_warp_<suffix>/ with summary.json (env_steps_per_second, compile_seconds); compare
#      with 4. (MJX's JAX implementation)
# plus nvidia-smi's output and a log. Each part is bounded by `timeout`: its own budget times
# SCALE (default 1), capped by what is left of BUDGET_S (default 540 s); a part that fails or
# times out is reported and the next one runs (the scripts write their JSON as they go, so
# partial results survive). A part whose JSON for this device kind is already in
# benchmarks/results is skipped (REDO=1 measures it again): a lease is short (15 minutes here),
# and on the first H200 run (2026-11-30) compiling took most of it (env-only Hopper at 4096 envs
# 50 s, the paper preset's update 41 s), so each session measures what is still missing. The parts
# share a persistent compilation cache (JAX_COMPILATION_CACHE_DIR, default /tmp/shapo_jax_gpu_cache):
# a rerun on the same machine loads what an earlier call compiled (on the second H200 lease,
# throughput.py's compiles went from 161 s to 45 s), and the JSON records the cache directory.
# ONLY="paper_throughput scaling" runs just those parts, e.g. to rerun one that timed out:
# ONLY=scaling SCALE=3 BUDGET_S=580 bash benchmarks/gpu.sh
# On a machine whose Python has JAX with CUDA but no MuJoCo or Brax (the device tool's H200
# image), benchmarks/gpu_wheels.sh says how to carry them.
#
#   bash benchmarks/gpu.sh             # on the GPU machine, from anywhere (JAX with CUDA: pip install -e '.[cuda12]')
#   bash benchmarks/gpu.sh --dry-run   # print the commands, run nothing (no GPU needed)
#   bash benchmarks/gpu.sh --tiny      # the same commands at tiny sizes on any device, into
#                                      # OUT_DIR (default a new temp dir): checks the script on CPU
#                                      # (SCALE 10 and BUDGET_S 7200 by default: CPU compiles are slow)
# PYTHON overrides the interpreter (default .venv/bin/python); BRAX_PYTHON the one for Brax's PPO
# (default PYTHON).
set -uo pipefail  # no -e: one failed part must not lose the others

mode=run
case "${1:-}" in
  "") ;;
  --dry-run) mode=dry ;;
  --tiny) mode=tiny ;;
  *) echo "usage: bash benchmarks/gpu.sh [--dry-run | --tiny]" >&2; exit 2 ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PY="${PYTHON:-.venv/bin/python}"
if [ "$mode" = tiny ]; then BUDGET_S="${BUDGET_S:-7200}" SCALE="${SCALE:-10}"; fi
BUDGET_S="${BUDGET_S:-540}"
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/shapo_jax_gpu_cache}"
SCALE="${SCALE:-1}"
ONLY="${ONLY:-}"
NAV_TASKS="SafetyPointGoal1 SafetyPointButton1"
SG_PY=benchmarks/cpu_peer/.venv/bin/python
BRAX_PY="${BRAX_PYTHON:-$PY}"

# --- the device -----------------------------------------------------------------------------
if [ "$mode" = tiny ]; then
  OUT="${OUT_DIR:-$(mktemp -d)}"
  suffix="$("$PY" -c 'import jax; print(jax.devices()[0].platform)')_tiny"
elif [ "$mode" = dry ]; then
  OUT=benchmarks/results
  suffix="gpu_KIND"
  echo "timeout 120 $PY -c 'import jax; assert jax.devices()[0].platform == \"gpu\"'"
else
  OUT=benchmarks/results
  kind="$(timeout 120 "$PY" -c '
import re, sys
import jax
d = jax.devices()[0]
if d.platform != "gpu":
    sys.exit(f"gpu.sh: JAX sees no GPU (jax.devices(): {jax.devices()}); install jax[cuda12] in the venv, or use --dry-run / --tiny")
print(re.sub(r"[^a-z0-9]+", "_", d.device_kind.lower()).strip("_"))
')"
  rc=$?
  if [ $rc -ne 0 ]; then
    [ $rc -eq 124 ] && echo "gpu.sh: $PY did not list JAX's devices within 120 s" >&2
    exit 1
  fi
  suffix="gpu_$kind"
fi
mkdir -p "$OUT"
LOG="$OUT/gpu_sh_$suffix.log"

summary=()
# --- sizes: the measurement, or tiny ones that exercise the same commands --------------------
if [ "$mode" = tiny ]; then
  NAV_SIZES=(--num-envs 2 --steps 2 --repeats 1)
  CAR_SIZES=(--num-envs 2 --steps 2 --repeats 1)
  SG_STEPS=100
  PAPER_SIZES=(--seeds 2 --updates 1 --num-envs 2 --unroll-length 8 --num-minibatches 2 --update-epochs 1)
  TRAIN_SIZES=(--num-seeds 2 --num-envs 2 --unroll-length 8 --num-minibatches 2 --update-epochs 1 --total-steps 32)
  THROUGHPUT_SIZES=(--num-envs 8 --unroll-length 4 --num-minibatches 2 --update-epochs 1 --rounds 1)
  SCALING_SIZES=(--num-envs 4 8 --seeds 1 2 --seed-envs 4 --unroll-length 4 --num-minibatches 2 --update-epochs 1 --repeats 1)
else
  NAV_SIZES=(--num-envs 4096 --steps 100 --repeats 2)
  CAR_SIZES=(--num-envs 1024 --steps 20 --repeats 2)
  SG_STEPS=1000
  PAPER_SIZES=(--seeds 16 --updates 3)
  TRAIN_SIZES=(--num-seeds 16 --total-steps 80000)  # the preset's 20 envs x 1000 steps: 4 updates
  THROUGHPUT_SIZES=(--num-envs 4096 --rounds 3)
  SCALING_SIZES=(--num-envs 4096 --seeds 16 --seed-envs 256 --repeats 3)
fi
if [ -z "${THROUGHPUT_SKIP+set}" ]; then
  THROUGHPUT_SKIP=fisher
  "$PY" benchmarks/throughput.py --help 2> /dev/null | grep -qE -- '--skip \[\{[a-z,]*trpo' && THROUGHPUT_SKIP="fisher trpo"
fi
# Brax PPO needs its python; without it, no Brax PPO
if [ ! -x "$BRAX_PY" ] && [[ " $THROUGHPUT_SKIP " != *" brax "* ]]; then
  THROUGHPUT_SKIP="$THROUGHPUT_SKIP brax"
  summary+=("throughput: Brax PPO skipped, no $BRAX_PY")
fi
# shellcheck disable=SC2206  # a word list
[ -n "$THROUGHPUT_SKIP" ] && THROUGHPUT_SIZES+=(--skip $THROUGHPUT_SKIP)
[[ " $THROUGHPUT_SKIP " != *" brax "* ]] && THROUGHPUT_SIZES+=(--brax-python "$BRAX_PY")
if [ -x "$SG_PY" ]; then SG_FLAGS=(--sg-python "$SG_PY" --sg-steps "$SG_STEPS"); else SG_FLAGS=(--no-sg); fi

planned=0  # --dry-run: seconds the parts printed so far may take
# --- running one part -------------------------------------------------------------------------
part() {  # part NAME SECONDS JSON COMMAND...: run under timeout, SECONDS x SCALE capped by what is left of BUDGET_S
  local name=$1 secs=$(($2 * SCALE)) json=$3; shift 3
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  if [ "$mode" = run ] && [ -z "${REDO:-}" ] && [ -s "$json" ]; then
    summary+=("$name: skipped, measured already in $json (REDO=1 measures it again)")
    return
  fi
  local left=$((BUDGET_S - SECONDS))
  [ "$mode" = dry ] && left=$((BUDGET_S - planned))  # as if every earlier part ran to its timeout
  [ "$secs" -gt "$left" ] && secs=$left
  if [ "$mode" = dry ]; then
    [ "$secs" -lt 20 ] && { echo "# $name: skipped, ${left}s of the ${BUDGET_S}s budget left"; return; }
    echo "timeout $secs $*"
    planned=$((planned + secs))
    return
  fi
  if [ "$secs" -lt 20 ]; then
    summary+=("$name: skipped, ${left}s of the ${BUDGET_S}s budget left")
    return
  fi
  echo "== $name (timeout ${secs}s): $*" | tee -a "$LOG"
  local start=$SECONDS rc
  timeout --kill-after=10 "$secs" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  local took=$((SECONDS - start)) what="ok"
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && what="TIMED OUT"
  [ "$rc" -ne 0 ] && [ "$what" = ok ] && what="FAILED (exit $rc)"
  summary+=("$name: $what in ${took}s")
}

# nvidia-smi's view of the machine, next to the JSON
if [ "$mode" = dry ]; then
  echo "timeout 20 nvidia-smi > $OUT/nvidia_smi_$suffix.txt"
elif command -v nvidia-smi > /dev/null; then
  { timeout 20 nvidia-smi; echo;
    timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv; } \
    > "$OUT/nvidia_smi_$suffix.txt" 2>&1
else
  echo "no nvidia-smi on this machine" > "$OUT/nvidia_smi_$suffix.txt"
fi

# shellcheck disable=SC2086  # NAV_TASKS is a word list
# limits: the second H200 lease's cold runs (navigation: 35 s per Point task, CarGoal2 no row
# in 128 s; throughput: 161 s of compiles, 60 s of rounds, Brax PPO about 95 s)
part navigation_jax 150 "$OUT/env_throughput_navigation_$suffix.json" \
  "$PY" benchmarks/env_throughput.py --envs $NAV_TASKS "${NAV_SIZES[@]}" "${SG_FLAGS[@]}" \
  --out "$OUT/env_throughput_navigation_$suffix.json"
part throughput 330 "$OUT/throughput_$suffix.json" \
  "$PY" benchmarks/throughput.py "${THROUGHPUT_SIZES[@]}" --out "$OUT/throughput_$suffix.json"
part scaling 120 "$OUT/scaling_$suffix.json" \
  "$PY" benchmarks/scaling.py "${SCALING_SIZES[@]}" --out-prefix "$OUT/scaling_$suffix"
part paper_throughput 160 "$OUT/paper_throughput_$suffix.json" \
  "$PY" benchmarks/paper_throughput.py "${PAPER_SIZES[@]}" --out "$OUT/paper_throughput_$suffix.json"
part navigation_car 150 "$OUT/env_throughput_navigation_car_$suffix.json" \
  "$PY" benchmarks/env_throughput.py --envs SafetyCarGoal2 "${CAR_SIZES[@]}" "${SG_FLAGS[@]}" \
  --out "$OUT/env_throughput_navigation_car_$suffix.json"
# MJX's Warp implementation needs warp-lang (pip install 'shapo-jax[warp]'; its 149 MB wheel is
# more than the device tool carries, 64 MiB, so that machine measures it only if it has warp)
if [ "$mode" != dry ] && ! "$PY" -c "import warp" 2> /dev/null; then
  summary+=("navigation_warp: skipped, no warp-lang in $PY (pip install 'shapo-jax[warp]')")
else
  # shellcheck disable=SC2086
  part navigation_warp 90 "$OUT/env_throughput_navigation_warp_$suffix.json" "$PY" benchmarks/env_throughput.py --envs $NAV_TASKS SafetyCarGoal2 "${NAV_SIZES[@]}" --no-sg \
    --physics-impl warp --out "$OUT/env_throughput_navigation_warp_$suffix.json"
  part train_warp 150 "$OUT/train_warp_$suffix/summary.json" "$PY" -m shapo_jax.cli --env SafetyPointGoal1 \
    --algo trpo_pid --preset paper --physics-impl warp "${TRAIN_SIZES[@]}" --no-progress --out "$OUT/train_warp_$suffix"
fi

if [ "$mode" = dry ]; then
  for line in "${summary[@]}"; do echo "# $line"; done
  exit 0
fi
echo "== gpu.sh done in ${SECONDS}s; files in $OUT" | tee -a "$LOG"
for line in "${summary[@]}"; do echo "  $line"; done | tee -a "$LOG"
