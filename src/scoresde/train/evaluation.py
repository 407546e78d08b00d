"""What the trainer measures on held-out data, one function per measure.

- :func:`held_out_loss`: the training objective with fixed draws;
- :func:`sample_grid`: samples from the model (labels cycling over the classes);
- :func:`bpd_probability_flow`: bits/dim by the probability-flow ODE likelihood
  (Song et al. 2021, App. D.2), through :func:`scoresde.flow.likelihood.log_likelihood`;
- :func:`bpd_bound`: bits/dim from the reverse SDE's variational bound (Song et al. 2021c,
  Thm. 3), :func:`scoresde.flow.bound.dsm_nll_bound`.

Both bits/dim measures use the library's one dequantization convention,
:class:`scoresde.flow.dequantization.Quantization`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from scoresde.flow.bound import dsm_nll_bound
from scoresde.flow.dequantization import Quantization
from scoresde.models.wrapper import ScoreModel

__all__ = ["bpd_bound", "bpd_probability_flow", "held_out_loss", "sample_grid"]


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
    model: ScoreModel,
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
