import sys, json, torch
from scoresde.data.images import load_dataset
from scoresde.evaluation import classifier_report, reference_classifier
from scoresde.train.trainer import TrainConfig, Trainer
from scoresde.train import evaluation
torch.set_num_threads(1)
data = load_dataset("/tmp/r/d28.npz")
clf = reference_classifier(data.train, data.train_labels, epochs=8, seed=0, cache_dir="/tmp/r/cache")
name = sys.argv[1]; kw = json.loads(sys.argv[2])
for k in ("channel_mults",):
    if k in kw: kw[k]=tuple(kw[k])
tr = Trainer(TrainConfig(data="/tmp/r/d28.npz", conditional=True, label_dropout=0.1, steps=10**9, out="/tmp/r/runs", overwrite=True, progress=False, name=name+"_x", **kw))
tr.resume(f"/tmp/r/runs/{name}/checkpoints/last.safetensors")
for method, steps in [("euler", 100), ("euler", 300), ("reverse_diffusion", 100), ("dpm_solver++_2m", 30), ("pc", 100)]:
    x, y = evaluation.sample_grid(tr.ema.module, tr.data.shape, 200, method, steps, 0, 10, tr.device)
    r = classifier_report(clf, x.float(), data.test, y, floor_images=data.train)
    print(method, steps, round(r["accuracy"],3), round(r["frechet"],2), flush=True)
