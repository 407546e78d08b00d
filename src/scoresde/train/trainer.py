"""The image (and vector) trainer: AdamW, warm-up, clipping, EMA, evaluation, checkpoints, DDP.

Reproducibility by construction: every random draw of step ``k`` (minibatch order through a
:class:`~torch.utils.data.DistributedSampler` seeded per epoch, diffusion times, noise, flips,
label dropout, dropout masks) comes from generators seeded by ``(seed, k)``.  The state of a
run is therefore its weights, EMA weights, optimiser state and step; a checkpoint holds all
four, so ``--resume`` continues *exactly* (bitwise on the CPU with the same thread count; on
CUDA to within the non-determinism of its kernels, ~1e-5 after a few steps).  Note that the
trainer reseeds torch's global RNG at every step (for dropout).

Distributed training draws the times, noise and augmentation for the *global* batch on every
process and gives process ``r`` the positions ``r, r + W, r + 2W, ...``, the same positions
the sampler's indices take; DDP averages the gradients.  ``W`` processes with ``batch_size``
``B`` (the global batch) therefore compute the same update as one process with ``B``, up to
floating-point summation order.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DistributedSampler

from scoresde._checks import NonFiniteError
from scoresde.data.images import (
    DataSplit,
    load_dataset,
    save_image_grid,
)
from scoresde.io.checkpoint import (
    CheckpointWriteError,
    clean_temp_files,
    file_mode,
    load_checkpoint,
    resume_checkpoint,
    save_checkpoint,
)
from scoresde.losses import make_objective
from scoresde.models.clipping import ClipDenoised
from scoresde.models.wrapper import ScoreModel
from scoresde.nets import build_net, net_config
from scoresde.nets.build import default_attn_resolutions, default_channel_mults, net_config_for
from scoresde.parallel.process_group import DistInfo, all_reduce_mean, barrier, init_distributed
from scoresde.progress import make_progress
from scoresde.sde import make_sde
from scoresde.train import evaluation
from scoresde.train.config import LEGACY_VALUES, RESUMABLE_KEYS, TrainConfig
from scoresde.train.ema import EMA
from scoresde.train.runlock import RunLock

__all__ = ["RESUMABLE_KEYS", "TrainConfig", "TrainResult", "Trainer"]


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    step: int
    losses: list[float]
    seconds: float
    images_per_second: float
    run_dir: Path
    checkpoint: Path | None
    eval: dict[str, float] = field(default_factory=dict)
    eval_errors: list[str] = field(default_factory=list)
    skipped_steps: int = 0


def _mix(seed: int, step: int, stream: int = 0) -> int:
    """A 63-bit seed for RNG stream ``stream`` of step ``step`` (SplitMix64-style mixing)."""
    z = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return (z ^ (z >> 31)) % 2**63


class Trainer:
    """Train a ``ScoreModel`` on an image (or vector) data set.

    Args:
        config: the run's :class:`TrainConfig`.
        data: the data (default: loaded from ``config.data``).
        dist_info: the process group (default: :func:`init_distributed` from torchrun's
            environment variables).
    """

    def __init__(self, config: TrainConfig, data: DataSplit | None = None, dist_info: DistInfo | None = None):
        self.config = c = config
        self.dist = dist_info or init_distributed(c.device)
        self.device = self.dist.device
        if c.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size {c.batch_size} (the global batch) must be divisible by the "
                f"number of processes {self.dist.world_size}"
            )
        self.data = data if data is not None else load_dataset(c.data, c.test_fraction, c.seed, c.image_size)
        n_train = self.data.train.shape[0]
        if n_train < c.batch_size:
            raise ValueError(f"batch_size {c.batch_size} exceeds the {n_train} training images")
        if c.conditional and self.data.num_classes is None:
            raise ValueError(
                f"conditional training needs labels, but {self.data.name or 'the data'} has none"
            )
        self._check_with_data()
        self.steps_per_epoch = n_train // c.batch_size
        self.local_batch = c.batch_size // self.dist.world_size

        self.sde = make_sde(c.sde, **c.sde_options)
        self.net_config = self._net_config()
        sigma_data = c.sigma_data if c.sigma_data is not None else round(float(self.data.train.std()), 4)
        self.model_config = {
            "prediction": c.prediction,
            "scale_input": True,
            "sigma_data": sigma_data,
            "time_input": c.time_input,
        }
        torch.manual_seed(_mix(c.seed, 0, 99))  # the initial weights depend on the seed only
        net = build_net(self.net_config).to(self.device)
        self.model = ScoreModel(net, self.sde, **self.model_config)
        self.ema = EMA(self.model, c.ema_decay)
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.last_lr = c.lr  # the rate of the latest step (logged)
        self.objective = make_objective(c.loss, c.weighting, c.importance, c.num_scales)
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ddp = DistributedDataParallel(
                net, device_ids=[self.device] if self.device.type == "cuda" else None
            )
            self.train_model = ScoreModel(ddp, self.sde, **self.model_config)
        else:
            self.train_model = self.model
        self.sampler = DistributedSampler(
            range(n_train),
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=c.seed,
            drop_last=True,
        )
        self._epoch: int | None = None
        self._epoch_indices: list[int] = []
        self.step = 0
        self.run_dir = Path(c.out) / c.name
        self._tb = None
        self.resumed_from: Path | None = None
        self.last_checkpoint: Path | None = None
        self.nonfinite_run = 0  # consecutive skipped steps
        self.skipped_steps = 0

    def _check_with_data(self) -> None:
        """The rules that need the data, checked before the first step (errors name the option)."""
        c, data = self.config, self.data
        if c.image_size is not None and tuple(data.shape[1:]) != (c.image_size, c.image_size):
            raise ValueError(
                f"image_size {c.image_size}: the data's images are {data.shape[1]}x{data.shape[2]} "
                "(image_size resizes data that the trainer loads itself, of any layout)"
            )
        if c.eval_bpd and data.levels is None:
            raise ValueError("eval_bpd needs discrete data (levels); this data set is continuous")
        if c.eval_bpd and data.test.shape[0] == 0:
            raise ValueError("eval_bpd needs held-out images: test_fraction is 0")
        ch, h, w = data.shape
        if c.num_samples > 0 and ch not in (1, 3):
            raise ValueError(
                f"num_samples {c.num_samples} writes sample grids as PNG, which needs 1 or 3 channels; "
                f"the data has {ch}: set num_samples = 0"
            )
        if c.net == "unet" and h == w:
            levels = [h // 2**i for i in range(len(default_channel_mults(c.channel_mults, h)))]
            missing = [r for r in self._attn_resolutions() if r not in levels]
            if missing:
                raise ValueError(
                    f"attn_resolutions {list(c.attn_resolutions)}: the UNet has no resolution {missing} "
                    f"(its resolutions are {levels}); choose among them or none"
                )

    # ------------------------------------------------------------------ #
    # Setup.
    # ------------------------------------------------------------------ #
    def _attn_resolutions(self) -> tuple[int, ...]:
        """The configured attention resolutions; by default the UNet's lowest resolution."""
        c = self.config
        h = self.data.shape[1]
        return default_attn_resolutions(c.attn_resolutions, h, default_channel_mults(c.channel_mults, h))

    def _net_config(self) -> dict:
        c = self.config
        return net_config_for(c.net, self.data.shape, self.data.num_classes if c.conditional else None, c)

    def _shape_for_net(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) if self.config.net == "mlp" else x

    # ------------------------------------------------------------------ #
    # One step.
    # ------------------------------------------------------------------ #
    def _indices(self, step: int) -> list[int]:
        """This process's training indices at ``step`` (epoch-wise DistributedSampler order)."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch_indices = list(iter(self.sampler))
            self._epoch = epoch
        b = self.local_batch
        return self._epoch_indices[offset * b : (offset + 1) * b]

    def _batch(self, step: int) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """``(x0, y, u, noise)`` for this process at ``step``, drawn for the global batch."""
        c, rank, world = self.config, self.dist.rank, self.dist.world_size
        idx = torch.tensor(self._indices(step), dtype=torch.long)
        x0 = self.data.train[idx]
        y = self.data.train_labels[idx] if c.conditional else None
        g = torch.Generator().manual_seed(_mix(c.seed, step))
        shape = (c.batch_size, *self.data.shape)
        u = torch.rand(c.batch_size, generator=g)[rank::world]
        noise = torch.randn(shape, generator=g)[rank::world]
        flip = torch.rand(c.batch_size, generator=g)[rank::world] < 0.5
        drop = torch.rand(c.batch_size, generator=g)[rank::world] < c.label_dropout
        if c.hflip:
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        if y is not None and c.label_dropout > 0:
            y = torch.where(drop, torch.full_like(y, self.data.num_classes), y)
        dev = self.device
        x0, noise = self._shape_for_net(x0), self._shape_for_net(noise)
        return x0.to(dev), None if y is None else y.to(dev), u.to(dev), noise.to(dev)

    def learning_rate(self, step: int, budget_spent: float = 0.0) -> float:
        """The learning rate of optimiser step ``step``.

        Linear warm-up to ``lr`` over ``warmup`` steps, then constant, or a cosine / linear decay
        to ``lr * final_lr`` whose progress is the larger of the fraction of the post-warm-up
        steps done and ``budget_spent`` (the fraction of the ``minutes`` budget used), so that a
        run stopped by its time budget ends at the low rate too.
        """
        c = self.config
        lr = c.lr * min(1.0, (step + 1) / c.warmup) if c.warmup else c.lr
        if c.schedule != "constant" and step >= c.warmup:
            frac = min(1.0, max((step - c.warmup) / max(1, c.steps - c.warmup), budget_spent))
            shape = 0.5 * (1.0 + math.cos(math.pi * frac)) if c.schedule == "cosine" else 1.0 - frac
            lr = c.lr * (c.final_lr + (1.0 - c.final_lr) * shape)
        return lr

    def train_step(self, budget_spent: float = 0.0) -> tuple[float, float]:
        """One optimiser step; returns ``(local loss, gradient norm)``.

        ``budget_spent``: the fraction of the time budget used so far (see
        :meth:`learning_rate`; :meth:`fit` passes it when ``minutes`` is set).
        """
        c, step = self.config, self.step
        torch.manual_seed(_mix(c.seed, step, 1 + self.dist.rank))  # dropout masks
        x0, y, u, noise = self._batch(step)
        for group in self.optimizer.param_groups:
            group["lr"] = self.last_lr = self.learning_rate(step, budget_spent)
        self.train_model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=c.bf16):
            out = self.objective(self.train_model, x0, y, u, noise)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        params = self.model.net.parameters()
        if c.grad_clip is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, c.grad_clip))
        else:
            grad_norm = float(torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
        loss = float(out.loss.detach())
        # Non-finite guard: skip the update of a step with a non-finite gradient (the same on
        # every process after DDP's all-reduce) or loss; the step counter still advances.
        bad = not math.isfinite(grad_norm) or (not self.dist.distributed and not math.isfinite(loss))
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_run += 1
            self.skipped_steps += 1
        else:
            self.nonfinite_run = 0
            self.optimizer.step()
            self.ema.update(self.model)
        self.step += 1
        return loss, grad_norm

    # ------------------------------------------------------------------ #
    # Evaluation.
    # ------------------------------------------------------------------ #
    def held_out_loss(self, model: ScoreModel | None = None, max_images: int | None = None) -> float:
        """The training objective on the held-out split with fixed draws (EMA model by default)."""
        c = self.config
        return evaluation.held_out_loss(
            self.objective,
            model or self.ema.module,
            self.data.test[:max_images],
            self.data.test_labels[:max_images] if c.conditional else None,
            torch.Generator().manual_seed(_mix(c.seed, 0, 7)),
            c.batch_size,
            self._shape_for_net,
        )

    def sample_images(
        self, n: int | None = None, model: ScoreModel | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Draw ``n`` samples ``(n, C, H, W)`` with the EMA model (labels cycling over the classes),
        by ``sample_method`` with the predicted x0 clipped as ``sample_clip`` says."""
        c = self.config
        n = n or c.num_samples
        shape = self.data.shape if c.net == "unet" else (math.prod(self.data.shape),)
        classes = self.data.num_classes if c.conditional else None
        sampled = model or self.ema.module
        if c.sample_clip != "none":
            sampled = ClipDenoised(sampled, mode=c.sample_clip)
        x, y = evaluation.sample_grid(
            sampled, shape, n, c.sample_method, c.sample_steps, c.seed, classes, self.device
        )
        return x.reshape(n, *self.data.shape).float().cpu(), y

    def bits_per_dim(self, model: ScoreModel | None = None, bound: bool = False) -> float:
        """Held-out bits/dim of uniformly dequantized images (``bpd_samples`` of them).

        Class-conditional models trained with ``label_dropout > 0`` are scored through their
        unconditional (null-token) mode, otherwise given the true labels.
        ``bound=False``: :func:`~scoresde.train.evaluation.bpd_probability_flow` (the PF-ODE
        likelihood; Hutchinson's divergence estimator beyond 16 dimensions); ``bound=True``:
        :func:`~scoresde.train.evaluation.bpd_bound` (the reverse SDE's variational bound, 8 draws
        per image, an upper bound in expectation).
        """
        if self.data.levels is None:
            raise ValueError("bits/dim needs discrete data (levels); this data set is continuous")
        c = self.config
        model = model or self.ema.module
        x = self._shape_for_net(self.data.test[: c.bpd_samples]).to(self.device)
        # Conditional models trained with label dropout are scored unconditionally (null token).
        given_labels = c.conditional and c.label_dropout == 0
        y = self.data.test_labels[: c.bpd_samples].to(self.device) if given_labels else None
        if bound:
            return evaluation.bpd_bound(
                model,
                x,
                self.data.levels,
                y,
                torch.Generator().manual_seed(_mix(c.seed, 0, 9)),
                c.batch_size,
                dequantize_generator=torch.Generator().manual_seed(_mix(c.seed, 0, 8)),
            )
        g = torch.Generator().manual_seed(_mix(c.seed, 0, 10))
        return evaluation.bpd_probability_flow(model, x, self.data.levels, y, g)

    def evaluate(self) -> dict[str, float]:
        """Held-out loss, a sample grid written to ``samples/``, and bits/dim when asked."""
        c = self.config
        t0 = time.perf_counter()
        metrics: dict[str, float] = {"eval_loss": self.held_out_loss()}
        if c.num_samples > 0:
            x, _ = self.sample_images()
            save_image_grid(x, self.run_dir / "samples" / f"step_{self.step:07d}.png", scale=4)
        if c.eval_bpd:
            metrics["bpd_bound"] = self.bits_per_dim(bound=True)
            metrics["bpd"] = self.bits_per_dim()
        metrics["eval_seconds"] = time.perf_counter() - t0
        return metrics

    # ------------------------------------------------------------------ #
    # Checkpoints.
    # ------------------------------------------------------------------ #
    def save(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint (``checkpoints/step_XXXXXXX.safetensors`` and ``last.safetensors``)."""
        ckpt_dir = self.run_dir / "checkpoints"
        target = Path(path) if path is not None else ckpt_dir / f"step_{self.step:07d}.safetensors"
        try:
            save_checkpoint(
                target,
                self.model,
                ema=self.ema.module,
                ema_state={"decay": self.ema.decay, "num_updates": self.ema.num_updates},
                optimizer=self.optimizer,
                step=self.step,
                train_config=self.config.to_dict(),
                data_info=self.data.info(),
                rng={"torch_cpu": torch.get_rng_state()},
            )
        except CheckpointWriteError as err:
            err.intact = self.last_checkpoint
            raise
        if path is None:
            last = ckpt_dir / "last.safetensors"
            # A temporary name unique to this process (pid + random), then an atomic rename.
            tmp = ckpt_dir / f".last.safetensors.{os.getpid()}.{uuid.uuid4().hex}.tmp"
            try:
                shutil.copyfile(target, tmp)
                os.chmod(tmp, file_mode())
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, last)
            except OSError as err:
                tmp.unlink(missing_ok=True)
                raise CheckpointWriteError(last, err, intact=target) from err
            self.last_checkpoint = target
        return target

    def resume(self, path: str | Path) -> int:
        """Load weights, EMA, optimiser state and step from a checkpoint; returns the step.

        Raises ``ValueError`` if the checkpoint's training options differ from this run's in
        anything but :data:`RESUMABLE_KEYS` (an exact continuation needs the same options).
        """
        path, note = resume_checkpoint(path)
        if note is not None and self.dist.is_main:
            print(f"warning: {note}", file=sys.stderr, flush=True)
        ckpt = load_checkpoint(path, ema=False, device=self.device)
        saved = {**LEGACY_VALUES, **ckpt.config.get("train", {})}
        mine = self.config.to_dict()
        diff = sorted(k for k in mine if k not in RESUMABLE_KEYS and saved.get(k) != mine[k])
        if diff:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {mine[k]!r}" for k in diff)
            raise ValueError(f"cannot resume {ckpt.path}: options differ from the checkpoint's ({detail})")
        saved_net = dict(ckpt.config.get("net", {}))
        if saved_net.get("name") == "unet":
            saved_net.setdefault("min_group_channels", 1)  # UNets saved before the key existed
        mine_net = net_config(self.model.net)
        net_diff = sorted(k for k in mine_net if saved_net.get(k) != mine_net[k])
        if net_diff:
            detail = ", ".join(f"{k}: {saved_net.get(k)!r} -> {mine_net[k]!r}" for k in net_diff)
            raise ValueError(f"cannot resume {ckpt.path}: its network differs from this run's ({detail})")
        self.model.net.load_state_dict(ckpt.net_state())
        ema_state = ckpt.ema_state()
        if ema_state is not None:
            self.ema.module.net.load_state_dict(ema_state)
            self.ema.num_updates = int(ckpt.config["ema"].get("num_updates", ckpt.step))
        opt_state = ckpt.optimizer_state()
        if opt_state is not None:
            self.optimizer.load_state_dict(opt_state)
        rng = ckpt.rng_state("torch_cpu")
        if rng is not None:
            torch.set_rng_state(rng.cpu())
        self.step = ckpt.step
        self.resumed_from = self.last_checkpoint = Path(ckpt.path)
        return self.step

    def _prepare_run_dir(self) -> None:
        """Refuse to replace an existing run (unless resumed or ``overwrite``); clean temp files.

        Called by :meth:`fit` while holding the run folder's lock.
        """
        c, run, ckpt_dir = self.config, self.run_dir, self.run_dir / "checkpoints"
        previous = sorted(ckpt_dir.glob("*.safetensors")) if ckpt_dir.is_dir() else []
        previous += [p for p in (run / "config.json", run / "metrics.jsonl") if p.exists()]
        if previous and self.resumed_from is None:
            if not c.overwrite:
                raise FileExistsError(
                    f"the run folder {run} already holds a run ({len(previous)} file(s), e.g. "
                    f"{previous[0].name}); resume it, or pass overwrite to replace it, or choose another name"
                )
            for p in previous:
                p.unlink(missing_ok=True)
            for folder in (run / "samples", run / "tensorboard"):
                if folder.is_dir():
                    shutil.rmtree(folder)
        clean_temp_files(ckpt_dir)

    # ------------------------------------------------------------------ #
    # The loop.
    # ------------------------------------------------------------------ #
    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, record["step"])

    def fit(self, evaluate: bool = True) -> TrainResult:
        """Train from ``self.step`` to ``config.steps``, logging, saving and evaluating on schedule.

        With ``config.minutes`` set, the loop also stops at the first step that ends after that
        many minutes of wall time (counted from the start of this call, evaluations included);
        that step is saved and evaluated like a final one.

        The run folder is locked for the whole run (:class:`~scoresde.train.runlock.RunLock`);
        an existing run in it is refused unless this trainer resumed or ``overwrite`` is set;
        orphaned temporary files of interrupted writes are removed.  At a step that both saves
        and evaluates, the checkpoint is written first; an evaluation failure is reported
        (stderr, ``metrics.jsonl``, :attr:`TrainResult.eval_errors`) and training goes on.

        Raises:
            RunFolderBusyError: another live process trains into the same folder.
            FileExistsError: the folder holds a run and neither resume nor ``overwrite``.
            NonFiniteError: more than ``max_nonfinite_steps`` consecutive non-finite steps.
            CheckpointWriteError: a checkpoint could not be written (disk full, permissions);
                the message names the newest intact checkpoint.
        """
        main = self.dist.is_main
        lock = RunLock(self.run_dir) if main else None
        if lock is not None:
            lock.acquire()
        try:
            if main:
                self._prepare_run_dir()
            return self._fit(evaluate)
        finally:
            if lock is not None:
                lock.release()

    def _evaluate_reporting(self) -> tuple[dict[str, float], str | None]:
        """:meth:`evaluate`, with a failure reported (stderr, metrics.jsonl) instead of raised."""
        try:
            metrics = self.evaluate()
        except Exception as err:  # an evaluation failure must not lose the run
            saved = self.last_checkpoint
            msg = f"evaluation at step {self.step} failed ({type(err).__name__}: {err})"
            print(
                f"warning: {msg}; training goes on (checkpoint {saved} is saved)", file=sys.stderr, flush=True
            )
            self._log({"step": self.step, "eval_error": msg})
            return {}, msg
        self._log({"step": self.step, **metrics})
        return metrics, None

    def _budget_spent(self, loop_start: float) -> float:
        """The fraction of the ``minutes`` budget used (0 without one), the same on every process.

        It is the mean over processes of their own fractions, and the budget counts as spent
        (1.0) once any process has used it up, so all of them stop at the same step.
        """
        minutes = self.config.minutes
        if minutes is None:
            return 0.0
        own = (time.perf_counter() - loop_start) / (60.0 * minutes)
        both = torch.tensor([min(own, 1.0), float(own >= 1.0)], device=self.device)
        mean = all_reduce_mean(both, self.dist)
        return 1.0 if float(mean[1]) > 0 else float(mean[0])

    def _fit(self, evaluate: bool) -> TrainResult:
        c = self.config
        main = self.dist.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:
                self._tb = None
        limit = None if c.minutes is None else 60.0 * c.minutes
        bar = make_progress(
            c.progress if main else False, c.steps, c.name, initial=self.step, time_limit=limit
        )
        losses: list[float] = []
        eval_metrics: dict[str, float] = {}
        train_seconds, window_loss, window_steps = 0.0, 0.0, 0
        checkpoint: Path | None = None
        eval_errors: list[str] = []
        start_step = self.step
        loop_start = time.perf_counter()
        out_of_time, spent = False, 0.0
        while self.step < c.steps and not out_of_time:
            t0 = time.perf_counter()
            loss, grad_norm = self.train_step(spent)
            dt = time.perf_counter() - t0
            train_seconds += dt
            losses.append(loss)
            window_loss += loss
            window_steps += 1
            bar.update(1, loss=f"{loss:.4f}", img_s=f"{c.batch_size / max(dt, 1e-9):.0f}")
            spent = self._budget_spent(loop_start)
            out_of_time = spent >= 1.0
            last = self.step == c.steps or out_of_time
            if self.step % c.log_every == 0 or last:
                mean = float(
                    all_reduce_mean(torch.tensor(window_loss / window_steps, device=self.device), self.dist)
                )
                done = self.step - start_step
                self._log(
                    {
                        "step": self.step,
                        "loss": mean,
                        "grad_norm": grad_norm,
                        "lr": self.last_lr,
                        "it_per_s": done / train_seconds,
                        "images_per_s": done * c.batch_size / train_seconds,
                        "skipped_steps": self.skipped_steps,
                    }
                )
                window_loss, window_steps = 0.0, 0
            if self.nonfinite_run > c.max_nonfinite_steps:
                raise NonFiniteError(
                    f"training stopped at step {self.step}: {self.nonfinite_run} consecutive step(s) had a "
                    f"non-finite loss or gradient (last: loss {loss}, gradient norm {grad_norm}); their "
                    f"updates were skipped (the weights stay finite); the newest checkpoint is "
                    f"{self.last_checkpoint}; lower lr, clip gradients (grad_clip) or check the data"
                )
            # Save first: an evaluation that fails must not cost the interval's training.
            if self.step % c.save_every == 0 or last:
                if main:
                    checkpoint = self.save()
                barrier(self.dist)
            if evaluate and (self.step % c.eval_every == 0 or last):
                if main:
                    metrics, error = self._evaluate_reporting()
                    if error is None:
                        eval_metrics = metrics
                    else:
                        eval_errors.append(error)
                barrier(self.dist)
        bar.close()
        if self._tb is not None:
            self._tb.close()
        done = self.step - start_step
        return TrainResult(
            step=self.step,
            losses=losses,
            seconds=train_seconds,
            images_per_second=done * c.batch_size / train_seconds if train_seconds else 0.0,
            run_dir=self.run_dir,
            checkpoint=checkpoint,
            eval=eval_metrics,
            eval_errors=eval_errors,
            skipped_steps=self.skipped_steps,
        )
