#!/usr/bin/env bash
# GPU checks (run on a CUDA machine from the repository root; nothing in the library needs a GPU):
#  1. the likelihood benchmark's network-bound case on CUDA (our solver vs the paper-style scipy loop);
#  2. torchrun + DistributedDataParallel with the nccl backend and bf16 autocast, through the CLI;
#  3. sampling the resulting checkpoint on CUDA.
# Usage: OUT=/some/dir bash benchmarks/gpu_check.sh
set -euo pipefail
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
echo "== likelihood benchmark, MLP on CUDA"
python benchmarks/likelihood.py --device cuda --skip-oracle --n 256 --repeats 3 --out "$OUT/bench_likelihood_cuda.md"
echo "== torchrun nccl DDP + bf16 (1 process: one GPU cannot host two nccl ranks)"
torchrun --standalone --nproc_per_node=1 -m scoresde train --data digits --steps 60 --batch-size 64 \
  --bf16 --device cuda --out "$OUT/runs" --name ddp_nccl --log-every 20 --eval-every 60 --save-every 60 --no-progress
echo "== sample the checkpoint on CUDA"
python -m scoresde sample --checkpoint "$OUT/runs/ddp_nccl" --num 16 --method dpm_solver++_2m --steps 20 \
  --device cuda --out "$OUT/sample" || python -m scoresde sample --help
ls -R "$OUT" | head -40
