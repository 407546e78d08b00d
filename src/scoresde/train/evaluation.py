"""What the trainer measures on held-out data, one function per measure.

- :func:`held_out_loss`: the training objective with fixed draws;
- :func:`sample_grid`: samples from the model (labels cycling over the classes);
- :func:`bpd_probability_flow`: bits/dim by the probability-flow ODE likelihood
  (Song et al. 2021, App. D.2), through :func:`scoresde.flow.likelihood.log_likelihood`;
- :func:`bpd_bound`: bits/dim from the reverse SDE's variational bound (Song et al. 2021c,
  Thm. 3), :func:`scoresde.flow.bound.dsm_nll_bound`;
- :class:`Evaluator`: the trainer's evaluation of a run (all of the above with the run's
  settings and fixed draws).

Both bits/dim measures use the library's one dequantization convention,
:class:`scoresde.flow.dequantization.Quantization`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from scoresde._core.seeds import derive_seed
from scoresde.data.images import save_image_grid
from scoresde.flow.bound import dsm_nll_bound
from scoresde.flow.dequantization import Quantization
from scoresde.models.base import ScoreFunction
from scoresde.models.clipping import ClipDenoised
from scoresde.models.wrapper import ScoreModel

__all__ = [
    "Evaluator",
    "report_evaluation",
    "bpd_bound",
    "bpd_probability_flow",
    "held_out_loss",
    "sample_grid",
]


@torch.no_grad()
def held_out_loss(
    objective: Callable,
    model: ScoreModel,
    x: Tensor,
    y: Tensor | None,
    generator: torch.Generator,
    batch_size: int,
    to_model: Callable[[Tensor], Tensor],
) -> float:
    """The mean objective over ``x: (N, *D)`` (labels ``y``), with times and noise from ``generator``.

    ``to_model`` maps a batch of data to the network's input (e.g. flattening for an MLP).
    """
    if x.shape[0] == 0:
        return float("nan")
    device = next(model.parameters()).device
    total, n = 0.0, 0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        u = torch.rand(xb.shape[0], generator=generator)
        noise = torch.randn(xb.shape, generator=generator)
        yb = None if y is None else y[start : start + batch_size].to(device)
        out = objective(model, to_model(xb).to(device), yb, u.to(device), to_model(noise).to(device))
        total += float(out.per_sample.sum())
        n += xb.shape[0]
    return total / n


@torch.no_grad()
def sample_grid(
    model: ScoreFunction,
    shape: tuple[int, ...],
    n: int,
    method: str,
    steps: int,
    seed: int,
    num_classes: int | None,
    device: torch.device,
) -> tuple[Tensor, Tensor | None]:
    """``n`` samples of the model's input ``shape`` (labels ``0, 1, ...`` cycling if conditional),
    on the SDE's :func:`~scoresde.sampling.grids.default_grid`."""
    from scoresde.sampling.api import sample
    from scoresde.sampling.grids import default_grid

    y = None if num_classes is None else (torch.arange(n) % num_classes).to(device)
    grid = default_grid(model.sde)
    res = sample(
        model, shape=(n, *shape), method=method, steps=steps, grid=grid, seed=seed, y=y, device=device
    )
    return res.x, None if y is None else y.cpu()


def bpd_probability_flow(
    model: ScoreModel,
    x: Tensor,
    levels: int,
    y: Tensor | None,
    generator: torch.Generator,
    exact_divergence_up_to: int = 16,
) -> float:
    """Mean bits/dim of discrete data ``x`` (scaled levels in the model's space) by the PF-ODE.

    The data are uniformly dequantized inside :func:`~scoresde.flow.likelihood.log_likelihood`
    (``Quantization(levels, -1, 1)``); beyond ``exact_divergence_up_to`` dimensions the exact
    divergence (one backward pass per dimension) is replaced by Hutchinson's estimator with one
    Rademacher probe per point, drawn from ``generator``.
    """
    from scoresde.flow.likelihood import log_likelihood

    quant = Quantization(int(levels), -1.0, 1.0)
    k = quant.levels_of(x)
    kwargs: dict = {"generator": generator, "quantization": quant}
    if x[0].numel() > exact_divergence_up_to:
        kwargs["divergence"] = "hutchinson"
    res = log_likelihood(model, model.sde, k, y=y, **kwargs)
    return float(res.bpd.double().mean())  # type: ignore[union-attr]


@torch.no_grad()
def bpd_bound(
    model: ScoreModel,
    x: Tensor,
    levels: int,
    y: Tensor | None,
    generator: torch.Generator,
    batch_size: int,
    draws: int = 8,
    dequantize_generator: torch.Generator | None = None,
) -> float:
    """Mean bits/dim of discrete data ``x`` from the reverse SDE's bound (an upper bound in expectation).

    The data are uniformly dequantized (``Quantization(levels, -1, 1)``) with
    ``dequantize_generator`` (default ``generator``), then
    :func:`~scoresde.flow.bound.dsm_nll_bound` draws ``draws`` times per point from ``generator``.
    """
    quant = Quantization(int(levels), -1.0, 1.0)
    z = quant.dequantize_data(x, dequantize_generator or generator)
    nll = torch.cat(
        [
            dsm_nll_bound(
                model, z[i : i + batch_size], draws, None if y is None else y[i : i + batch_size], generator
            )
            for i in range(0, z.shape[0], batch_size)
        ]
    )
    return float(quant.bits_per_dim(-nll.double().cpu(), z[0].numel()).mean())


class Evaluator:
    """The trainer's evaluations of a model (its EMA model by default), with fixed draws.

    Args:
        config: the run's :class:`~scoresde.train.config.TrainConfig`.
        data: the data set (held-out split, labels, levels).
        to_net: maps a batch of items to the network's input (flattening for an MLP).
        device: where the model lives.
        objective: the training objective (for the held-out loss).
    """

    def __init__(self, config, data, to_net: Callable[[Tensor], Tensor], device, objective: Callable) -> None:
        self.config, self.data, self.to_net, self.device = config, data, to_net, device
        self.objective = objective

    def _generator(self, stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(derive_seed(self.config.seed, 0, stream))

    def held_out_loss(self, model: ScoreModel, max_images: int | None = None) -> float:
        """The training objective on the held-out split with fixed draws."""
        c, d = self.config, self.data
        y = d.test_labels[:max_images] if c.conditional else None
        x = d.test[:max_images]
        return held_out_loss(self.objective, model, x, y, self._generator(7), c.batch_size, self.to_net)

    def sample_images(self, model: ScoreModel, n: int | None = None) -> tuple[Tensor, Tensor | None]:
        """Draw ``n`` samples ``(n, C, H, W)`` (labels cycling over the classes) by ``sample_method``
        with the predicted x0 clipped as ``sample_clip`` says."""
        c, d = self.config, self.data
        n = n or c.num_samples
        shape = d.shape if c.net != "mlp" else (math.prod(d.shape),)
        classes = d.num_classes if c.conditional else None
        sampled = ClipDenoised(model, mode=c.sample_clip) if c.sample_clip != "none" else model
        x, y = sample_grid(sampled, shape, n, c.sample_method, c.sample_steps, c.seed, classes, self.device)
        return x.reshape(n, *d.shape).float().cpu(), y

    def bits_per_dim(self, model: ScoreModel, bound: bool = False) -> float:
        """Held-out bits/dim of uniformly dequantized images (``bpd_samples`` of them).

        Class-conditional models trained with ``label_dropout > 0`` are scored through their
        unconditional (null-token) mode, otherwise given the true labels.  ``bound=False``:
        :func:`bpd_probability_flow` (the PF-ODE likelihood; Hutchinson's divergence estimator
        beyond 16 dimensions); ``bound=True``: :func:`bpd_bound` (the reverse SDE's variational
        bound, 8 draws per image, an upper bound in expectation).
        """
        c, d = self.config, self.data
        if d.levels is None:
            raise ValueError("bits/dim needs discrete data (levels); this data set is continuous")
        x = self.to_net(d.test[: c.bpd_samples]).to(self.device)
        given_labels = c.conditional and c.label_dropout == 0  # else scored through the null token
        y = d.test_labels[: c.bpd_samples].to(self.device) if given_labels else None
        if bound:
            return bpd_bound(
                model,
                x,
                d.levels,
                y,
                self._generator(9),
                c.batch_size,
                dequantize_generator=self._generator(8),
            )
        return bpd_probability_flow(model, x, d.levels, y, self._generator(10))

    def __call__(self, model: ScoreModel, grid: Path | None) -> dict[str, float]:
        """Held-out loss, a sample grid written to ``grid`` (when given and ``num_samples > 0``),
        and bits/dim when ``eval_bpd``; ``eval_seconds`` is the time taken."""
        c = self.config
        t0 = time.perf_counter()
        metrics: dict[str, float] = {"eval_loss": self.held_out_loss(model)}
        if c.num_samples > 0 and grid is not None:
            x, _ = self.sample_images(model)
            save_image_grid(x, grid, scale=4)
        if c.eval_bpd:
            metrics["bpd_bound"] = self.bits_per_dim(model, bound=True)
            metrics["bpd"] = self.bits_per_dim(model)
        metrics["eval_seconds"] = time.perf_counter() - t0
        return metrics


def report_evaluation(
    evaluate: Callable[[], dict[str, float]], step: int, log: Callable[[dict], None], saved: Path | None
) -> tuple[dict[str, float], str | None]:
    """``evaluate()``, logged with ``log`` at ``step``; a failure is reported (stderr, ``log``)
    instead of raised, naming the saved checkpoint.  Returns ``(metrics, error message or None)``."""
    try:
        metrics = evaluate()
    except Exception as err:  # an evaluation failure must not lose the run
        msg = f"evaluation at step {step} failed ({type(err).__name__}: {err})"
        print(f"warning: {msg}; training goes on (checkpoint {saved} is saved)", file=sys.stderr, flush=True)
        log({"step": step, "eval_error": msg})
        return {}, msg
    log({"step": step, **metrics})
    return metrics, None
