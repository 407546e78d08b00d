import sys, torch
sys.path.insert(0, "benchmarks")
from first_run_28px import _tile_stats, tile_limits
from scoresde.data.images import load_dataset, save_image_grid
from scoresde.io.checkpoint import load_checkpoint
from scoresde.models.clipping import ClipDenoised
from scoresde.train import evaluation
torch.set_num_threads(1)
work = "/tmp/first_run_28px_7fqk5dpt"
data = load_dataset(work + "/digits28.npz")
lim = tile_limits(data.train)
_, _, rtrain = _tile_stats(data.train)
print("limits", lim, "train rough quantiles", [round(float(q),4) for q in torch.quantile(rtrain, torch.tensor([0.5, 0.9, 0.99, 1.0], dtype=torch.float64))])
model = load_checkpoint(work + "/v/checkpoints/step_0001782.safetensors").model
x, y = evaluation.sample_grid(ClipDenoised(model), data.shape, 200, "euler_maruyama", 100, 0, 10, torch.device("cpu"))
x = x.float()
w, o, r = _tile_stats(x)
bad = (r > lim["rough"]).nonzero().flatten()
print("rough flagged", bad.tolist(), [round(float(v),4) for v in r[bad]], "sample rough median", round(float(r.median()),4))
print("white flagged", (w > lim["white"]).nonzero().flatten().tolist())
save_image_grid(x[bad], "/tmp/exp/rough_tiles.png", nrow=len(bad), scale=4)
x3, _ = evaluation.sample_grid(ClipDenoised(model), data.shape, 200, "euler_maruyama", 300, 0, 10, torch.device("cpu"))
_, _, r3 = _tile_stats(x3.float())
print("300 steps: rough flagged", int((r3 > lim["rough"]).sum()), "median", round(float(r3.median()),4))
