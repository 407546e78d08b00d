"""The image (and vector) trainer: a short loop over its parts.

The parts, one concept each: :class:`~scoresde.train.batches.BatchSource` (every random draw of a
step, keyed by ``(seed, step)`` with :func:`~scoresde._core.seeds.derive_seed`), the objective
(:mod:`scoresde.train.losses`), fused AdamW (:func:`~scoresde.train.optim.adamw`) with an
:class:`~scoresde.train.schedule.LRSchedule`, :class:`~scoresde.train.ema.EMA`, the
:class:`~scoresde.train.evaluation.Evaluator`, the :class:`~scoresde.train.checkpointer.Checkpointer`
and the :class:`~scoresde.train.logger.RunLogger`, writing into a
:class:`~scoresde.io.run_folder.RunFolder` (layout, lock, atomic writes).

The state of a run is its weights, EMA weights, optimiser state and step; a checkpoint holds all
four, so ``resume`` continues *exactly* (bitwise on the CPU with the same thread count and
``compile`` off; on CUDA within the non-determinism of its kernels).  The trainer reseeds torch's
global RNG at every step (dropout masks).  Distributed runs draw every step's randomness for the
global batch and give each process its share, so ``W`` processes compute the update of one.
Off the hot path: losses stay on the device between log lines; the one value read per step is
whether the step was finite (the non-finite guard).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from scoresde._core.progress import make_progress
from scoresde._core.seeds import derive_seed
from scoresde.data.images import DataSplit, load_dataset
from scoresde.io.run_folder import RunFolder
from scoresde.models.wrapper import ScoreModel
from scoresde.nets import build_net
from scoresde.nets.build import net_config_for
from scoresde.parallel.process_group import DistInfo, all_reduce_mean, barrier, init_distributed
from scoresde.sde import make_sde
from scoresde.train.batches import BatchSource
from scoresde.train.checkpointer import Checkpointer
from scoresde.train.compile import compile_network, wants_compile
from scoresde.train.config import RESUMABLE_KEYS, ModelOptions, TrainConfig
from scoresde.train.ema import EMA
from scoresde.train.evaluation import Evaluator, report_evaluation
from scoresde.train.guard import NonFiniteGuard
from scoresde.train.logger import LossWindow, RunLogger
from scoresde.train.losses import make_objective
from scoresde.train.optim import adamw, gradient_norm
from scoresde.train.schedule import LRSchedule, TimeBudget
from scoresde.train.validate import check_with_data

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
        self.data = data if data is not None else load_dataset(c.data, c.test_fraction, c.seed, c.image_size)
        check_with_data(c, self.data, self.dist.world_size)
        self.batches = BatchSource(
            self.data, c.batch_size, c.seed, self.dist.rank, self.dist.world_size, c.conditional,
            c.label_dropout, c.hflip, c.net == "mlp", self.device,
        )  # fmt: skip
        self.sde = make_sde(c.sde, **c.sde_options)
        classes = self.data.num_classes if c.conditional else None
        self.net_config = net_config_for(c.net, self.data.shape, classes, c)
        sigma_data = c.sigma_data if c.sigma_data is not None else round(float(self.data.train.std()), 4)
        self.model_config: ModelOptions = {
            "prediction": c.prediction,
            "scale_input": True,
            "sigma_data": sigma_data,
            "time_input": c.time_input,
        }
        torch.manual_seed(derive_seed(c.seed, 0, 99))  # the initial weights depend on the seed only
        net = build_net(self.net_config).to(self.device)
        self.model = ScoreModel(net, self.sde, **self.model_config)
        self.ema = EMA(self.model, c.ema_decay)
        self.optimizer = adamw(net.parameters(), c.lr, c.weight_decay, self.device)
        self.schedule = LRSchedule.from_config(c)
        self.last_lr = c.lr  # the rate of the latest step (logged)
        self.objective = make_objective(
            c.loss, c.weighting, c.importance, c.num_scales, c.time_sampling, c.time_options
        )
        self.train_model = ScoreModel(self._train_net(net), self.sde, **self.model_config)
        self.folder = RunFolder(Path(c.out) / c.name)
        self.run_dir = self.folder.root
        self.checkpointer = Checkpointer(
            self.folder, self.model, self.ema, self.optimizer, self.config.to_dict, self.data.info()
        )
        self.evaluator = Evaluator(
            c, self.data, self.batches.to_net, self.device, lambda *a: self.objective(*a)
        )
        self.step = 0
        self.resumed_from: Path | None = None
        self.guard = NonFiniteGuard(c.max_nonfinite_steps)

    def _train_net(self, net: torch.nn.Module) -> torch.nn.Module:
        """The network the training step runs: DDP-wrapped across processes, compiled when asked."""
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                net, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        if wants_compile(self.config.compile, self.config.steps, self.device):
            net = compile_network(net, self.device)
        return net

    @property
    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint known to be intact (written or resumed from)."""
        return self.checkpointer.last

    def learning_rate(self, step: int, budget_spent: float = 0.0) -> float:
        """The learning rate of optimiser step ``step`` (:class:`~scoresde.train.schedule.LRSchedule`)."""
        return self.schedule(step, budget_spent)

    # ---- one step ------------------------------------------------------------------------- #
    def train_step(self, budget_spent: float = 0.0) -> tuple[Tensor, Tensor]:
        """One optimiser step; returns ``(local loss, gradient norm)`` as 0-d tensors on the device.

        ``budget_spent``: the fraction of the time budget used so far (see :meth:`learning_rate`).
        A step with a non-finite gradient norm (the same on every process after DDP's all-reduce)
        or loss is skipped (no optimiser or EMA update); the step counter still advances.
        """
        c, step = self.config, self.step
        torch.manual_seed(derive_seed(c.seed, step, 1 + self.dist.rank))  # dropout masks
        b = self.batches(step)
        self.last_lr = self.schedule(step, budget_spent)
        for group in self.optimizer.param_groups:
            group["lr"] = self.last_lr
        self.train_model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=c.bf16):
            loss = self.objective(self.train_model, b.x0, b.y, b.u, b.noise).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = gradient_norm(self.model.net.parameters(), c.grad_clip)
        finite = (
            torch.isfinite(grad_norm) if self.dist.distributed else torch.isfinite(grad_norm + loss.detach())
        )
        if self.guard.record(bool(finite)):  # the one value read per step
            self.optimizer.step()
            self.ema.update(self.model)
        else:
            self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss.detach(), grad_norm.detach()

    # ---- evaluation and checkpoints ------------------------------------------------------- #
    def held_out_loss(self, model: ScoreModel | None = None, max_images: int | None = None) -> float:
        """The training objective on the held-out split with fixed draws (EMA model by default)."""
        return self.evaluator.held_out_loss(model or self.ema.module, max_images)

    def sample_images(
        self, n: int | None = None, model: ScoreModel | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``n`` samples ``(n, C, H, W)`` of the EMA model (:meth:`Evaluator.sample_images`)."""
        return self.evaluator.sample_images(model or self.ema.module, n)

    def bits_per_dim(self, model: ScoreModel | None = None, bound: bool = False) -> float:
        """Held-out bits/dim of the EMA model (:meth:`Evaluator.bits_per_dim`)."""
        return self.evaluator.bits_per_dim(model or self.ema.module, bound)

    def evaluate(self) -> dict[str, float]:
        """Held-out loss, a sample grid written to ``samples/``, and bits/dim when asked."""
        return self.evaluator(self.ema.module, self.folder.sample_grid(self.step))

    def save(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint (``checkpoints/step_XXXXXXX.safetensors`` and ``last.safetensors``)."""
        return self.checkpointer.save(self.step, path)

    def resume(self, path: str | Path) -> int:
        """Load weights, EMA, optimiser state and step from a checkpoint; returns the step.

        Raises ``ValueError`` if ``steps`` is not beyond the checkpoint's step, or if the
        checkpoint's options differ from this run's in anything but :data:`RESUMABLE_KEYS`.
        """
        self.step = self.checkpointer.restore(path, self.device, self.config.steps, self.dist.is_main)
        self.resumed_from = self.checkpointer.last
        return self.step

    # ---- the loop ------------------------------------------------------------------------- #
    def fit(self, evaluate: bool = True) -> TrainResult:
        """Train from ``self.step`` to ``config.steps``, logging, saving and evaluating on schedule.

        With ``config.minutes`` set, the loop also stops at the first step that ends after that
        many minutes of wall time (counted from the start of this call, evaluations included);
        that step is saved and evaluated like a final one.  Evaluations before the last are
        skipped while their time exceeds ``eval_share`` of the run's time so far.

        The run folder is locked for the whole run; an existing run in it is refused unless this
        trainer resumed or ``overwrite`` is set; ``config.json`` (the run's record) is written
        once, never by a resume.  At a step that both saves and evaluates, the checkpoint is
        written first; an evaluation failure is reported (stderr, ``metrics.jsonl``,
        :attr:`TrainResult.eval_errors`) and training goes on.

        Raises:
            RunFolderBusyError: another live process trains into the same folder.
            FileExistsError: the folder holds a run and neither resume nor ``overwrite``.
            NonFiniteError: more than ``max_nonfinite_steps`` consecutive non-finite steps.
            CheckpointWriteError: a checkpoint could not be written (disk full, permissions);
                the message names the newest intact checkpoint.
        """
        if not self.dist.is_main:
            return self._fit(evaluate, RunLogger(self.folder.metrics, None, enabled=False))
        with self.folder.lock():
            self.folder.prepare(resuming=self.resumed_from is not None, overwrite=self.config.overwrite)
            self.folder.write_record(self.config.to_dict())
            logger = RunLogger(self.folder.metrics, self.folder.tensorboard)
            try:
                return self._fit(evaluate, logger)
            finally:
                logger.close()

    def _fit(self, evaluate: bool, logger: RunLogger) -> TrainResult:
        c, main = self.config, self.dist.is_main
        limit = None if c.minutes is None else 60.0 * c.minutes
        bar = make_progress(
            c.progress if main else False, c.steps, c.name, initial=self.step, time_limit=limit
        )
        window = LossWindow()
        eval_metrics: dict[str, float] = {}
        eval_errors: list[str] = []
        checkpoint: Path | None = None
        train_seconds, eval_seconds, start_step = 0.0, 0.0, self.step
        budget, out_of_time, spent = TimeBudget(c.minutes, self.dist), False, 0.0
        while self.step < c.steps and not out_of_time:
            t0 = time.perf_counter()
            loss, grad_norm = self.train_step(spent)
            dt = time.perf_counter() - t0
            train_seconds += dt
            window.add(loss)
            spent = budget.spent()
            out_of_time = spent >= 1.0
            last = self.step == c.steps or out_of_time
            postfix = {"img_s": f"{c.batch_size / max(dt, 1e-9):.0f}"}
            if self.step % c.log_every == 0 or last:
                mean = float(all_reduce_mean(window.mean(), self.dist))
                postfix["loss"] = f"{mean:.4f}"
                done, norm, skipped = self.step - start_step, float(grad_norm), self.guard.skipped
                logger.log_train(
                    self.step, mean, norm, self.last_lr, done, train_seconds, c.batch_size, skipped
                )
            bar.update(1, **postfix)
            self.guard.check(self.step, loss, grad_norm, self.last_checkpoint)
            # Save first: an evaluation that fails must not cost the interval's training.
            if self.step % c.save_every == 0 or last:
                if main:
                    checkpoint = self.save()
                barrier(self.dist)
            if evaluate and (self.step % c.eval_every == 0 or last):
                # Evaluations before the last are skipped while they exceed their share of the time.
                if main and (last or eval_seconds <= c.eval_share * (time.perf_counter() - budget.start)):
                    t_eval = time.perf_counter()
                    metrics, error = report_evaluation(
                        self.evaluate, self.step, logger.log, self.last_checkpoint
                    )
                    eval_seconds += time.perf_counter() - t_eval
                    if error is None:
                        eval_metrics = metrics
                    else:
                        eval_errors.append(error)
                barrier(self.dist)
        bar.close()
        done = self.step - start_step
        return TrainResult(
            step=self.step,
            losses=window.history(),
            seconds=train_seconds,
            images_per_second=done * c.batch_size / train_seconds if train_seconds else 0.0,
            run_dir=self.run_dir,
            checkpoint=checkpoint if checkpoint is not None else self.last_checkpoint,
            eval=eval_metrics,
            eval_errors=eval_errors,
            skipped_steps=self.guard.skipped,
        )
