"""The shared body of ``scoresde inpaint`` and ``scoresde colorize``: a linear inverse problem
(``y_obs = A x``) sampled by projection, DPS (``--dps``) or SMC (``--smc``).

The options (:func:`inverse_options`), the choice of the posterior sampler from them
(:func:`inverse_mode`, which refuses an option of a mode that is not chosen, naming it and the
flag that selects its mode) and the run (:func:`sample_inverse`, through
:func:`scoresde.guidance.inverse.sample_posterior`) are the same for both commands; each
command builds its operator and observations and writes its own figure and metrics.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from scoresde.cli.command import Context, smc_options
from scoresde.settings import Option

__all__ = ["DPS_ZETA", "inverse_mode", "inverse_options", "sample_inverse"]

DPS_ZETA = 0.2
"""The default of ``--dps-zeta`` (the value measured on the 8x8 digits, docs/guidance.md)."""

_SMC_DEFAULTS = {o.key: o.default for o in smc_options()}

# option key -> (its flag, the mode it belongs to, the flag that selects that mode)
_MODE_FLAGS = {
    "dps_zeta": ("--dps-zeta", "dps", "--dps"),
    "particles": ("--particles", "smc", "--smc"),
    "smc_proposal": ("--smc-proposal", "smc", "--smc"),
}
_DEFAULTS = {"dps_zeta": DPS_ZETA, **_SMC_DEFAULTS}


def inverse_options() -> list[Option]:
    """``--dps``, ``--dps-zeta`` and the SMC options (:func:`scoresde.cli.command.smc_options`)."""
    return [
        Option(
            "dps", False, "diffusion posterior sampling (Chung et al. 2023, Alg. 1) instead of projection"
        ),
        Option("dps_zeta", DPS_ZETA, "--dps: step size zeta' (zeta_i = zeta' / ||residual||)", minimum=0.0),
        *smc_options(),
    ]


def inverse_mode(cfg: dict[str, Any]) -> str:
    """``"projection"``, ``"dps"`` or ``"smc"`` from ``--dps`` / ``--smc``.

    Raises:
        ValueError: both ``--dps`` and ``--smc``, or an option of a mode not chosen (changed from
            its default), e.g. ``--particles`` without ``--smc``: it would be silently ignored.
    """
    if cfg.get("dps") and cfg.get("smc"):
        raise ValueError("give --dps or --smc, not both")
    mode = "dps" if cfg.get("dps") else "smc" if cfg.get("smc") else "projection"
    for key, (flag, owner, switch) in _MODE_FLAGS.items():
        if key in cfg and owner != mode and cfg[key] != _DEFAULTS[key]:
            raise ValueError(
                f"{flag} applies to {switch} ({owner}) only, and this run samples by {mode}: "
                f"add {switch}, or drop {flag}"
            )
    return mode


def describe(cfg: dict[str, Any], mode: str) -> str:
    """The sampler of the run in words (for the command's summary line)."""
    return {
        "dps": f"ancestral + zeta {cfg.get('dps_zeta', DPS_ZETA):g}",
        "smc": f"{cfg['smc_proposal']}, {cfg['particles']} particles",
        "projection": cfg["method"],
    }[mode]


def sample_inverse(
    ctx: Context, model: Any, operator: Any, y_obs: Tensor, shape: tuple[int, ...], y: Tensor | None
) -> tuple[str, Any]:
    """``(mode, result)``: ``x`` of shape ``shape`` given ``y_obs = A x`` with the run's settings
    (:func:`scoresde.guidance.inverse.sample_posterior`)."""
    from scoresde.guidance.inverse import sample_posterior

    cfg = ctx.cfg
    mode = inverse_mode(cfg)
    run: dict[str, Any] = {"steps": cfg["steps"], "grid": cfg["grid"], "seed": cfg["seed"], "y": y}
    run.update(device=ctx.device, progress=cfg["progress"])
    if mode == "smc":
        res = sample_posterior(
            model,
            operator,
            y_obs,
            shape,
            "smc",
            particles=cfg["particles"],
            proposal=cfg["smc_proposal"],
            **run,
        )
    elif mode == "dps":
        res = sample_posterior(
            model, operator, y_obs, shape, "dps", zeta=cfg["dps_zeta"], denoise=cfg["denoise"], **run
        )
    else:
        res = sample_posterior(
            model, operator, y_obs, shape, "projection", method=cfg["method"], denoise=cfg["denoise"], **run
        )
    return mode, res
