import sys, time, json, torch
sys.path.insert(0, "benchmarks")
from first_run_28px import saturated_fraction
from scoresde.data.images import load_dataset, save_image_grid
from scoresde.evaluation import classifier_report, reference_classifier
from scoresde.train.trainer import TrainConfig, Trainer
torch.set_num_threads(1)
data = load_dataset("/tmp/r/d28.npz")
clf = reference_classifier(data.train, data.train_labels, epochs=8, seed=0, cache_dir="/tmp/r/cache")
kw = json.loads(sys.argv[1]); budget=float(sys.argv[2]); name=sys.argv[3]
for k in ("channel_mults","attn_resolutions"):
    if k in kw: kw[k]=tuple(kw[k])
tr = Trainer(TrainConfig(data="/tmp/r/d28.npz", conditional=True, label_dropout=0.1, steps=10**9, out="/tmp/r/runs", overwrite=True, progress=False, name=name, **kw))
used=0.0; losses=[]
while used < budget:
    t=time.process_time(); l,_=tr.train_step(); used+=time.process_time()-t; losses.append(l)
    if tr.step % 200 == 0: print(tr.step, round(used), sum(losses[-200:])/200, flush=True)
tr.save()
x, y = tr.sample_images(100)
save_image_grid(x, f"/tmp/r/{name}.png", nrow=10, scale=2)
r = classifier_report(clf, x, data.test, y, floor_images=data.train)
print(json.dumps({"cfg": kw, "cpu_s": round(used), "steps": tr.step, "acc": round(r["accuracy"],3), "frechet": round(r["frechet"],2)}), flush=True)
print(y[:20])
