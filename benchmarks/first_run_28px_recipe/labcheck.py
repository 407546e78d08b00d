import torch, json
from scoresde.train.trainer import TrainConfig, Trainer
torch.set_num_threads(1)
cfg = dict(data="/tmp/r/d28.npz", conditional=True, label_dropout=0.1, steps=10**9, out="/tmp/r/runs", overwrite=True, progress=False, name="d1", base_channels=16, channel_mults=(1,2,2), num_res_blocks=1, batch_size=32, dropout=0.0)
tr = Trainer(TrainConfig(**cfg))
tr.resume("/tmp/r/runs/d1/checkpoints/last.safetensors")
m = tr.ema.module
x = tr.data.train[:256].to(torch.float32)
y = tr.data.train_labels[:256]
print(x.shape, x.min(), x.max(), y[:10])
g = torch.Generator().manual_seed(0)
sde = m.sde
for t in (0.3, 0.5, 0.7, 0.9):
    tt = torch.full((256,), t)
    a, std = sde.marginal(tt); mean = a.view(-1,1,1,1)*x
    z = torch.randn(x.shape, generator=g)
    xt = mean + std.view(-1,1,1,1)*z
    with torch.no_grad():
        out = []
        for lab in (y, y[torch.randperm(256, generator=g)], torch.full_like(y, 10)):
            s = m(xt, tt, y=lab)
            out.append(float(((s*std.view(-1,1,1,1) + z)**2).mean()))
    print(t, ["%.4f"%o for o in out])
