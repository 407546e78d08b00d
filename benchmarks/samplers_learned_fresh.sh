#!/usr/bin/env bash
# Fresh-draw check of benchmarks/samplers_learned.py for ONE model: the model and its stored bespoke
# fits are reused (nothing is trained or fitted again), everything else (peers, our solvers, the
# optimized grids of seed 12345, DPM-Solver-v3 statistics) is run again on N_PATH new pathwise draws
# of seed SEED, at NFE 5, 10 and 20 only.  Prints the model's summary row of the fresh page:
# ours / best peer as `ratio ± s.e. (P p)` (paired bootstrap over the draws, the configurations fixed
# as chosen on all of them; p = the fraction of resamples with ratio <= 0.5).
#
# SRC_WORK is a --work folder holding MODEL/ (its model and result.json, whose fits are reused);
# it is only read: the model is copied into a new folder under /tmp.  Sample quality is run at a
# token size (20 samples x 2 seeds), so the fresh page's Frechet columns mean nothing.
#
# Usage (from the repository root; one thread on CORE):
#   bash benchmarks/samplers_learned_fresh.sh MODEL SRC_WORK [N_PATH=256] [SEED=11] [CORE=0]
# e.g.  bash benchmarks/samplers_learned_fresh.sh diffusers8 /tmp/bsv/sl 256 11 0
# Costs measured on the shared 2-core machine (one core, load 2-3): see docs/bench_samplers_learned.md.
# Seeds already used: 1 (the page's draws), 7 (earlier fresh draws), 11 (the 256-draw check),
# 2024 (bespoke training), 4096 (bespoke validation), 12345 (optimized-grid pilot).
set -euo pipefail
model=$1
src=$2
n=${3:-256}
seed=${4:-11}
core=${5:-0}
[ -f "$src/$model/result.json" ] || { echo "no $src/$model/result.json" >&2; exit 2; }
work=$(mktemp -d "/tmp/sl_fresh_${model}_s${seed}_n${n}_XXXX")
mkdir "$work/$model"
for f in "$src/$model"/*; do
  [ "$(basename "$f")" = result.json ] || cp -r "$f" "$work/$model/"
done
[ -d "$src/cache" ] && cp -r "$src/cache" "$work/"
cp "$src/$model/result.json" "$work/fits.json"
extra=()
# A model whose stored run has no DPM-Solver-v3 rows (diffusers8 on the page) is rerun without them.
if ! grep -q '"dpm_solver_v3"' "$work/fits.json"; then extra+=(--v3-knots 0); fi
echo "work $work; start $(date -u +%T); load $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s)
OMP_NUM_THREADS=1 PYTHONPATH=src taskset -c "$core" "${PYTHON:-.venv/bin/python}" \
  benchmarks/samplers_learned.py --models "$model" --opt-solvers unipc --path-seed "$seed" \
  --n-path "$n" --nfes 5,10,20 --samples 20 --seeds 2 --bespoke-from "$work/fits.json" \
  --work "$work" --out "$work/page.md" "${extra[@]}" > "$work/run.log" 2>&1
echo "end $(date -u +%T); $(($(date +%s) - t0)) s wall; load $(cut -d' ' -f1-3 /proc/loadavg)"
grep "^| $model |" "$work/page.md" | head -1
