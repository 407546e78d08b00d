"""Train a noise-conditional classifier p_t(y | x_t) (Song et al. 2021, Sec. 5, App. I.1) for
classifier guidance (``scoresde sample --classifier``).

``--data ring`` / ``gmm``: labelled Gaussian-mixture data (each component a class); the
accuracy at several noise levels is compared with the exact Bayes classifier of the mixture.
``--data digits`` (or ``digits-color``): the bundled 8x8 digits; the accuracy on the held-out
digits is reported.  The classifier must be trained under the SDE of the score model it will
guide: ``--checkpoint`` reads the SDE (and checks the image shape) from a score-model
checkpoint; otherwise ``--sde`` names it.  Writes classifier.safetensors + classifier.json (no
pickle), metrics.json and config.toml into the output folder.
"""

from __future__ import annotations

import json

import torch

from scoresde.cli.command import Command, Context, runtime_options
from scoresde.guidance.classifier_tasks import CLASSIFIER_DATASETS
from scoresde.settings import Option


def run(ctx: Context) -> int:
    from scoresde.guidance import NoiseConditionalClassifier, save_classifier, train_classifier
    from scoresde.guidance.classifier_tasks import accuracy_by_time, classifier_sde, classifier_task
    from scoresde.nets import TimeClassifier

    cfg, device = ctx.cfg, ctx.device
    sde, info = classifier_sde(cfg["checkpoint"], cfg["sde"])
    g = torch.Generator().manual_seed(cfg["seed"])
    item_shape = None if info is None else info.item_shape
    task = classifier_task(cfg["data"], sde, g, cfg["classes"], cfg["dim"], cfg["seed"], item_shape)
    lr = cfg["lr"] or (2e-3 if task.images else 5e-3)
    hidden = cfg["hidden"] or (32 if task.images else 128)
    torch.manual_seed(cfg["seed"])  # the initial weights (torch's global generator)
    net = TimeClassifier(task.shape, task.classes, hidden=hidden, depth=cfg["depth"])
    clf = NoiseConditionalClassifier(net, sde, sigma_data=task.std).to(device)
    fit = train_classifier(
        clf,
        task.draw,
        steps=cfg["steps"],
        batch_size=cfg["batch_size"],
        lr=lr,
        generator=g,
        progress=cfg["progress"],
    )
    out = ctx.out_dir()
    weights, meta_path = save_classifier(clf, out / "classifier")
    clf = clf.cpu()
    acc = accuracy_by_time(clf, sde, task)
    metrics = {
        "data": cfg["data"],
        "classes": task.classes,
        "sde": repr(sde),
        "num_parameters": net.num_parameters,
        "train_steps": cfg["steps"],
        "train_seconds": round(fit.seconds, 2),
        "final_loss": sum(fit.losses[-100:]) / min(100, len(fit.losses)),
        "held_out": int(task.x_test.shape[0]),
        "accuracy": acc,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"trained {cfg['steps']} steps under the {sde!r} in {fit.seconds:.1f}s "
        f"(final cross-entropy {metrics['final_loss']:.4f})"
    )
    for t, a in acc.items():
        extra = f"  (Bayes-optimal {a['bayes_optimal']:.3f})" if "bayes_optimal" in a else ""
        print(f"  t = {t:>7}: held-out accuracy {a['classifier']:.3f}{extra}")
    print(f"wrote {weights}, {meta_path} and {out / 'metrics.json'}")
    return 0


COMMAND = Command(
    name="train-classifier",
    help="train a time-dependent classifier for classifier guidance (mixtures or digits)",
    doc=__doc__,
    options=[
        Option(
            "data",
            "ring",
            "labelled data: a 2-D ring / random mixture, or the digits",
            choices=CLASSIFIER_DATASETS,
        ),
        Option("classes", 8, "number of classes (mixture components) for ring / gmm", minimum=2),
        Option("dim", 2, "data dimension for --data gmm", minimum=1),
        Option("checkpoint", "", "score-model checkpoint whose SDE (and image shape) to match", type=str),
        Option("sde", "", "forward SDE when no --checkpoint is given (default vp)", type=str),
        Option("steps", 2000, "training steps", minimum=1),
        Option("batch_size", 256, "batch size", minimum=1),
        Option("lr", 0.0, "learning rate (0: 5e-3 for mixtures, 2e-3 for images)", minimum=0.0),
        Option(
            "hidden", 0, "MLP width / first conv channels (0: 128 for mixtures, 32 for images)", minimum=0
        ),
        Option("depth", 2, "hidden layers / stride-2 conv stages", minimum=1),
        *runtime_options(progress=True),
    ],
    body=run,
)
