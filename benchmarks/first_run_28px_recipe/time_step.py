import sys, time, torch
sys.path.insert(0, "benchmarks")
from pathlib import Path
from first_run_28px import make_keras_digits
from scoresde.train.trainer import TrainConfig, Trainer
torch.set_num_threads(int(sys.argv[1]))
p = make_keras_digits(Path("/tmp/r/d28.npz"))
for kw in [dict(), dict(batch_size=32), dict(base_channels=16, batch_size=64), dict(base_channels=32, batch_size=32, num_res_blocks=1), dict(base_channels=32, channel_mults=(1,2,2), batch_size=32, num_res_blocks=1)]:
    cfg = TrainConfig(data=str(p), conditional=True, label_dropout=0.1, steps=10**9, out="/tmp/r/runs", name="t", overwrite=True, progress=False, **kw)
    tr = Trainer(cfg)
    tr.train_step()
    t=time.perf_counter(); n=5
    for _ in range(n): tr.train_step()
    dt=(time.perf_counter()-t)/n
    print(kw, f"{dt:.3f} s/step", sum(p.numel() for p in tr.model.parameters()) if hasattr(tr,'model') else '', flush=True)
