"""Few-step PF-ODE samplers on LEARNED models: pathwise error and sample quality at equal NFE.

The oracle benchmark (``benchmarks/samplers.py``) measures the solvers against exact scores; here
the model is a network, one of (``--models``, each trained here for a few CPU-minutes of process
time and cached in ``--work/<key>``; a rerun with the same folder skips the training):

- ``vp8``: the README recipe on the bundled 8x8 digits (VP SDE, v prediction, ``TrainConfig``
  defaults, ``--conditional --label-dropout 0.1``), trained by ``benchmarks/distill_digits.py``'s
  :func:`train_teacher`;
- ``ve8``: the paper's convention, the same recipe with the VE SDE (``sigma_min = 0.01``,
  ``sigma_max = 50``, the paper's CIFAR-10 values; geometric noise levels), the network predicting
  eps (the paper's NCSN++ score ``-eps / sigma``) from the time input ``log sigma``;
- ``diffusers8``: a diffusers ``UNet2DModel`` (16/32 channels, class-conditional through
  ``num_class_embeds``) with a ``DDPMScheduler`` (epsilon prediction, linear beta table, 1000
  steps), wrapped by :func:`scoresde.interop.diffusers.from_diffusers` and trained through that
  adapter with DDPM's simple loss (:func:`scoresde.train.losses.ddpm_loss`); saved and reloaded as
  a diffusers folder (``unet/``, ``scheduler/``).  diffusers' schedulers sample it natively
  (``unet(x, timestep, class_labels)`` on its own linear table), ours through the adapter;
- ``unet28``: the README's 28x28 recipe (``scoresde train --data FILE.npz --conditional
  --label-dropout 0.1``: VP SDE, v prediction, the default 16-channel UNet) on
  ``benchmarks/first_run_28px.py``'s upsampled 28x28 digits, scored by that benchmark's reference
  classifier (8 epochs); about 12x the cost of an 8x8 network per evaluation.

Every model is trained under the library's default DSM weighting (``weighting="auto"``: ``sigma2``
for the eps network of ``ve8``, ``edm`` for the v networks; the page's note on each model names it).

(a) Pathwise error.  Every sampler starts from the same ``x_T`` drawn from the prior (labels
cycling over the ten classes) at ``t = T`` and stops at ``t_end = 1e-3`` without a final denoising
step; its output is compared with a tight solve of the *same network's* probability-flow ODE from
the same ``x_T`` (dopri5, ``--ref-tol``), as the RMS error per pixel over all draws and as the
median over draws of each path's RMS error.  No exact score is needed: the metric isolates the
solver's error from the network's.  Peers are driven by the network through their own interfaces:

- diffusers' schedulers run on a 1000-entry VP table whose timestep ``tau`` is time
  ``(tau + 1) / 1000``: ``alphas_cumprod = s^2 / (s^2 + sigma^2)`` of the model's SDE there (for the
  VP model its own table; for the VE model the VP form of the same ODE, whose state is
  ``x / sqrt(1 + sigma^2)``: the network sees ``x``), given as ``trained_betas`` -- except the
  diffusers model, whose schedulers use their own linear table and call the UNet directly.
  The options kept from ``samplers.diffusers_configs`` (:data:`DIFFUSERS_KEPT`: DPM-Solver++,
  UniPC and DEIS of orders 2 and 3 on default / Karras / exponential sigmas and ``lu_lambdas``, less
  those never their family's best on the first run, ``linspace`` only: ``trailing`` gave the same
  grids to 3 digits), DDIM, Euler and Heun (``trailing``; Euler and Heun in their own ``x / s``
  variables through ``scale_model_input``).  ``HeunDiscreteScheduler`` ends at sigma 0, so its
  output is compared with the reference's denoised prediction ``D(x_ref, t_end)``.
- k-diffusion's LMS, DPM-Solver++(2M) and (3M) (at ``eta = 0``: its ODE form) in EDM variables
  (``D(y, sigma_hat) = model.denoise(s y, t)``), on Karras and exponential sigmas between
  ``sigma_hat(T)`` and ``sigma_hat(t_end)`` (its Euler is our DDIM; Heun, DPM-2 and DPM++(2S) were
  never competitive on the first run).

Ours: each multistep solver on the ``logsnr``, ``edm`` and ``quadratic`` grids (``uniform`` was
never the best on the first run; DDIM on ``quadratic`` only, Heun dropped: it was never
competitive below 50 NFE), DPM-Solver-v3 with statistics computed from the model
(:func:`scoresde.sampling.compute_ems`, ``--v3-pilot`` trajectories, ``--v3-knots`` knots), and
``grid="optimized"`` (:func:`scoresde.sampling.optimize_grid`, a pilot of ``--opt-pilot`` prior
draws of its own seed, one sweep, a dopri5 reference at ``--opt-ref-tol``) for ``--opt-solvers``
at ``--opt-nfes``, and a bespoke non-stationary solver (Shaul et al. 2024:
:func:`scoresde.sampling.fit_bespoke`, ``method="bespoke"``) per ``--bespoke-nfes`` budget, trained
from the best of our base solvers and grids on ``--bespoke-pilot`` prior draws of another seed than
the pathwise draws (which are therefore held out); their one-off cost (seconds on the shared core,
pilot network evaluations) is reported and not counted in the NFE.  ``--bespoke-only`` adds the
bespoke rows to a model's stored ``result.json`` (the same pathwise draws and reference made again)
without running the peers again.  ``--bespoke-holdout`` validation draws (seed 4096, their own
generator) choose the iterate of least validation error (every ``--bespoke-eval-every``
iterations); ``--bespoke-batch`` trains by minibatch Adam; ``--bespoke-ref-tol`` sets the fits'
reference tolerance; ``--bespoke-from RESULT.json`` reuses another run's fits of the same model.
``--bespoke-only --bespoke-afs`` fits, per budget ``n``, an (n+1)-step bespoke solver through the
analytic first step (one stored data prediction per label at ``T``, from ``--afs-pilot`` prior
draws of its own seed under each label: Zhou et al. 2024) on the same training and validation
draws, and keeps it only where its validation RMS beats the stored fit's (:func:`afs_bespoke_runs`).

Each cell stores every draw's squared error besides its RMS, and each ratio of ours to the best
peer is reported with the standard error of a paired bootstrap over the draws
(:func:`ratio_bootstrap`: the two configurations fixed as chosen on all draws) and the fraction of
resamples at or below the target 0.5.  ``benchmarks/samplers_learned_fresh.sh MODEL WORK`` reruns
one model on fresh draws with its stored fits (``--path-seed``, ``--n-path``, ``--bespoke-from``).

(b) Sample quality.  The best configuration (by the RMS of (a)) of ours and of the peers (any
family) at NFE 10 and 20 sample ``--samples`` class-conditional images from each of ``--seeds``
seeds; outputs clamped to [-1, 1] are scored by the library's reference classifier (trained on the
training split only): class accuracy and the Frechet distance of its features to the held-out
split, mean and standard deviation over the seeds.

Each model's run writes ``<work>/<key>/result.json``; the page is assembled from every result
found there (so models can run in separate processes), keeping the hand-written section between
the ``HAND-WRITTEN`` markers of an existing page, and, for a model with no result in ``--work``,
its summary rows and section of the existing page.

The defaults are sized for a shared 2-core CPU (about 10 CPU-minutes per model, training
included): 32 pathwise draws, 200 samples x 3 seeds for quality, 2 CPU-minutes of training.

Usage (the run of the page: three models, see the page for the wall time; a smoke test with
``--train-minutes 0.2 --n-path 8 --samples 20 --seeds 2 --nfes 5,10,20 --opt-nfes 5 --v3-knots 20
--work /tmp/sl_smoke``)::

    PYTHONPATH=src python benchmarks/samplers_learned.py --models vp8,ve8,diffusers8
    PYTHONPATH=src python benchmarks/samplers_learned.py --models unet28 --opt-solvers unipc

(``unet28`` on the page: a cached 600-step model of the recipe; with no cache it is trained for
``--train-minutes``.)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

import scoresde as ss

sys.path.insert(0, str(Path(__file__).resolve().parent))
import samplers as oracle_bench
from distill_digits import train_minutes
from scoresde._core.tensors import append_dims
from scoresde.data.images import DataSplit, load_dataset
from scoresde.evaluation import classifier_report, reference_classifier
from scoresde.io.checkpoint import load_checkpoint
from scoresde.train.losses import ddpm_loss
from scoresde.train.trainer import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
NFES = (5, 8, 10, 15, 20, 50)
QUALITY_NFES = (10, 20)
T_END = 1e-3
N_TRAIN = 1000
MODELS = ("vp8", "ve8", "diffusers8", "unet28")
# Our PF-ODE solvers: (method, evaluations per step, option suffix, options); each on every grid.
OURS: list[tuple[str, int, str, dict]] = [
    ("dpm_solver++_2m", 1, "", {}),
    ("dpm_solver++_3m", 1, "", {}),
    ("unipc", 1, "", {}),
    ("unipc", 1, ", order 3", {"order": 3}),
    ("deis", 1, "", {}),
    ("ipndm", 1, "", {}),
    ("ddim", 1, "", {}),
]
GRIDS = ("logsnr", "edm", "quadratic")
V3_GRIDS = ("logsnr", "quadratic")
OPT_OPTIONS = {"unipc": {}, "unipc_o3": {"order": 3}, "dpm_solver++_3m": {}, "dpm_solver++_2m": {}}

Run = Callable[[Tensor, Tensor, int], tuple[Tensor, int]]
"""``run(x_T, y, nfe_budget) -> (x at t_end, nfe used)``: one sampler configuration."""


def rms(x: Tensor, ref: Tensor) -> float:
    return oracle_bench.rms(x, ref)


def median_path(x: Tensor, ref: Tensor) -> float:
    """The median over draws of each path's RMS error: robust to the few paths that switch digit."""
    return float((x.double() - ref.double()).pow(2).flatten(1).mean(1).median().sqrt())


def cycling(n: int, device: torch.device | None = None) -> Tensor:
    """Labels ``0, 1, ..., 9, 0, 1, ...`` for a batch of ``n``."""
    return torch.arange(n, device=device) % 10


class CyclingLabels(ss.ScoreFunction):
    """A class-conditional model that takes cycling labels when called without ``y`` (the pilots of
    ``optimize_grid`` pass none)."""

    def __init__(self, inner: ss.ScoreFunction) -> None:
        super().__init__(inner.sde, inner.prediction)
        self.inner = inner

    def _y(self, x: Tensor, y: Tensor | None) -> Tensor:
        return cycling(x.shape[0], x.device) if y is None else y

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        return self.inner(x, t, self._y(x, y))

    def predict(self, kind: str, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        return self.inner.predict(kind, x, t, self._y(x, y))


# ---------------------------------------------------------------------------------------------- #
# The models.
# ---------------------------------------------------------------------------------------------- #
@dataclass
class Learned:
    """A learned model under test.

    Attributes:
        key, title: its name in ``--models`` and on the page.
        model: the score model (eval mode).
        data: the data split it was trained on (``test`` is held out).
        note: how it was trained (or that it was cached).
        native: for a diffusers model, ``(unet, scheduler config)``: its schedulers call the UNet
            on their own table; ``None``: schedulers get the model's table as ``trained_betas``.
        clf_epochs: training epochs of the reference classifier that scores its samples.
    """

    key: str
    title: str
    model: ss.ScoreFunction
    data: DataSplit
    note: str
    native: tuple[torch.nn.Module, dict] | None = None
    clf_epochs: int = 10


def train_config(key: str, work: Path, seed: int) -> TrainConfig:
    """The ``TrainConfig`` of our own models (``vp8`` is :func:`distill_digits.train_teacher`'s)."""
    # weighting "auto" (the library's default, named here so that the cache records it): sigma2 for
    # the eps network of ve8, edm for the v networks (docs/bench_weighting_eps.md).
    base = {
        "data": "digits", "conditional": True, "label_dropout": 0.1, "steps": 10**9, "seed": seed,
        "weighting": "auto",
    }  # fmt: skip
    if key == "vp8":
        return TrainConfig(**base, out=str(work), name="teacher", progress=False)
    if key == "ve8":
        return TrainConfig(
            **base, sde="ve", sde_options={"sigma_min": 0.01, "sigma_max": 50.0}, prediction="eps",
            time_input="log_sigma", out=str(work), name="model", progress=False,
        )  # fmt: skip
    raise ValueError(key)


def own_model(key: str, work: Path, minutes: float, seed: int) -> Learned:
    """``vp8`` / ``ve8``: the cached checkpoint of ``work`` (trained now when absent)."""
    cfg = train_config(key, work, seed)
    run = work / cfg.name
    ckpt = run / "checkpoints" / "last.safetensors"
    if ckpt.is_file():
        config = load_checkpoint(ckpt).config
        steps, weighting = config.get("step"), config.get("train", {}).get("weighting", "?")
        note = f"cached checkpoint of {steps} steps in `{work}` (trained by an earlier run)"
    else:
        trainer, spent = train_minutes(cfg, minutes)
        weighting = cfg.weighting
        note = f"trained now: {trainer.step} steps in {spent / 60:.1f} CPU-minutes"
    note += f", DSM weighting `{weighting}`"
    model = load_checkpoint(run).model.eval()
    data = load_dataset(cfg.data, cfg.test_fraction, cfg.seed, cfg.image_size)
    if key == "vp8":
        title = "8x8 digits, VP, v prediction (the README recipe)"
    else:
        title = "8x8 digits, VE (sigma 0.01 -> 50), eps prediction, log-sigma time input"
    return Learned(key, title, model, data, note)


def diffusers_unet(seed: int) -> tuple[torch.nn.Module, object]:
    """A fresh class-conditional ``UNet2DModel`` for 8x8 images and its ``DDPMScheduler``."""
    from diffusers import DDPMScheduler, UNet2DModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)  # UNet2DModel draws its initial weights from the global RNG
        unet = UNet2DModel(
            sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=8, num_class_embeds=10,
        )  # fmt: skip
    sched = DDPMScheduler(num_train_timesteps=N_TRAIN, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    return unet, sched


def train_diffusers(folder: Path, data: DataSplit, minutes: float, seed: int) -> tuple[int, float]:
    """Train the ``UNet2DModel`` through the adapter with DDPM's loss for ``minutes`` of CPU time.

    AdamW (lr 2e-3, 200 warm-up steps, cosine decay over the budget), batch 32, gradient clip 1,
    EMA 0.999 (with warm-up); saves the EMA UNet and the scheduler as a diffusers folder.
    """
    from scoresde.interop.diffusers import from_diffusers

    unet, sched = diffusers_unet(seed)
    model = from_diffusers(unet, sched).model.train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = data.train, data.train_labels
    t0, budget, step = time.process_time(), 60.0 * minutes, 0
    while (spent := (time.process_time() - t0) / budget) < 1.0:
        lr = 2e-3 * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * min(spent, 1.0)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, x_all.shape[0], (32,), generator=gen)
        loss = ddpm_loss(model, x_all[idx], num_steps=N_TRAIN, y=y_all[idx], generator=gen).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.lerp_(p, 1 - decay)
    ema.save_pretrained(folder / "unet", safe_serialization=True)
    sched.save_pretrained(folder / "scheduler")
    (folder / "train.json").write_text(json.dumps({"steps": step, "cpu_seconds": time.process_time() - t0}))
    return step, time.process_time() - t0


def diffusers_model(work: Path, minutes: float, seed: int) -> Learned:
    """``diffusers8``: the cached diffusers folder of ``work/model`` (trained now when absent)."""
    from diffusers import DDPMScheduler, UNet2DModel

    from scoresde.interop.diffusers import from_diffusers

    data = load_dataset("digits", 0.1, seed, None)
    folder = work / "model"
    if (folder / "train.json").is_file():
        steps = json.loads((folder / "train.json").read_text())["steps"]
        note = f"cached diffusers folder of {steps} steps in `{work}` (trained by an earlier run)"
    else:
        folder.mkdir(parents=True, exist_ok=True)
        steps, spent = train_diffusers(folder, data, minutes, seed)
        note = f"trained now: {steps} steps in {spent / 60:.1f} CPU-minutes"
    unet = UNet2DModel.from_pretrained(folder / "unet").eval()
    sched = DDPMScheduler.from_pretrained(folder / "scheduler")
    model = from_diffusers(unet, sched).model.eval()
    title = "8x8 digits, diffusers UNet2DModel, eps prediction, linear beta table (1000 steps)"
    return Learned("diffusers8", title, model, data, note, native=(unet, dict(sched.config)))


def digits28_model(work: Path, minutes: float, seed: int) -> Learned:
    """``unet28``: the README's 28x28 recipe on the upsampled digits (cached in ``work/model``).

    The data is ``benchmarks/first_run_28px.py``'s keras-layout ``.npz`` (the 8x8 digits upsampled
    to 28x28, its 80 / 20 split), written to ``work`` when absent; the recipe is ``scoresde train
    --data FILE.npz --conditional --label-dropout 0.1`` with every other option at the
    ``TrainConfig`` default (VP SDE, v prediction, UNet of 16 base channels, weighting ``auto``,
    i.e. ``edm`` for v), trained for ``minutes`` of process CPU time when no checkpoint is cached.
    """
    from first_run_28px import make_keras_digits

    work.mkdir(parents=True, exist_ok=True)
    npz = work / "digits28.npz"
    if not npz.is_file():
        make_keras_digits(npz, seed)
    cfg = TrainConfig(
        data=str(npz), conditional=True, label_dropout=0.1, steps=10**9, seed=seed, weighting="auto",
        out=str(work), name="model", progress=False,
    )  # fmt: skip
    ckpt = work / cfg.name / "checkpoints" / "last.safetensors"
    if ckpt.is_file():
        config = load_checkpoint(ckpt).config
        train = config.get("train", {})
        note = (
            f"cached checkpoint of {config.get('step')} steps (batch {train.get('batch_size')}, "
            f"{train.get('base_channels')} base channels) in `{work}` (trained by an earlier run)"
        )
        weighting = train.get("weighting", "?")
    else:
        trainer, spent = train_minutes(cfg, minutes)
        note = f"trained now: {trainer.step} steps in {spent / 60:.1f} CPU-minutes"
        weighting = cfg.weighting
    note += f", DSM weighting `{weighting}`"
    model = load_checkpoint(work / cfg.name).model.eval()
    data = load_dataset(cfg.data, cfg.test_fraction, cfg.seed, cfg.image_size)
    title = "28x28 digits (upsampled), VP, v prediction (the README's 28x28 recipe)"
    # first_run_28px's reference classifier: 8 epochs on the training split.
    return Learned("unet28", title, model, data, note, clf_epochs=8)


def load_model(key: str, work: Path, minutes: float, seed: int) -> Learned:
    if key == "diffusers8":
        return diffusers_model(work, minutes, seed)
    if key == "unet28":
        return digits28_model(work, minutes, seed)
    return own_model(key, work, minutes, seed)


# ---------------------------------------------------------------------------------------------- #
# diffusers, driven by the network.
# ---------------------------------------------------------------------------------------------- #
def vp_table(sde: ss.SDE) -> Tensor:
    """``alphas_cumprod[i] = s^2 / (s^2 + sigma^2)`` at ``t = (i + 1) / 1000``: the VP form of the
    model's marginal (its own table for a VP SDE), float64 ``(1000,)``."""
    t = torch.arange(1, N_TRAIN + 1, dtype=torch.float64) / N_TRAIN * sde.T
    s, sigma = sde.marginal(t)
    return s.double() ** 2 / (s.double() ** 2 + sigma.double() ** 2)


def trained_betas(sde: ss.SDE) -> object:
    """``betas`` whose cumulative product of ``1 - beta`` is :func:`vp_table` (for ``trained_betas``)."""
    abar = vp_table(sde)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return (1.0 - abar / prev).numpy()


def vp_scale(sde: ss.SDE, t: float) -> float:
    """``c(t) = 1 / sqrt(s^2 + sigma^2)``: the scheduler's VP state is ``c(t) x`` (1 for VP)."""
    s, sigma = (float(v) for v in sde.marginal(torch.tensor([t], dtype=torch.float64)))
    return 1.0 / math.sqrt(s * s + sigma * sigma)


# The options of ``samplers.diffusers_configs`` kept (``trailing`` gave the multistep schedulers the
# grids of ``linspace`` to 3 digits, and the others were never their family's best on the first run).
DIFFUSERS_KEPT = {
    ("diffusers DDIM", "trailing"),
    *(
        ("diffusers DPMSolverMultistep (dpmsolver++)", o)
        for o in (
            "o2 linspace default",
            "o2 linspace karras",
            "o2 linspace exponential",
            "o2 lu_lambdas",
            "o3 linspace exponential",
        )
    ),
    *(
        ("diffusers UniPCMultistep (bh2)", o)
        for o in (
            "o2 linspace default",
            "o2 linspace karras",
            "o2 linspace exponential",
            "o3 linspace karras",
            "o3 linspace exponential",
        )
    ),
    *(
        ("diffusers DEISMultistep", o)
        for o in (
            "o2 linspace karras",
            "o2 linspace exponential",
            "o3 linspace karras",
            "o3 linspace exponential",
        )
    ),
}


def diffusers_configs() -> list[tuple[str, str, Callable, dict, int]]:
    """``(family, option, scheduler class, kwargs, evaluations per step)``."""
    from diffusers import EulerDiscreteScheduler, HeunDiscreteScheduler

    out = [
        (fam, opt, cls, kw, 1)
        for fam, opt, cls, kw in oracle_bench.diffusers_configs()
        if (fam, opt) in DIFFUSERS_KEPT
    ]
    kw = {"timestep_spacing": "trailing"}
    out.append(
        (
            "diffusers EulerDiscrete",
            "trailing",
            EulerDiscreteScheduler,
            {**kw, "final_sigmas_type": "sigma_min"},
            1,
        )
    )
    out.append(("diffusers HeunDiscrete (to sigma 0)", "trailing", HeunDiscreteScheduler, kw, 2))
    return out


def scheduler_run(lm: Learned, cls: Callable, kw: dict, per_step: int) -> Run:
    """One diffusers configuration as a :data:`Run` (see the module docstring for the variables).

    Sigma-space schedulers (``init_noise_sigma > 1``) hold ``y = x_vp / sqrt(abar)``: the network
    sees ``scale_model_input(y) = x_vp``; the output is mapped back by the last sigma (at sigma 0
    it is the clean-data estimate itself).
    """
    sde = lm.model.sde
    if lm.native is None:
        table = {"trained_betas": trained_betas(sde)}
    else:
        table = {k: lm.native[1][k] for k in ("beta_schedule", "beta_start", "beta_end")}
    c_T, c_end = vp_scale(sde, sde.T), vp_scale(sde, T_END)

    def eps_at(x_vp: Tensor, tau: Tensor, y: Tensor) -> Tensor:
        if lm.native is not None:
            return lm.native[0](x_vp, tau, class_labels=y, return_dict=False)[0]
        t = (float(tau) + 1.0) / N_TRAIN * sde.T
        return lm.model.eps(x_vp / vp_scale(sde, t), torch.full((x_vp.shape[0],), t), y)

    def run(x_T: Tensor, y: Tensor, budget: int) -> tuple[Tensor, int]:
        steps = budget if per_step == 1 else (budget + 1) // 2  # Heun: 2 steps - 1 evaluations
        sched = cls(num_train_timesteps=N_TRAIN, **table, **kw)
        sched.set_timesteps(steps)
        sigma_space = float(sched.init_noise_sigma) > 1.0
        x = x_T * c_T * (sched.init_noise_sigma if sigma_space else 1.0)
        nfe = 0
        for tau in sched.timesteps:
            inp = sched.scale_model_input(x, tau) if sigma_space else x
            e = eps_at(inp, tau, y)
            nfe += 1
            x = sched.step(e, tau, x).prev_sample
        if not sigma_space:
            return x / c_end, nfe
        last = float(sched.sigmas[-1])
        return (x if last == 0.0 else x / math.sqrt(last**2 + 1.0) / c_end), nfe

    return run


def diffusers_runs(lm: Learned) -> dict[tuple[str, str], tuple[Run, bool]]:
    """``{(family, option): (run, ends at sigma 0)}`` for every diffusers configuration."""
    return {
        (fam, opt): (scheduler_run(lm, cls, kw, per), "sigma 0" in fam)
        for fam, opt, cls, kw, per in diffusers_configs()
    }


# ---------------------------------------------------------------------------------------------- #
# k-diffusion, driven by the network.
# ---------------------------------------------------------------------------------------------- #
KD_SAMPLERS = {
    "lms": ("sample_lms", 1, {}),
    "dpmpp_2m": ("sample_dpmpp_2m", 1, {}),
    "dpmpp_3m_sde (eta=0)": ("sample_dpmpp_3m_sde", 1, {"eta": 0.0}),
}


def kdiffusion_runs(lm: Learned) -> dict[tuple[str, str], tuple[Run, bool]]:
    """k-diffusion's samplers on Karras and exponential sigmas (EDM variables ``y = x / s``)."""
    K = oracle_bench.load_k_sampling()
    sde, model = lm.model.sde, lm.model
    ends = torch.tensor([sde.T, T_END], dtype=torch.float64)
    s_T, s_end = (float(v) for v in sde.marginal(ends)[0])
    sig_max, sig_min = (float(v) for v in sde.sigma_hat(ends))

    def make(fn_name: str, per_step: int, kw: dict, sched: str) -> Run:
        def run(x_T: Tensor, y: Tensor, budget: int) -> tuple[Tensor, int]:
            count = [0]

            def denoiser(z: Tensor, sigma: Tensor) -> Tensor:
                count[0] += 1
                t = sde.t_of_lambda(-torch.log(sigma.double()))
                s = sde.marginal(t)[0]
                return model.denoise(z * append_dims(s.to(z.dtype), z.ndim), t.to(z.dtype), y)

            n = budget // per_step + 1  # sigmas from sigma_max to sigma_min, no appended zero
            if sched == "karras":
                sigmas = K.get_sigmas_karras(n, sig_min, sig_max, rho=7.0)[:-1]
            else:
                sigmas = K.get_sigmas_exponential(n, sig_min, sig_max)[:-1]
            extra = {"noise_sampler": lambda *a: 0.0} if "eta" in kw else {}
            z = getattr(K, fn_name)(denoiser, x_T / s_T, sigmas.to(x_T.dtype), disable=True, **kw, **extra)
            return z * s_end, count[0]

        return run

    return {
        (f"k-diffusion {name}", sched): (make(fn, per, kw, sched), False)
        for name, (fn, per, kw) in KD_SAMPLERS.items()
        for sched in ("karras", "exponential")
    }


# ---------------------------------------------------------------------------------------------- #
# Ours.
# ---------------------------------------------------------------------------------------------- #
def ours_run(model: ss.ScoreFunction, method: str, per_step: int, grid: object, opts: dict) -> Run:
    def run(x_T: Tensor, y: Tensor, budget: int) -> tuple[Tensor, int]:
        g = grid(budget) if callable(grid) else grid
        how = {} if isinstance(g, Tensor) else {"steps": budget // per_step, "t_end": T_END}
        res = ss.sample(model, x_T=x_T, y=y, method=method, grid=g, denoise=False, **how, **opts)
        return res.x, res.nfe

    return run


def ours_runs(model: ss.ScoreFunction) -> dict[tuple[str, str], tuple[Run, bool]]:
    return {
        (name, grid + suffix): (ours_run(model, name, per, grid, opts), False)
        for name, per, suffix, opts in OURS
        for grid in (("quadratic",) if name == "ddim" else GRIDS)
    }


def v3_runs(lm: Learned, args: argparse.Namespace, cost: dict) -> dict[tuple[str, str], tuple[Run, bool]]:
    """DPM-Solver-v3 with statistics computed from the model (their cost into ``cost``)."""
    shape = tuple(lm.data.train.shape[1:])
    t0 = time.time()
    ems = ss.sampling.compute_ems(
        lm.model, shape, generator=torch.Generator().manual_seed(7), pilot=args.v3_pilot, knots=args.v3_knots,
        t_end=T_END, y=cycling(args.v3_pilot),
    )  # fmt: skip
    cost["v3"] = {
        "seconds": time.time() - t0,
        "pilot": args.v3_pilot,
        "knots": args.v3_knots,
        "evaluations": args.v3_knots,
        "jvps": args.v3_knots + 1,
    }
    return {
        ("dpm_solver_v3", grid): (ours_run(lm.model, "dpm_solver_v3", 1, grid, {"ems": ems}), False)
        for grid in V3_GRIDS
    }


def optimized_runs(
    lm: Learned, args: argparse.Namespace, cost: dict
) -> dict[tuple[str, str], tuple[Run, bool]]:
    """``grid="optimized"`` for ``--opt-solvers`` at ``--opt-nfes`` (pilot costs into ``cost``)."""
    shape = tuple(lm.data.train.shape[1:])
    pilot_model = CyclingLabels(lm.model)
    out = {}
    for key in args.opt_solvers:
        method = "unipc" if key == "unipc_o3" else key
        opts = OPT_OPTIONS[key]
        grids: dict[int, Tensor] = {}
        for budget in args.opt_nfes:
            t0 = time.time()
            og = ss.sampling.optimize_grid(
                pilot_model, lm.model.sde, budget, method, shape, t_end=T_END, options=opts,
                pilot=args.opt_pilot, seed=12345, sweeps=1, evals=args.opt_evals,
                reference_tol=args.opt_ref_tol,
            )  # fmt: skip
            grids[budget] = og.times
            cost.setdefault("_grids", {})[(method, budget, tuple(sorted(opts.items())))] = og.times
            cost.setdefault("optimized", {})[f"{key} {budget}"] = {
                "seconds": time.time() - t0,
                "pilot_nfe": og.pilot_nfe,
                "pilot": og.pilot,
                "start": og.start,
                "pilot_error_start": og.pilot_error_start,
                "pilot_error": og.pilot_error,
            }
            print(f"  optimized {key} NFE {budget}: {cost['optimized'][f'{key} {budget}']}", flush=True)
        suffix = ", order 3" if key == "unipc_o3" else ""

        def grid_of(budget: int, grids: dict = grids) -> Tensor:
            return grids[budget]

        out[(method, "optimized" + suffix)] = (
            ours_run(lm.model, method, 1, grid_of, opts),
            False,
            tuple(args.opt_nfes),
        )
    return out  # type: ignore[return-value]


BESPOKE_BASES: list[tuple[str, dict]] = [
    ("unipc", {}),
    ("unipc", {"order": 3}),
    ("dpm_solver++_3m", {}),
    ("dpm_solver++_2m", {}),
    ("deis", {}),
]
"""The base solvers a bespoke solver may start from (each on every named grid, and on the
optimized grids of this run where there are some)."""

BESPOKE_SEED = 2024
"""Seed of the bespoke solvers' training draws: not the pathwise draws' (1), nor the quality
seeds' (1000 + k), nor the optimized grids' pilot (12345)."""

BESPOKE_HOLDOUT_SEED = 4096
"""Seed of the bespoke fits' validation draws (``--bespoke-holdout``): one generator of their own,
so every fit setting is chosen on the same validation draws, none of them the page's."""


def fit_record(fit: ss.sampling.BespokeFit, args: argparse.Namespace, ref_tol: float, starts: int) -> dict:
    """The cost entry of one bespoke fit: its settings, start, errors, one-off cost and solver."""
    st = fit.start
    order = f", order {st.options['order']}" if "order" in st.options else ""
    return {
        "seconds": fit.seconds,
        "pilot_nfe": fit.pilot_nfe,
        "pilot": args.bespoke_pilot,
        "iterations": args.bespoke_iters,
        "lr": args.bespoke_lr,
        "reference_tol": ref_tol,
        "starts": starts,
        "start": f"{st.base} [{st.grid}{order}]",
        "pilot_error_start": fit.pilot_error_start,
        "pilot_error": fit.pilot_error,
        "solver": fit.solver.to_json(),
    }


def bespoke_runs(lm: Learned, args: argparse.Namespace, cost: dict) -> dict:
    """A bespoke solver (:func:`scoresde.sampling.fit_bespoke`) per ``--bespoke-nfes`` budget.

    Trained on ``--bespoke-pilot`` prior draws of seed :data:`BESPOKE_SEED` (labels cycling), so
    the pathwise draws of the sweep (seed 1) are held out; it starts at the base solver and grid
    (:data:`BESPOKE_BASES` on every named grid, ``uniform`` included, and on this run's optimized
    grids) of least error on those training draws.  Its one-off cost goes into ``cost["bespoke"]``.
    """
    sde, shape = lm.model.sde, tuple(lm.data.train.shape[1:])
    grids_made = cost.get("_grids", {})
    solvers: dict[int, ss.sampling.BespokeSolver] = {}
    if args.bespoke_from is not None:  # reuse stored fits (another run of the same model): no fitting
        stored = json.loads(args.bespoke_from.read_text())["cost"]["bespoke"]
        for budget in args.bespoke_nfes:
            entry = stored[str(budget)]
            solvers[budget] = ss.sampling.BespokeSolver.from_json(entry["solver"])
            cost.setdefault("bespoke", {})[str(budget)] = {**entry, "reused_from": str(args.bespoke_from)}
            print(f"  bespoke NFE {budget}: reused from {args.bespoke_from}", flush=True)
    for budget in args.bespoke_nfes if args.bespoke_from is None else ():
        starts = []
        for method, opts in BESPOKE_BASES:
            named = [(g, ss.time_grid(sde, budget, g, t_end=T_END)) for g in ss.GRIDS]
            key = (method, budget, tuple(sorted(opts.items())))
            if key in grids_made:
                named.append(("optimized", grids_made[key]))
            starts += [ss.sampling.bespoke_from_base(sde, method, ts, opts, grid=g) for g, ts in named]
        hold = args.bespoke_holdout
        ref_tol = args.bespoke_ref_tol or args.opt_ref_tol
        fit = ss.sampling.fit_bespoke(
            lm.model, sde, budget, shape, starts=starts, pilot=args.bespoke_pilot,
            iterations=args.bespoke_iters, lr=args.bespoke_lr, y=cycling(args.bespoke_pilot),
            generator=torch.Generator().manual_seed(BESPOKE_SEED), reference_tol=ref_tol,
            holdout=hold, holdout_y=cycling(hold) if hold else None,
            holdout_generator=torch.Generator().manual_seed(BESPOKE_HOLDOUT_SEED),
            eval_every=args.bespoke_eval_every, batch=args.bespoke_batch, loss=args.bespoke_loss,
        )  # fmt: skip
        solvers[budget] = fit.solver
        st = fit.start
        order = f", order {st.options['order']}" if "order" in st.options else ""
        cost.setdefault("bespoke", {})[str(budget)] = fit_record(fit, args, ref_tol, len(starts))
        if hold or args.bespoke_batch or args.bespoke_loss != "mse":
            cost["bespoke"][str(budget)].update(
                holdout=hold, holdout_seed=BESPOKE_HOLDOUT_SEED, batch=args.bespoke_batch,
                loss=args.bespoke_loss, eval_every=args.bespoke_eval_every,
                val_error_start=fit.val_error_start, val_error=fit.val_error,
                best_iteration=fit.best_iteration, val_history=fit.val_history,
            )  # fmt: skip
        print(
            f"  bespoke NFE {budget}: from {st.base} [{st.grid}{order}] pilot RMS "
            f"{fit.pilot_error_start:.3e} -> {fit.pilot_error:.3e}, {fit.seconds:.0f} s"
            + (
                f"; validation RMS {fit.val_error_start:.3e} -> {fit.val_error:.3e} (iteration "
                f"{fit.best_iteration}; {fit.val_history})"
                if hold
                else ""
            ),
            flush=True,
        )

    def run(x_T: Tensor, y: Tensor, budget: int) -> tuple[Tensor, int]:
        kw = {"solver": solvers[budget]}
        res = ss.sample(lm.model, x_T=x_T, y=y, method="bespoke", t_end=T_END, denoise=False, **kw)
        return res.x, res.nfe

    return {("bespoke", "trained"): (run, False, tuple(args.bespoke_nfes))}


AFS_SEED = 31337
"""Seed of the analytic first step's pilot (``--bespoke-afs``): none of the other seeds above, nor
the pathwise draws' (1, 7) or DPM-Solver-v3's pilot (7)."""

AFS_ROW = ("bespoke", "AFS + trained")
"""The row of the ``--bespoke-afs`` solvers (cells only where they beat the stored fit on validation)."""


def afs_bespoke_runs(lm: Learned, args: argparse.Namespace, cost: dict) -> dict:
    """``--bespoke-afs``: per ``--bespoke-nfes`` budget ``n``, an (n+1)-step bespoke solver through
    the analytic first step (:func:`scoresde.sampling.analytic_first_step`, one mean per label from
    ``--afs-pilot`` prior draws of seed :data:`AFS_SEED` under each of the 10 labels), fitted as
    :func:`bespoke_runs` fits (the same training draws of seed :data:`BESPOKE_SEED`, validation
    draws of seed :data:`BESPOKE_HOLDOUT_SEED`, reference tolerance and Adam settings; the reference
    is the network's own ODE, not the wrapper's), from the best of :data:`BESPOKE_BASES` on every
    named (n+1)-step grid run through the wrapper.  The model's stored n-step fit
    (``cost["bespoke"][n]["solver"]``) is measured on the same validation draws; the AFS solver is
    kept for budget ``n`` only where its validation RMS is lower (:func:`afs_settle` then moves it
    into the results).  Everything goes into ``cost["bespoke"][n]["afs"]``.
    """
    sde, shape = lm.model.sde, tuple(lm.data.train.shape[1:])
    hold = args.bespoke_holdout
    if not hold:
        raise SystemExit("--bespoke-afs chooses on validation draws: give --bespoke-holdout")
    ref_tol = args.bespoke_ref_tol or args.opt_ref_tol
    t0 = time.time()
    with torch.no_grad():
        afs = ss.sampling.analytic_first_step(
            lm.model, shape, generator=torch.Generator().manual_seed(AFS_SEED), pilot=args.afs_pilot,
            num_classes=10,
        )  # fmt: skip
    afs_seconds = time.time() - t0
    print(f"  AFS means: {args.afs_pilot} draws x 10 labels, {afs_seconds:.1f} s", flush=True)
    solvers: dict[int, ss.sampling.BespokeSolver] = {}
    for budget in args.bespoke_nfes:
        entry = cost.get("bespoke", {}).get(str(budget))
        if entry is None:
            raise SystemExit(f"--bespoke-afs: no stored bespoke fit at NFE {budget} to compare with")
        stored = ss.sampling.BespokeSolver.from_json(entry["solver"])

        def validation(**kw: object) -> dict:
            return dict(
                reference_tol=ref_tol, holdout=hold, holdout_y=cycling(hold),
                holdout_generator=torch.Generator().manual_seed(BESPOKE_HOLDOUT_SEED),
                generator=torch.Generator().manual_seed(BESPOKE_SEED), **kw,
            )  # fmt: skip

        # The stored fit on the validation draws (no training: its start error there).
        check = ss.sampling.fit_bespoke(
            lm.model, sde, budget, shape, starts=[stored], pilot=1, iterations=0, y=cycling(1), **validation()
        )
        stored_val = check.val_error_start
        steps = budget + 1
        starts = [
            ss.sampling.bespoke_from_base(sde, method, ss.time_grid(sde, steps, g, t_end=T_END), opts, grid=g)
            for method, opts in BESPOKE_BASES
            for g in ss.GRIDS
        ]
        fit = ss.sampling.fit_bespoke(
            afs, sde, steps, shape, starts=starts, pilot=args.bespoke_pilot, iterations=args.bespoke_iters,
            lr=args.bespoke_lr, y=cycling(args.bespoke_pilot), eval_every=args.bespoke_eval_every,
            batch=args.bespoke_batch, loss=args.bespoke_loss, reference_model=lm.model, **validation(),
        )  # fmt: skip
        kept = fit.val_error < stored_val * (1 - 1e-9)
        if kept:
            solvers[budget] = fit.solver
        st = fit.start
        order = f", order {st.options['order']}" if "order" in st.options else ""
        entry["afs"] = {
            "kept": kept,
            "means_pilot": args.afs_pilot,
            "means_seed": AFS_SEED,
            "means_seconds": afs_seconds,
            "means": afs.mean.tolist(),
            "stored_val_error": stored_val,
            **fit_record(fit, args, ref_tol, len(starts)),
            "batch": args.bespoke_batch,
            "loss": args.bespoke_loss,
            "holdout": hold,
            "eval_every": args.bespoke_eval_every,
            "start": f"{st.base} [{st.grid}{order}], {steps} steps",
            "val_error_start": fit.val_error_start,
            "val_error": fit.val_error,
            "best_iteration": fit.best_iteration,
            "val_history": fit.val_history,
        }
        print(
            f"  AFS + {steps}-step bespoke at NFE {budget}: from {st.base} [{st.grid}{order}] training RMS "
            f"{fit.pilot_error_start:.3e} -> {fit.pilot_error:.3e}, validation {fit.val_error_start:.3e} -> "
            f"{fit.val_error:.3e} (iteration {fit.best_iteration}) vs the stored fit's {stored_val:.3e}: "
            f"{'kept' if kept else 'not kept'}; {fit.seconds:.0f} s",
            flush=True,
        )
    every = {b: entry["afs"]["solver"] for b, entry in cost["bespoke"].items() if "afs" in entry}

    def run(x_T: Tensor, y: Tensor, budget: int) -> tuple[Tensor, int]:
        solver = ss.sampling.BespokeSolver.from_json(every[str(budget)])
        res = ss.sample(afs, x_T=x_T, y=y, method="bespoke", solver=solver, t_end=T_END, denoise=False)
        return res.x, res.nfe

    # Every budget is swept (its page-draw error recorded, not chosen on); afs_settle keeps the kept.
    return {AFS_ROW: (run, False, tuple(args.bespoke_nfes))}


def afs_settle(results: dict, cost: dict, budgets: tuple[int, ...]) -> None:
    """After the sweep of :func:`afs_bespoke_runs`: record each budget's AFS cell in its cost entry;
    where the AFS solver was kept (on validation) it replaces the stored fit's cell, else it goes."""
    row = results.get(AFS_ROW, {})
    plain = results.get(("bespoke", "trained"), {})
    for b in budgets:
        a = cost["bespoke"][str(b)]["afs"]
        a["page_cell"] = list(row[b]) if b in row else None
        if a["kept"]:
            a["replaced_cell"] = list(plain.pop(b)) if b in plain else None
        else:
            row.pop(b, None)
    if not row:
        results.pop(AFS_ROW, None)


# ---------------------------------------------------------------------------------------------- #
# Measurement of one model.
# ---------------------------------------------------------------------------------------------- #
def sweep(runs: dict, x_T: Tensor, y: Tensor, ref: Tensor, ref_x0: Tensor, nfes: tuple[int, ...]) -> dict:
    """``{(family, option): {budget: (rms, nfe, median path, per-draw squared errors)}}`` (an error
    text where one fails); the last entry, a list of each draw's mean squared error per pixel (the
    RMS is the root of its mean), feeds :func:`ratio_bootstrap`."""
    out: dict = {}
    for key, entry in runs.items():
        run, to_x0 = entry[0], entry[1]
        budgets = entry[2] if len(entry) > 2 else nfes
        target = ref_x0 if to_x0 else ref
        row: dict = {}
        for budget in budgets:
            try:
                x, nfe = run(x_T, y, budget)
                per_draw = oracle_bench.per_draw(x, target.double()).tolist()
                row[budget] = (rms(x, target), nfe, median_path(x, target), per_draw)
            except Exception as e:  # a configuration the scheduler refuses
                row[budget] = (math.nan, f"error: {type(e).__name__}", math.nan)
        out[key] = row
    return out


def quality(draw: Callable[[Tensor, Tensor], Tensor], lm: Learned, args, clf) -> dict[str, float]:
    """Accuracy and Frechet distance over ``args.seeds`` sample sets: means and standard deviations."""
    y = cycling(args.samples)
    acc, fd = [], []
    shape = tuple(lm.data.train.shape[1:])
    for k in range(args.seeds):
        z = torch.randn(args.samples, *shape, generator=torch.Generator().manual_seed(1000 + k))
        x = draw(z * lm.model.sde.prior_std(), y).clamp(-1, 1).float()
        rep = classifier_report(clf, x, lm.data.test, y)
        acc.append(rep["accuracy"])
        fd.append(rep["frechet"])
    a, f = torch.tensor(acc), torch.tensor(fd)
    sd = (lambda v: float(v.std())) if args.seeds > 1 else (lambda v: 0.0)
    return {"acc": float(a.mean()), "acc_sd": sd(a), "fd": float(f.mean()), "fd_sd": sd(f)}


def family_of(key: tuple[str, str]) -> str:
    return key[0] if key[0].startswith(("diffusers", "k-diffusion")) else f"scoresde {key[0]}"


def best(results: dict, budget: int, ours: bool, by: int = 0) -> tuple[float, int, tuple[str, str]] | None:
    """``(error, nfe, (family, option))`` of the least error at ``budget`` on one side."""
    cands = [
        (row[budget][by], row[budget][1], key)
        for key, row in results.items()
        if (family_of(key).startswith("scoresde") == ours)
        and budget in row
        and isinstance(row[budget][1], int)
        and math.isfinite(row[budget][by])
    ]
    return min(cands, key=lambda c: c[0]) if cands else None


@dataclass
class RatioSpread:
    """Ours / best peer (pathwise RMS) with its draw-to-draw spread (:func:`ratio_bootstrap`).

    Attributes:
        ratio: the ratio on all draws.
        se: its bootstrap standard error (standard deviation over the resamples).
        p_half: the fraction of resamples whose ratio is at most 0.5 (the issue's target).
    """

    ratio: float
    se: float
    p_half: float


BOOT_RESAMPLES, BOOT_SEED = 2000, 99
"""The bootstrap of the page's ratios (the oracle benchmark's: ``samplers.BOOT``)."""


def ratio_bootstrap(
    ours: Tensor, peer: Tensor, resamples: int = BOOT_RESAMPLES, seed: int = BOOT_SEED
) -> RatioSpread:
    """Paired bootstrap (Efron & Tibshirani 1993, ch. 6) of ``sqrt(mean(ours) / mean(peer))``.

    Args:
        ours, peer: ``(draws,)`` per-draw squared errors of two fixed configurations on the same
            draws (the RMS over all draws is the root of their mean).
        resamples: bootstrap resamples.
        seed: seed of the resampling generator (the same draw indices for both sides).

    Returns:
        The ratio on all draws, its standard error over the resamples, and the fraction of
        resamples with ratio <= 0.5.  The configurations stay fixed (chosen once on all draws), so
        the spread is that of the draws only, not of choosing the best option on them (which
        ``samplers.bootstrap_ratio`` redoes per resample); with one option per side the two agree.
    """
    a, b = torch.as_tensor(ours, dtype=torch.float64), torch.as_tensor(peer, dtype=torch.float64)
    if a.shape != b.shape or a.ndim != 1 or a.numel() == 0:
        raise ValueError(f"ours and peer must be equal non-empty (draws,) vectors: {a.shape}, {b.shape}")
    n = a.numel()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(n, (resamples, n), generator=g)
    w = torch.zeros(resamples, n, dtype=torch.float64).scatter_add_(
        1, idx, torch.ones(idx.shape, dtype=torch.float64)
    )
    reps = ((w @ a) / (w @ b)).sqrt()
    return RatioSpread(
        math.sqrt(float(a.mean() / b.mean())), float(reps.std()), float((reps <= 0.5).double().mean())
    )


def ratio_spread(res: dict, budget: int) -> RatioSpread | None:
    """:func:`ratio_bootstrap` of our best and the best peer at ``budget`` (each chosen by the RMS
    on all draws); ``None`` where a side is missing or a result stored no per-draw errors."""
    bo, bp = best(res, budget, True), best(res, budget, False)
    if bo is None or bp is None:
        return None
    eo, ep = res[bo[2]][budget], res[bp[2]][budget]
    if len(eo) < 4 or len(ep) < 4:
        return None
    return ratio_bootstrap(torch.tensor(eo[3]), torch.tensor(ep[3]))


def spread_cell(ratio: float, spread: RatioSpread | None) -> str:
    """``0.47 ± 0.05 (P 0.72)``: the ratio, its standard error and P(ratio <= 0.5); ``-`` for the
    spread of a result without per-draw errors."""
    if spread is None:
        return f"{ratio:.2f} ± - (P -)"
    return f"{ratio:.2f} ± {spread.se:.2f} (P {spread.p_half:.2f})"


def measure(lm: Learned, args: argparse.Namespace) -> dict:
    """Everything the page reports about one model, as a JSON-able dict."""
    load0, t_start = os.getloadavg(), time.time()
    model, nfes = lm.model, tuple(args.nfes)
    shape = tuple(lm.data.train.shape[1:])
    clf = reference_classifier(
        lm.data.train,
        lm.data.train_labels,
        epochs=lm.clf_epochs,
        seed=args.seed,
        cache_dir=args.work / "cache",
    )
    real = classifier_report(clf, lm.data.test, lm.data.test, lm.data.test_labels, floor_images=lm.data.train)
    cost: dict = {}
    with torch.no_grad():
        g = torch.Generator().manual_seed(args.path_seed)
        x_T = torch.randn(args.n_path, *shape, generator=g) * model.sde.prior_std()
        y = cycling(args.n_path)
        t0 = time.time()
        ref_res = ss.sample(
            model, x_T=x_T, y=y, method="dopri5", steps=1, t_end=T_END, denoise=False,
            rtol=args.ref_tol, atol=args.ref_tol,
        )  # fmt: skip
        ref = ref_res.x
        ref_x0 = model.denoise(ref, torch.full((args.n_path,), T_END), y)
        check = ss.sample(model, x_T=x_T, y=y, method="dpm_solver_3", steps=100, grid="logsnr", t_end=T_END,
                          denoise=False).x  # fmt: skip
        floor = rms(check, ref)
        print(f"[{lm.key}] reference: dopri5 NFE {ref_res.nfe}; DPM-Solver-3 (300 NFE) vs it {floor:.1e} "
              f"({time.time() - t0:.0f}s)", flush=True)  # fmt: skip
        runs = ours_runs(model)
        if args.v3_knots > 0:
            # The math attention kernel: CPU flash attention (diffusers' UNet) has no forward AD.
            try:
                with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
                    runs.update(v3_runs(lm, args, cost))
            except RuntimeError as e:  # forward AD that the network's operators lack
                cost["v3_error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
            print(f"[{lm.key}] v3 statistics: {cost.get('v3', cost.get('v3_error'))}", flush=True)
        if args.opt_nfes and args.opt_solvers:
            runs.update(optimized_runs(lm, args, cost))
        if args.bespoke_nfes:
            runs.update(bespoke_runs(lm, args, cost))
        cost.pop("_grids", None)
        runs.update(diffusers_runs(lm))
        if not args.no_kdiffusion:
            runs.update(kdiffusion_runs(lm))
        t0 = time.time()
        results = sweep(runs, x_T, y, ref, ref_x0, nfes)
        t_sweep = time.time() - t0
        print(f"[{lm.key}] sweep: {t_sweep:.0f}s", flush=True)

        # (b) sample quality of the best of each side at NFE 10 and 20.
        qrows = []
        t0 = time.time()
        for budget in QUALITY_NFES:
            if budget not in nfes:
                continue
            for ours in (True, False):
                b = best(results, budget, ours)
                if b is None:
                    continue
                run = runs[b[2]][0]

                def draw(xt: Tensor, yy: Tensor, run: Run = run, budget: int = budget) -> Tensor:
                    return run(xt, yy, budget)[0]

                qrows.append(
                    {"side": "ours" if ours else "best peer", "config": list(b[2]), "nfe": b[1],
                     **quality(draw, lm, args, clf)}
                )  # fmt: skip
                print(f"[{lm.key}] {qrows[-1]}", flush=True)
        t_quality = time.time() - t0
    return {
        "key": lm.key,
        "title": lm.title,
        "note": lm.note,
        "command": " ".join(["PYTHONPATH=src python benchmarks/samplers_learned.py", *sys.argv[1:]]),
        "n_path": args.n_path,
        "path_seed": args.path_seed,
        "ref_tol": args.ref_tol,
        "ref_nfe": ref_res.nfe,
        "floor": floor,
        "nfes": list(nfes),
        "samples": args.samples,
        "seeds": args.seeds,
        "real": {"acc": real["accuracy"], "floor": real["frechet_floor"]},
        "cost": cost,
        "results": [[list(k), {str(b): list(v) for b, v in row.items()}] for k, row in results.items()],
        "quality": qrows,
        "seconds": {"sweep": t_sweep, "quality": t_quality, "total": time.time() - t_start},
        "load": [load0[0], os.getloadavg()[0]],
    }


def add_bespoke(lm: Learned, args: argparse.Namespace) -> dict:
    """``--bespoke-only``: the model's ``result.json`` with bespoke rows added (peers not rerun).

    The pathwise draws and their reference are made again exactly as :func:`measure` makes them
    (seed 1, ``n_path`` and ``ref_tol`` of the stored run), so the new rows compare with the stored
    ones; the budgets of ``--bespoke-nfes`` replace their bespoke cells, the others stay.  The
    optimized grids of ``--opt-solvers`` are made again (the same seed: the stored run's
    grids) as bespoke starts only; their rows and costs stay the stored ones.  Where a bespoke
    solver becomes our best at a quality budget, our quality row there is
    measured again with it (same seeds and samples).
    """
    path = args.work / lm.key / "result.json"
    r = json.loads(path.read_text())
    load0, t_start = os.getloadavg(), time.time()
    model, shape = lm.model, tuple(lm.data.train.shape[1:])
    cost = r["cost"]
    with torch.no_grad():
        g = torch.Generator().manual_seed(r.get("path_seed", 1))
        x_T = torch.randn(r["n_path"], *shape, generator=g) * model.sde.prior_std()
        y = cycling(r["n_path"])
        ref = ss.sample(
            model, x_T=x_T, y=y, method="dopri5", steps=1, t_end=T_END, denoise=False, rtol=r["ref_tol"],
            atol=r["ref_tol"],
        ).x  # fmt: skip
        ref_x0 = model.denoise(ref, torch.full((r["n_path"],), T_END), y)
    scratch: dict = {}
    if args.opt_nfes and args.opt_solvers:
        optimized_runs(lm, args, scratch)
    cost["_grids"] = scratch.get("_grids", {})
    runs = afs_bespoke_runs(lm, args, cost) if args.bespoke_afs else bespoke_runs(lm, args, cost)
    cost.pop("_grids", None)
    with torch.no_grad():
        new = sweep(runs, x_T, y, ref, ref_x0, tuple(args.bespoke_nfes))
        results = load_results(r)
        for k, row in new.items():  # the budgets run now replace their cells; the others stay
            results[k] = {**results.get(k, {}), **row}
        if args.bespoke_afs:
            afs_settle(results, cost, tuple(args.bespoke_nfes))
        r["results"] = [[list(k), {str(b): list(v) for b, v in row.items()}] for k, row in results.items()]
        clf = None
        for q in r["quality"]:
            if q["side"] != "ours":
                continue
            b = best(results, q["nfe"], True)
            if b is None or b[2] not in runs or q["nfe"] not in args.bespoke_nfes:
                continue
            if clf is None:
                clf = reference_classifier(
                    lm.data.train, lm.data.train_labels, epochs=lm.clf_epochs, seed=args.seed,
                    cache_dir=args.work / "cache",
                )  # fmt: skip
            run, budget = runs[b[2]][0], q["nfe"]

            def draw(xt: Tensor, yy: Tensor, run: Run = run, budget: int = budget) -> Tensor:
                return run(xt, yy, budget)[0]

            q.update({"config": list(b[2]), **quality(draw, lm, args, clf)})
            print(f"[{lm.key}] {q}", flush=True)
    command = " ".join(["PYTHONPATH=src python benchmarks/samplers_learned.py", *sys.argv[1:]])
    r["bespoke_command"] = (f"{r['bespoke_command']}`, then `" if "bespoke_command" in r else "") + command
    r["bespoke_seconds"] = r.get("bespoke_seconds", 0.0) + time.time() - t_start
    r["bespoke_load"] = [r.get("bespoke_load", load0)[0], os.getloadavg()[0]]
    return r


# ---------------------------------------------------------------------------------------------- #
# The page.
# ---------------------------------------------------------------------------------------------- #
HAND_BEGIN = "<!-- HAND-WRITTEN: kept by the script between these markers -->"
HAND_END = "<!-- END HAND-WRITTEN -->"


def load_results(r: dict) -> dict:
    return {tuple(k): {int(b): tuple(v) for b, v in row.items()} for k, row in r["results"]}


def fmt(e: tuple | None) -> str:
    if e is None:
        return "-"
    return f"{e[0]:.2e} ({family_of(e[2])} [{e[2][1]}])"


def target_fd(r: dict) -> tuple[str, str]:
    """``(cell, verdict)``: ours at NFE 10 against the best peer at NFE 20 (met: within the combined
    spread, or better)."""
    ours = next((row for row in r["quality"] if row["side"] == "ours" and row["nfe"] <= 10), None)
    peer = next((row for row in r["quality"] if row["side"] == "best peer" and row["nfe"] > 10), None)
    if ours is None or peer is None:
        return "-", "not run"
    spread = math.hypot(ours["fd_sd"], peer["fd_sd"])
    diff = ours["fd"] - peer["fd"]
    verdict = "met" if diff <= spread else "not met"
    if diff <= spread and diff > 0:
        verdict += " (within the spread)"
    cell = f"{ours['fd']:.2f} ± {ours['fd_sd']:.2f} vs {peer['fd']:.2f} ± {peer['fd_sd']:.2f}"
    return cell, verdict


def summary_rows(r: dict, nfes: list[int]) -> tuple[str, str]:
    """One model's rows of the two summary tables (the targets; the ratio at every budget)."""
    res = load_results(r)
    ratios = []
    for n in (5, 10, 20):
        bo, bp = best(res, n, True), best(res, n, False)
        ratios.append(bo[0] / bp[0] if bo and bp else math.nan)
    spreads = [ratio_spread(res, n) for n in (5, 10, 20)]
    met = [v <= 0.5 for v in ratios]
    verdict = "met" if all(met) else "not met" + (
        f" (met at NFE {', '.join(str(n) for n, m in zip((5, 10, 20), met, strict=True) if m)})"
        if any(met) else ""
    )  # fmt: skip
    cell, fd_verdict = target_fd(r)
    target = (
        f"| {r['key']} | "
        + " | ".join(spread_cell(v, sp) for v, sp in zip(ratios, spreads, strict=True))
        + f" | {verdict} | {cell} | {fd_verdict} |"
    )
    cells = []
    for n in nfes:
        bo, bp = best(res, n, True), best(res, n, False)
        cells.append(f"{bo[0] / bp[0]:.2f}" if bo and bp else "-")
    return target, f"| {r['key']} | " + " | ".join(cells) + " |"


def summary_lines(rows: list[tuple[str, str]], nfes: list[int]) -> list[str]:
    """The summary tables from each model's :func:`summary_rows` (or those kept from the page)."""
    lines = [
        "## Summary",
        "",
        "Ours / best peer, pathwise RMS error (target <= 0.5 at NFE 5, 10 and 20); Frechet distance "
        "of our best at NFE 10 against the best peer's at NFE 20 (mean ± std over the seeds; target: "
        "no worse, *met* when the difference is within the two spreads combined or negative). "
        "Each RMS ratio is given as `ratio ± s.e. (P p)`: the standard error of a paired bootstrap over "
        f"the pathwise draws ({BOOT_RESAMPLES} resamples of seed {BOOT_SEED}; the same resampled draws "
        "for both sides) with the two configurations fixed as chosen on all draws (so the spread omits "
        "the choice of the best option), and p the fraction of resamples with ratio <= 0.5; `± -`: a "
        "result stored without per-draw errors.",
        "",
        "| model | NFE 5 | NFE 10 | NFE 20 | RMS target | Frechet: ours NFE 10 vs peer NFE 20 "
        "| Frechet target |",
        "|---|---|---|---|---|---|---|",
        *(target for target, _ in rows),
        "",
        "The other budgets (ours / best peer, RMS):",
        "",
        "| model | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
        "|---" * (len(nfes) + 1) + "|",
        *(budgets for _, budgets in rows),
    ]
    return [*lines, ""]


def kept_from_page(old: str, key: str) -> tuple[tuple[str, str], list[str]] | None:
    """A model's two summary rows and its section on an existing page (``None`` if it has none).

    The page is assembled from the ``result.json`` files found in ``--work``; a model measured by
    an earlier run whose results are not there keeps what the page already says about it.
    """
    head = old.split(HAND_BEGIN)[0].splitlines()
    rows = [line for line in head if line.startswith(f"| {key} |")]
    lines = old.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"## {key}: ")), None)
    if len(rows) != 2 or start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    section = lines[start:end]
    while section and not section[-1]:
        section.pop()
    return (rows[0], rows[1]), [*section, ""]


def _named(k: tuple[str, str]) -> bool:
    return k[0] not in ("dpm_solver_v3", "bespoke") and not k[1].startswith("optimized")


OPTION_SETS: list[tuple[str, Callable[[tuple[str, str]], bool]]] = [
    ("named grids, every solver but v3", _named),
    ("named grids, order 3 only", lambda k: _named(k) and (k[0] == "dpm_solver++_3m" or "order 3" in k[1])),
    ("named + optimized grids", lambda k: k[0] not in ("dpm_solver_v3", "bespoke")),
    ("named grids + DPM-Solver-v3", lambda k: k[0] != "bespoke" and not k[1].startswith("optimized")),
    ("all but bespoke", lambda k: k[0] != "bespoke"),
    ("all (bespoke solvers included)", lambda k: True),
]


def model_lines(r: dict) -> list[str]:
    res = load_results(r)
    nfes = r["nfes"]
    note = r["note"].replace(f"{ROOT}/", "")
    lines = [
        f"## {r['key']}: {r['title']}",
        "",
        f"Model: {note}. Generated by `{r['command']}` (one thread); this model's run took "
        f"{r['seconds']['total']:.0f} s of wall time (load average {r['load'][0]:.1f} at its start, "
        f"{r['load'][1]:.1f} at its end, on the shared 2-core machine).",
        *(
            [
                "",
                f"Bespoke rows added to this run's stored results by `{r['bespoke_command']}` (the same "
                f"draws and reference made again; peers not rerun), {r['bespoke_seconds']:.0f} s of wall "
                f"time (load average {r['bespoke_load'][0]:.1f} at its start, {r['bespoke_load'][1]:.1f} "
                "at its end).",
            ]
            if "bespoke_command" in r
            else []
        ),
        "",
        f"{r['n_path']} draws of `x_T` from the prior (labels cycling over the classes), RMS error per "
        f"pixel at `t_end = {T_END:g}` (no final denoising) against dopri5 at rtol = atol = "
        f"{r['ref_tol']:g} ({r['ref_nfe']} NFE); DPM-Solver-3 with 100 log-SNR steps (300 NFE) is "
        f"{r['floor']:.1e} from it (the floor of the RMS column).",
        "",
        "| NFE | our best (RMS) | best peer (RMS) | ours / peer ± s.e. (P <= 0.5) | our best (median "
        "path) | best peer (median path) | ours / peer |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in nfes:
        bo, bp = best(res, n, True), best(res, n, False)
        mo, mp = best(res, n, True, by=2), best(res, n, False, by=2)
        if not (bo and bp and mo and mp):
            continue
        lines.append(
            f"| {n} | {fmt(bo)} | {fmt(bp)} | {spread_cell(bo[0] / bp[0], ratio_spread(res, n))} | {fmt(mo)} "
            f"| {fmt(mp)} "
            f"| {mo[0] / mp[0]:.2f} |"
        )
    lines += [
        "",
        "Which of our options carry the ratio (ours / best peer, RMS, with our options restricted to "
        "each set; *order 3*: DPM-Solver++(3M) and UniPC of order 3 on the named grids):",
        "",
        "| our options | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
        "|---" * (len(nfes) + 1) + "|",
    ]
    for label, keep in OPTION_SETS:
        sub = {k: v for k, v in res.items() if not family_of(k).startswith("scoresde") or keep(k)}
        cells = []
        for n in nfes:
            bo, bp = best(sub, n, True), best(sub, n, False)
            cells.append(f"{bo[0] / bp[0]:.2f}" if bo and bp else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Best option of each family (RMS; `(n)`: the NFE used when lower):", ""]
    fam = oracle_bench.best_per_family({(family_of(k), k[1]): v for k, v in res.items()})
    oracle_bench.NFES = tuple(nfes)
    oracle_bench.table(fam, lines)
    cost = r["cost"]
    if cost:
        lines += ["", "One-off costs (not counted in the NFE; seconds of wall time on the shared core):", ""]
        if "v3" in cost:
            v = cost["v3"]
            lines.append(
                f"- DPM-Solver-v3 statistics (`compute_ems`): {v['pilot']} pilot trajectories, {v['knots']} "
                f"knots: {v['evaluations']} batched evaluations + {v['jvps']} Jacobian-vector products, "
                f"{v['seconds']:.0f} s."
            )
        if "v3_error" in cost:
            lines.append(
                "- DPM-Solver-v3: no rows; `compute_ems` failed on this run's network: "
                f"`{cost['v3_error']}` (forward-mode JVPs of the code then; `compute_ems` now falls back "
                "to reverse over reverse, `scoresde.sampling.ems.jvp`: a rerun gives v3 rows)."
            )
        for k, v in cost.get("optimized", {}).items():
            lines.append(
                f'- `grid="optimized"` for {k.rsplit(" ", 1)[0]} at NFE {k.rsplit(" ", 1)[1]}: pilot of '
                f"{v['pilot']} draws, {v['pilot_nfe']} batched evaluations, {v['seconds']:.0f} s; from "
                f"{v['start']}, pilot RMS {v['pilot_error_start']:.2e} -> {v['pilot_error']:.2e}."
            )
        for k, v in cost.get("bespoke", {}).items():
            lines.append(
                f"- bespoke solver (`fit_bespoke`) at NFE {k}: {v['pilot']} training draws of seed "
                f"{BESPOKE_SEED} (held out from the {r['n_path']} pathwise draws), {v['iterations']} Adam "
                f"iterations (lr {v['lr']:g}), {v['pilot_nfe']} batched forward evaluations (all but the "
                f"last few with a backward pass), {v['seconds']:.0f} s; started from {v['start']} (the "
                f"best of {v['starts']} base solver and grid pairs on the training draws), training RMS "
                f"{v['pilot_error_start']:.2e} -> {v['pilot_error']:.2e}"
                + (f"; minibatches of {v['batch']}" if v.get("batch") else "")
                + (f"; loss {v['loss']}" if v.get("loss", "mse") != "mse" else "")
                + (
                    f"; the iterate of least RMS on {v['holdout']} validation draws of seed "
                    f"{v['holdout_seed']} kept (iteration {v['best_iteration']}, validated every "
                    f"{v['eval_every']}): validation RMS {v['val_error_start']:.2e} -> {v['val_error']:.2e}"
                    if v.get("holdout")
                    else ""
                )
                + (
                    f" (the previous fit: {v['stored_val_error']:.2e} on the same validation draws)"
                    if v.get("holdout") and "stored_val_error" in v
                    else ""
                )
                + (
                    f"; kept over a refit ({v['rejected']['pilot']} draws in minibatches of "
                    f"{v['rejected']['batch']}, {v['rejected']['iterations']} iterations, reference at "
                    f"{v['rejected']['reference_tol']:g}, {v['rejected']['seconds']:.0f} s) whose validation "
                    f"RMS was {v['rejected']['val_error']:.2e} against this fit's {v['stored_val_error']:.2e}"
                    if "rejected" in v
                    else ""
                )
                + (
                    f"; reused here from `{v['reused_from']}` (the same model and fit, not fitted again)"
                    if "reused_from" in v
                    else ""
                )
                + "."
            )
        for k, v in cost.get("bespoke", {}).items():
            if "afs" in v:
                lines.append(afs_line(k, v["afs"], r))
    real = r["real"]
    lines += [
        "",
        f"Sample quality: the best configuration (by RMS) of ours and of the peers at each NFE; "
        f"{r['samples']} class-conditional samples x {r['seeds']} seeds (outputs at `t_end` clamped to "
        f"[-1, 1]), scored by the reference classifier (held-out accuracy {real['acc']:.3f}; Frechet "
        f"floor, training split vs held-out, {real['floor']:.2f}); mean ± std over the seeds; scoring "
        f"took {r['seconds']['quality']:.0f} s.",
        "",
        "| side | sampler [option] | NFE | class accuracy | Frechet distance |",
        "|---|---|---|---|---|",
    ]
    for q in r["quality"]:
        key = tuple(q["config"])
        lines.append(
            f"| {q['side']} | {family_of(key)} [{key[1]}] | {q['nfe']} | {q['acc']:.3f} ± {q['acc_sd']:.3f} "
            f"| {q['fd']:.2f} ± {q['fd_sd']:.2f} |"
        )
    lines += ["", "<details><summary>every option (RMS / median path)</summary>", ""]
    lines += [
        "| sampler | option | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
        "|---" * (len(nfes) + 2) + "|",
    ]
    for (family, option), row in res.items():
        cells = []
        for n in nfes:
            if n not in row:
                cells.append("-")
            elif not isinstance(row[n][1], int):
                cells.append(str(row[n][1]))
            else:
                cells.append(
                    f"{row[n][0]:.2e} / {row[n][2]:.2e}" + ("" if row[n][1] == n else f" ({row[n][1]})")
                )
        lines.append(f"| {family} | {option} | " + " | ".join(cells) + " |")
    return [*lines, "", "</details>", ""]


def afs_line(k: str, a: dict, r: dict) -> str:
    """The one-off cost and the verdict of an ``--bespoke-afs`` fit at NFE ``k``."""
    res = load_results(r)
    peer = best(res, int(k), False)
    page = (
        f"{a['page_cell'][0]:.2e}" + (f", {a['page_cell'][0] / peer[0]:.2f} of the best peer" if peer else "")
        if a.get("page_cell")
        else "not measured"
    )
    return (
        f"- analytic first step + {int(k) + 1}-step bespoke solver at NFE {k} (`--bespoke-afs`): one mean "
        f"per label from {a['means_pilot']} prior draws of seed {a['means_seed']} under each of the 10 "
        f"labels (10 batched evaluations, {a['means_seconds']:.1f} s); fitted on the wrapped model on the "
        f"same {a['pilot']} training draws (minibatches of {a['batch']}, loss {a['loss']}), "
        f"{a['iterations']} Adam iterations (lr {a['lr']:g}), reference at {a['reference_tol']:g}, from "
        f"{a['start']} (the best of {a['starts']} starts), {a['pilot_nfe']} batched evaluations, "
        f"{a['seconds']:.0f} s; validation RMS ({a['holdout']} draws of seed {BESPOKE_HOLDOUT_SEED}) "
        f"{a['val_error_start']:.2e} -> {a['val_error']:.2e} (iteration {a['best_iteration']}) against "
        f"the stored {k}-step fit's {a['stored_val_error']:.2e}: "
        + (
            f"**kept** (row `AFS + trained`; on the page's draws {page}, the stored fit's cell "
            f"{a['replaced_cell'][0]:.2e} moved here)"
            if a["kept"] and a.get("replaced_cell")
            else (
                "**kept** (row `AFS + trained`)" if a["kept"] else f"not kept (on the page's draws: {page})"
            )
        )
        + "."
    )


def write_page(work: Path, out: Path) -> None:
    """Assemble the page from ``work/<key>/result.json``; models without one keep their rows and
    section of the existing page (:func:`kept_from_page`), as does the hand-written section."""
    old = out.read_text() if out.is_file() else ""
    found = {
        k: json.loads((work / k / "result.json").read_text())
        for k in MODELS
        if (work / k / "result.json").is_file()
    }
    hand = f"{HAND_BEGIN}\n\n{HAND_END}"
    if HAND_BEGIN in old and HAND_END in old:
        hand = old[old.index(HAND_BEGIN) : old.index(HAND_END) + len(HAND_END)]
    nfes = sorted({n for r in found.values() for n in r["nfes"]} or NFES)
    rows, sections = [], []
    for k in MODELS:
        if k in found:
            rows.append(summary_rows(found[k], nfes))
            sections += model_lines(found[k])
        elif (kept := kept_from_page(old, k)) is not None:
            rows.append(kept[0])
            sections += kept[1]
    lines = [
        "# Few-step samplers on learned models",
        "",
        "Generated by `benchmarks/samplers_learned.py` (the module docstring says how each model is "
        "trained and how peers are driven) from the results of each model's run; peers: diffusers "
        "0.42.1 and k-diffusion 0.1.1 as in [bench_samplers.md](bench_samplers.md). Every number is an "
        "error ratio or a sample statistic, not a timing; the machine is a shared 2-core x86_64 box "
        "(other jobs ran beside every run; the load averages are in each section).",
        "",
        *summary_lines(rows, nfes),
        hand,
        "",
        *sections,
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ints = lambda s: tuple(int(v) for v in s.split(",") if v)  # noqa: E731
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument(
        "--train-minutes", type=float, default=2.0, help="CPU-minutes of training (when not cached)"
    )
    p.add_argument(
        "--work", type=Path, default=ROOT / "runs" / "samplers_learned", help="cache of the models"
    )
    p.add_argument("--n-path", type=int, default=32, help="x_T draws for the pathwise error")
    p.add_argument(
        "--path-seed",
        type=int,
        default=1,
        help="seed of those draws (another one: fresh held-out draws; not 2024)",
    )
    p.add_argument("--ref-tol", type=float, default=1e-6, help="dopri5 rtol = atol of the reference")
    p.add_argument("--nfes", type=ints, default=NFES)
    p.add_argument("--samples", type=int, default=200, help="images per seed for sample quality")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--v3-pilot", type=int, default=64, help="DPM-Solver-v3: pilot trajectories")
    p.add_argument("--v3-knots", type=int, default=50, help="DPM-Solver-v3: knots (0: no v3 rows)")
    p.add_argument("--opt-solvers", type=lambda s: [v for v in s.split(",") if v],
                   default=["unipc", "dpm_solver++_3m"],
                   help=f"grid='optimized' for these, of {', '.join(OPT_OPTIONS)}")  # fmt: skip
    p.add_argument("--opt-nfes", type=ints, default=(5, 10, 20), help="NFE budgets of the optimized grids")
    p.add_argument("--opt-pilot", type=int, default=32, help="pilot draws of the optimized grids")
    p.add_argument("--opt-evals", type=int, default=2, help="golden-section evaluations per time")
    p.add_argument("--opt-ref-tol", type=float, default=1e-4, help="pilot reference tolerance")
    p.add_argument("--bespoke-nfes", type=ints, default=(5, 10, 20), help="NFE budgets of bespoke solvers")
    p.add_argument("--bespoke-pilot", type=int, default=128, help="training draws of the bespoke solvers")
    p.add_argument("--bespoke-iters", type=int, default=100, help="Adam iterations of the bespoke solvers")
    p.add_argument("--bespoke-lr", type=float, default=0.01, help="Adam learning rate of the bespoke solvers")
    p.add_argument(
        "--bespoke-holdout",
        type=int,
        default=0,
        help="validation draws of the bespoke fits (seed 4096): keep the iterate of least validation error",
    )
    p.add_argument(
        "--bespoke-ref-tol",
        type=float,
        default=None,
        help="dopri5 rtol = atol of the bespoke fits' references (default: --opt-ref-tol)",
    )
    p.add_argument(
        "--bespoke-from",
        type=Path,
        default=None,
        help="a result.json of the same model whose bespoke fits are reused (not fitted again)",
    )
    p.add_argument("--bespoke-batch", type=int, default=None, help="minibatch of the bespoke fits' Adam")
    p.add_argument("--bespoke-eval-every", type=int, default=10, help="iterations between validations")
    p.add_argument("--bespoke-loss", default="mse", choices=("mse", "draw_rms"), help="bespoke training loss")
    p.add_argument(
        "--bespoke-only", action="store_true",
        help="add bespoke rows to the models' existing result.json (same draws; peers not rerun)",
    )  # fmt: skip
    p.add_argument(
        "--bespoke-afs", action="store_true",
        help="with --bespoke-only: fit analytic-first-step + (n+1)-step bespoke solvers, kept where they "
        "beat the stored fits on the validation draws",
    )  # fmt: skip
    p.add_argument("--afs-pilot", type=int, default=256, help="prior draws per label of the AFS means")
    p.add_argument("--no-kdiffusion", action="store_true")
    p.add_argument("--page-only", action="store_true", help="only assemble the page from cached results")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_samplers_learned.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    if not args.page_only:
        for key in args.models.split(","):
            if key not in MODELS:
                raise SystemExit(f"unknown model {key!r}; choose from {', '.join(MODELS)}")
            lm = load_model(key, args.work / key, args.train_minutes, args.seed)
            print(f"[{key}] model: {lm.note}", flush=True)
            if args.bespoke_afs and not args.bespoke_only:
                raise SystemExit("--bespoke-afs adds to a stored run: give --bespoke-only")
            result = add_bespoke(lm, args) if args.bespoke_only else measure(lm, args)
            (args.work / key / "result.json").write_text(json.dumps(result, indent=1))
    write_page(args.work, args.out)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
