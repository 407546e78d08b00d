import sys, time, json, torch
sys.path.insert(0, "benchmarks")
from pathlib import Path
from first_run_28px import saturated_fraction
from scoresde.data.images import load_dataset, save_image_grid
from scoresde.evaluation import classifier_report, reference_classifier
from scoresde.train.trainer import TrainConfig, Trainer
torch.set_num_threads(1)
data = load_dataset("/tmp/r/d28.npz")
clf = reference_classifier(data.train, data.train_labels, epochs=8, seed=0, cache_dir="/tmp/r/cache")
wl = float((data.train.reshape(data.train.shape[0], -1) > 0.98).double().mean(1).max())
base = dict(data="/tmp/r/d28.npz", conditional=True, label_dropout=0.1, steps=10**9, out="/tmp/r/runs", overwrite=True, progress=False)
cands = json.loads(sys.argv[1]); budget = float(sys.argv[2]); checks = [float(c) for c in sys.argv[3].split(",")]
for i, kw in enumerate(cands):
    if "channel_mults" in kw: kw["channel_mults"] = tuple(kw["channel_mults"])
    tr = Trainer(TrainConfig(**base, name=f"c{i}", **kw))
    used = 0.0; ci = 0
    while ci < len(checks):
        t = time.process_time(); tr.train_step(); used += time.process_time() - t
        if used >= checks[ci] * budget:
            x, y = tr.sample_images(100)
            r = classifier_report(clf, x, data.test, y, floor_images=data.train)
            print(json.dumps({"cfg": kw, "cpu_s": round(used), "steps": tr.step, "acc": round(r["accuracy"], 3), "frechet": round(r["frechet"], 2), "sat": saturated_fraction(x, wl), "range": [round(float(x.min()),2), round(float(x.max()),2)]}), flush=True)
            save_image_grid(x, f'/tmp/r/grid_{sys.argv[4]}_{i}_{ci}.png', nrow=10, scale=2)
            ci += 1
