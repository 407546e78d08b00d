import sys, time, torch
from scoresde.train.trainer import TrainConfig, Trainer
torch.set_num_threads(1)
base = dict(data="/tmp/r/d28.npz", conditional=True, label_dropout=0.1, steps=10**9, out="/tmp/r/runs", name="t", overwrite=True, progress=False)
for kw in [dict(base_channels=16, channel_mults=(1,2,2), num_res_blocks=1, batch_size=32),
           dict(base_channels=16, channel_mults=(1,2,2), num_res_blocks=1, batch_size=64),
           dict(base_channels=32, channel_mults=(1,2,2), num_res_blocks=1, batch_size=32, dropout=0.0),
           dict(base_channels=32, channel_mults=(1,2,2), num_res_blocks=1, batch_size=32, attn_resolutions=()),
           dict(base_channels=24, channel_mults=(1,2,2), num_res_blocks=1, batch_size=32),
           dict(base_channels=32, channel_mults=(1,2,2), num_res_blocks=2, batch_size=32)]:
    tr = Trainer(TrainConfig(**base, **kw)); tr.train_step()
    t=time.process_time(); n=6
    for _ in range(n): tr.train_step()
    print(kw, f"{(time.process_time()-t)/n:.3f} cpu-s/step", sum(p.numel() for p in tr.ema.module.parameters()), flush=True)
