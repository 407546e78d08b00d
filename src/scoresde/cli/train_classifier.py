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
from typing import Any

import torch

from scoresde.cli.command import Command, Context, runtime_options
from scoresde.settings import Option

DATASETS = ("ring", "gmm", "digits", "digits-color")


def _resolve_sde(cfg: dict[str, Any]):
    """The SDE to train under: the checkpoint's, else ``--sde``; and the checkpoint's info."""
    from scoresde.io.info import read_checkpoint_info
    from scoresde.sde import SDES, make_sde

    if cfg["sde"] and cfg["sde"] not in SDES:
        raise ValueError(f"unknown SDE {cfg['sde']!r} for --sde; choose one of {sorted(SDES)}")
    if not cfg["checkpoint"]:
        return make_sde(cfg["sde"] or "vp"), None
    info = read_checkpoint_info(cfg["checkpoint"])
    name = info.config["sde"]["name"]
    if cfg["sde"] and cfg["sde"] != name:
        raise ValueError(
            f"--sde {cfg['sde']} disagrees with the checkpoint's SDE {info.sde!r}"
            "; drop --sde to use the checkpoint's"
        )
    return info.sde, info


def run(ctx: Context) -> int:
    from scoresde.guidance import (
        AnalyticClassifier,
        NoiseConditionalClassifier,
        classifier_accuracy,
        save_classifier,
        train_classifier,
    )
    from scoresde.models.analytic import AnalyticScore, GaussianMixture
    from scoresde.nets import TimeClassifier

    cfg, device = ctx.cfg, ctx.device
    sde, info = _resolve_sde(cfg)
    g = torch.Generator().manual_seed(cfg["seed"])
    images = cfg["data"].startswith("digits")
    lr = cfg["lr"] or (2e-3 if images else 5e-3)
    hidden = cfg["hidden"] or (32 if images else 128)
    bayes = None
    if images:
        from scoresde.data.images import load_digits

        data = load_digits(seed=cfg["seed"], colored=cfg["data"] == "digits-color")
        shape = tuple(data.shape)
        if info is not None:
            model_shape = info.item_shape
            if model_shape != shape:
                raise ValueError(
                    f"the checkpoint's model takes inputs {model_shape} but --data {cfg['data']} images are "
                    f"{shape}; give a checkpoint trained on {cfg['data']}"
                )
        classes = int(data.num_classes)
        x_train, y_train = data.train, data.train_labels
        x_test, y_test = data.test, data.test_labels
        std = float(x_train.std())

        def draw(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            idx = torch.randint(0, x_train.shape[0], (batch,), generator=gen)
            return x_train[idx], y_train[idx]

    else:
        if info is not None and info.item_shape != (cfg["dim"] if cfg["data"] == "gmm" else 2,):
            raise ValueError(
                "--checkpoint's model does not take the mixture's points; use --sde for mixtures"
            )
        classes = cfg["classes"]
        if cfg["data"] == "ring":
            gmm = GaussianMixture.ring(classes, radius=2.0, std=0.3)
        else:
            gmm = GaussianMixture.random(
                cfg["dim"], classes, eig_min=0.01, eig_max=0.1, mean_scale=1.5, generator=g
            )
        shape = (gmm.dim,)
        bayes = AnalyticClassifier(AnalyticScore(gmm, sde))
        std = float(gmm.sample(10_000, generator=g).std())
        x_test, y_test = gmm.sample(
            4000, generator=torch.Generator().manual_seed(cfg["seed"] + 1), return_labels=True
        )

        def draw(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = gmm.sample(batch, generator=gen, return_labels=True)
            return x.float(), y

    torch.manual_seed(cfg["seed"])  # the initial weights (torch's global generator)
    net = TimeClassifier(shape, classes, hidden=hidden, depth=cfg["depth"])
    clf = NoiseConditionalClassifier(net, sde, sigma_data=std).to(device)
    fit = train_classifier(
        clf,
        draw,
        steps=cfg["steps"],
        batch_size=cfg["batch_size"],
        lr=lr,
        generator=g,
        progress=cfg["progress"],
    )
    out = ctx.out_dir()
    weights, meta_path = save_classifier(clf, out / "classifier")
    clf = clf.cpu()
    times = [sde.eps, 0.1 * sde.T, 0.3 * sde.T, 0.5 * sde.T, 0.8 * sde.T]
    acc: dict[str, dict[str, float]] = {}
    for t in times:
        a = classifier_accuracy(clf, sde, x_test.float(), y_test, t, torch.Generator().manual_seed(7))
        acc[f"{t:.4g}"] = {"classifier": a}
        if bayes is not None:
            acc[f"{t:.4g}"]["bayes_optimal"] = classifier_accuracy(
                bayes, sde, x_test, y_test, t, torch.Generator().manual_seed(7)
            )
    metrics = {
        "data": cfg["data"],
        "classes": classes,
        "sde": repr(sde),
        "num_parameters": net.num_parameters,
        "train_steps": cfg["steps"],
        "train_seconds": round(fit.seconds, 2),
        "final_loss": sum(fit.losses[-100:]) / min(100, len(fit.losses)),
        "held_out": int(x_test.shape[0]),
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
        Option("data", "ring", "labelled data: a 2-D ring / random mixture, or the digits", choices=DATASETS),
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
