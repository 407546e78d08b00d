#!/usr/bin/env bash
# GPU checks (run on a CUDA machine from the repository root; nothing in the library needs a GPU).
# Under 8 minutes of device time on one H100 / H200; each step has its own time limit, and a step
# that fails or runs out of time is reported and skipped, the others still run:
#  1. benchmarks/speed.py on CUDA -> docs/bench_speed_cuda.md (copied to $OUT):
#     (a) training step scoresde UNet vs diffusers UNet2DModel (eager, bf16 autocast, compiled),
#     (b) sampling at equal NFE (eager, compiled, mode=reduce-overhead = CUDA graphs),
#     (c) likelihood through ss.log_likelihood vs the paper's scipy loop;
#  2. the likelihood benchmark's network-bound case on CUDA (our solver vs the scipy loop);
#  3. torchrun ($PY -m torch.distributed.run, so no torchrun on PATH is needed) + DistributedDataParallel with the nccl backend and bf16 autocast, through the CLI
#     (one process per GPU; one GPU hosts one nccl rank);
#  4. sampling the resulting checkpoint on CUDA, eager and with --compile.
# Without CUDA (or with DRY_RUN=1) it runs the CPU fallback: the same steps, tiny, on the CPU with
# gloo, writing $OUT/bench_speed_cpu_dryrun.md, so that the script itself is checked anywhere.
# Usage: OUT=/some/dir bash benchmarks/gpu_check.sh     (DRY_RUN=1 to force the CPU fallback)
set -uo pipefail
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}
PY=${PYTHON:-python}
mkdir -p "$OUT"
FAILED=()

step() {  # step NAME SECONDS CMD...: run with a time limit, record a failure, carry on
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  if timeout --signal=INT --kill-after=10 "$limit" "$@"; then
    echo "== $name: ok in $((SECONDS - t0))s"
  else
    echo "== $name: FAILED or timed out (status $?) after $((SECONDS - t0))s"
    FAILED+=("$name")
  fi
}

if [[ "${DRY_RUN:-0}" != "1" ]] && $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  DEVICE=cuda
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
else
  DEVICE=cpu
  echo "no CUDA (or DRY_RUN=1): CPU fallback, tiny sizes"
fi

if [[ $DEVICE == cuda ]]; then
  step "speed (a)-(c) on CUDA" 330 $PY benchmarks/speed.py --device cuda --threads 4 --repeats 5 \
    --sections train,sample,likelihood --out "$OUT/bench_speed_cuda.md"
  if [[ -f "$OUT/bench_speed_cuda.md" ]]; then cp "$OUT/bench_speed_cuda.md" docs/bench_speed_cuda.md; fi
  step "likelihood benchmark, MLP on CUDA" 60 $PY benchmarks/likelihood.py --device cuda --skip-oracle \
    --n 256 --repeats 3 --out "$OUT/bench_likelihood_cuda.md"
  NPROC=$($PY -c "import torch; print(torch.cuda.device_count())")
  step "torchrun nccl DDP + bf16 ($NPROC process(es))" 60 $PY -m torch.distributed.run --standalone --nproc_per_node="$NPROC" \
    -m scoresde train --data digits --steps 60 --batch-size 64 --bf16 --device cuda --out "$OUT/runs" \
    --name ddp_nccl --log-every 20 --eval-every 60 --save-every 60 --no-progress
  SAMPLE_DEVICE=cuda
else
  step "speed (a)-(d) CPU dry run" 600 $PY benchmarks/speed.py --device cpu --quick --no-compile --repeats 1 \
    --sections startup,train,sample,likelihood --out "$OUT/bench_speed_cpu_dryrun.md"
  step "torchrun gloo DDP (CPU dry run)" 300 $PY -m torch.distributed.run --standalone --nproc_per_node=1 -m scoresde train \
    --data digits --steps 4 --batch-size 16 --base-channels 8 --device cpu --out "$OUT/runs" --name ddp_nccl \
    --log-every 2 --eval-every 4 --save-every 4 --no-progress
  SAMPLE_DEVICE=cpu
fi

if [[ -d "$OUT/runs/ddp_nccl" ]]; then
  step "sample the checkpoint ($SAMPLE_DEVICE, eager)" 60 $PY -m scoresde sample --checkpoint "$OUT/runs/ddp_nccl" \
    --num 16 --method dpm_solver++_2m --steps 20 --device "$SAMPLE_DEVICE" --out "$OUT/sample"
  if [[ $SAMPLE_DEVICE == cuda ]]; then
    step "sample the checkpoint (cuda, --compile reduce-overhead)" 90 $PY -m scoresde sample \
      --checkpoint "$OUT/runs/ddp_nccl" --num 16 --method dpm_solver++_2m --steps 20 --device cuda \
      --compile --compile-mode reduce-overhead --out "$OUT/sample_compiled"
  fi
fi

ls -R "$OUT" | head -40
if ((${#FAILED[@]})); then
  echo "failed steps: ${FAILED[*]}"
  exit 1
fi
echo "all steps ok ($DEVICE)"
