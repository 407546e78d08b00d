"""The one way a ``scoresde`` subcommand is declared: shared option groups and a ``run`` body.

A subcommand is a :class:`Command`: a name, a help line, a description, its options (mostly
from the shared groups below) and a body ``run(ctx: Context) -> int``.  The backbone does the
rest the same way for every command: the flags, ``--config`` (TOML or JSON), ``--set``, typed
and checked values (:mod:`scoresde.settings`, :mod:`scoresde.cli.config`), the CPU thread
count (set for the run and restored after it; ``--threads 0``, the default, takes the cores
that other processes leave free, :mod:`scoresde.settings.runtime`) and the device (resolved
once, ``ctx.device``).  This module imports no torch: the option groups take their names from
:mod:`scoresde.cli.names`, so ``--help`` stays fast.

Option groups (functions returning a list of :class:`~scoresde.settings.Option`; keyword
arguments replace a group's defaults, so each command keeps its own sensible defaults while
every flag means the same everywhere):

- :func:`runtime_options`: ``--seed``, ``--device``, ``--threads``, ``--progress/--no-progress``
  (every command has them; :class:`Command` adds them when a command does not list them);
- ``--out`` / ``--name`` (:data:`~scoresde.cli.config.COMMON_OPTIONS`, every command);
- :func:`checkpoint_options`: ``--checkpoint``, ``--raw``, and the model sources ``--model
  diffusers:DIR`` / ``--model score_sde:CKPT --model-config CFG [--weights ema|raw]``
  (:mod:`scoresde.cli.models`), ``--compile`` / ``--compile-mode`` / ``--channels-last``
  (:func:`compile_options`; all read with :func:`scoresde.cli._io.load_model`);
- :func:`data_options`: ``--data``, ``--num``;
- :func:`sampler_options`: ``--method`` (a key of :data:`scoresde.SAMPLERS`), ``--steps``,
  ``--grid`` (one of :data:`scoresde.GRIDS`), ``--denoise``; for ``sample`` and ``eval`` also
  ``--solver PATH``, a bespoke solver of ``scoresde fit-solver`` (:mod:`scoresde.cli._bespoke`);
- :func:`ode_options`: ``--rtol``, ``--atol``, ``--norm`` of the adaptive PF-ODE solver.

Adding a subcommand or an option group: see "For developers" in ``docs/cli.md`` (a ``Command``
in ``cli/<name>.py``, listed in ``TABLE`` of :mod:`scoresde.cli.__main__`, with a section in
``docs/cli.md``, which ``tests/cli/test_docs_names.py`` checks).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scoresde.cli.config import add_options, check_out, claim_run_dir, resolve
from scoresde.cli.names import (
    ALIASES,
    CLIP_MODES,
    COMPILE_MODES,
    EXECUTION_MODES,
    GRIDS,
    NORMS,
    SAMPLERS_REQUIRED,
)
from scoresde.io.outputs import OutputFolder, finish_output_dir
from scoresde.settings import Option

if TYPE_CHECKING:
    import torch

__all__ = [
    "Command",
    "Context",
    "checkpoint_options",
    "clip_options",
    "compile_options",
    "data_options",
    "ode_options",
    "runtime_options",
    "sampler_options",
    "sampling_defaults",
    "smc_grid_default",
    "smc_options",
]


# --------------------------------------------------------------------------------------------- #
# Option groups.
# --------------------------------------------------------------------------------------------- #
def runtime_options(
    seed: int = 0,
    device: str = "auto",
    threads: int = 0,
    progress: bool = False,
    seed_help: str = "seed of every random draw",
    threads_help: str = (
        "CPU threads of torch for this run (0: auto, the cores other processes leave free; "
        "SCORESDE_THREADS=N sets the auto value)"
    ),
) -> list[Option]:
    """``--seed``, ``--device``, ``--threads``, ``--progress`` (every command has them)."""
    return [
        Option("seed", seed, seed_help),
        Option("device", device, "auto (cuda when available), cpu, cuda or cuda:N"),
        Option("threads", threads, threads_help, minimum=0),
        Option("progress", progress, "show progress bars"),
    ]


def checkpoint_options(
    help: str = "a .safetensors checkpoint or a run folder of `scoresde train`",
) -> list[Option]:
    """``--checkpoint`` and ``--raw``, with the model-source group
    (:func:`scoresde.cli.models.model_source_options`: ``--model``, ``--model-config``,
    ``--weights``) and compiled execution (``--compile``, ``--compile-mode``); the body's
    :func:`scoresde.cli._io.load_model` needs exactly one of ``--checkpoint`` / ``--model`` and
    prepares the model's network as ``--compile`` / ``--channels-last`` say
    (:func:`scoresde.models.execution.prepare_model`)."""
    from scoresde.cli.models import model_source_options

    return [
        Option("checkpoint", "", help, type=str, metavar="PATH"),
        Option("raw", False, "use the raw weights instead of the EMA weights"),
        *model_source_options(),
        *compile_options(),
    ]


def compile_options() -> list[Option]:
    """``--compile``, ``--compile-mode`` and ``--channels-last``: how the model's network runs."""
    return [
        Option(
            "compile",
            "off",
            "how the network runs: off (eager), on (torch.compile: compiles once per batch shape, seconds "
            "to minutes; pays on long runs), freeze (torch.jit trace + freeze + optimize_for_inference: "
            "about a second per batch shape, no compiler needed; networks whose trace would change "
            "results run eagerly, with a warning); bare --compile: on; see docs/bench_network_modes.md",
            choices=EXECUTION_MODES,
            const="on",
        ),
        Option(
            "compile_mode",
            "default",
            "--compile on: torch.compile mode (reduce-overhead: CUDA graphs, for fixed-step samplers on a "
            "GPU)",
            choices=COMPILE_MODES,
        ),
        Option(
            "channels_last",
            False,
            "run the network's convolutions in channels_last (NHWC) memory format (faster convolutions "
            "on x86 CPUs for some networks, slower GroupNorm: see docs/bench_network_modes.md)",
        ),
    ]


def data_options(
    data: str = "digits", num: int = 100, num_help: str = "number of data points", minimum: int = 1
) -> list[Option]:
    """``--data`` (a data source) and ``--num``."""
    return [
        Option(
            "data",
            data,
            "digits, digits-color, a toy set name, a .npy/.npz file (keras layout too), a CIFAR folder or "
            "an image folder (held-out split); the accepted layouts are listed below",
        ),
        Option("num", num, num_help, minimum=minimum, short="-n"),
    ]


OPTIMIZED_GRID = "optimized"
AUTO_GRID = "auto"
"""``--grid optimized``: :func:`scoresde.sampling.grid_opt.optimized_grid` (``grid="optimized"``)."""


_IN_PYTHON = "scoresde.sample takes it in Python"
_ELSEWHERE = {
    "dps": "scoresde inpaint runs it (--dps), and scoresde.sample takes it in Python",
    "dpm_solver_v3": "compute them with scoresde.sampling.compute_ems and call scoresde.sample in Python",
    "bespoke": "scoresde sample and scoresde eval run it (--solver PATH, fitted by scoresde fit-solver), and "
    "scoresde.sample takes it in Python",
}


def sampler_options(
    method: str = "euler",
    steps: int = 100,
    grid: str = "uniform",
    optimized: bool = False,
    solver: bool = False,
) -> list[Option]:
    """``--method`` (a key of :data:`scoresde.SAMPLERS`), ``--steps``, ``--grid`` (one of
    :data:`scoresde.GRIDS`), ``--denoise``; with ``optimized`` also ``--grid optimized`` and its
    pilot's ``--grid-pilot`` / ``--grid-seed``, and ``--grid auto`` (apply with
    :func:`scoresde.sampling.grid_opt.grid_choice`); with ``solver`` also ``--solver PATH``, a
    bespoke solver of ``scoresde fit-solver`` (``--method bespoke``; apply with
    :func:`scoresde.cli._bespoke.bespoke_options`, with :func:`sampling_defaults` as the
    command's base layer)."""
    grids = (*GRIDS, AUTO_GRID, OPTIMIZED_GRID) if optimized else tuple(GRIDS)
    grid_help = "time grid"
    if optimized:
        grid_help += (
            f" ({AUTO_GRID}: edm under the EDM SDE, uniform otherwise; {OPTIMIZED_GRID}: optimised for this "
            "model and ODE solver on a pilot batch)"
        )
    extra = (
        [
            Option("grid_pilot", 512, "--grid optimized: pilot batch size of the optimisation", minimum=1),
            Option("grid_seed", 0, "--grid optimized: seed of the pilot batch"),
        ]
        if optimized
        else []
    )
    if solver:
        extra.append(
            Option(
                "solver",
                "",
                "a bespoke solver (Shaul et al. 2024) fitted for this model by `scoresde fit-solver`: its "
                "solver.json or output folder; implies --method bespoke and the solver's --steps, and "
                "replaces --grid by the solver's own times",
                type=str,
                metavar="PATH",
            )
        )
    offered = {
        k: required
        for k, required in SAMPLERS_REQUIRED.items()
        if not required or (solver and k == "bespoke")
    }
    return [
        Option(
            "method",
            method,
            "sampler, a key of scoresde.SAMPLERS (those that need no problem-specific options"
            + ("; bespoke with --solver)" if solver else ")"),
            # The keys, and the old keys still accepted (scoresde.sampling.ALIASES).
            choices=tuple(offered) + tuple(a for a, k in ALIASES.items() if k in offered),
            what="sampler",
            elsewhere={
                k: f"the sampler needs {', '.join(required)}; {_ELSEWHERE.get(k, _IN_PYTHON)}"
                for k, required in SAMPLERS_REQUIRED.items()
                if k not in offered
            },
            metavar="METHOD",
        ),
        Option("steps", steps, "sampler steps", minimum=1),
        Option("grid", grid, grid_help, choices=grids),
        Option("denoise", True, "finish with the Tweedie denoising step"),
        *extra,
    ]


def smc_options() -> list[Option]:
    """``--smc``, ``--particles`` and ``--smc-proposal``: SMC posterior sampling
    (:func:`scoresde.guidance.smc_sample`)."""
    return [
        Option(
            "smc",
            False,
            "twisted sequential Monte Carlo (Wu et al. 2023) instead of projection (--grid then defaults "
            "to logsnr)",
        ),
        Option("particles", 16, "--smc: particles K per image", minimum=1),
        Option(
            "smc_proposal",
            "tds",
            "--smc: tds (twisted proposals, one backward pass per step) or mcgdiff (Cardoso et al. "
            "2023, gradient-free)",
            choices=("tds", "mcgdiff"),
        ),
    ]


def smc_grid_default(given: dict[str, Any]) -> dict[str, Any] | None:
    """The base layer of the commands with :func:`smc_options`: with ``--smc`` the time grid
    defaults to ``logsnr`` (:func:`scoresde.guidance.smc_sample`'s default); a ``--grid`` given
    in any way still wins."""
    return {"grid": "logsnr"} if given.get("smc") else None


def sampling_defaults(given: dict[str, Any]) -> dict[str, Any] | None:
    """The base layer of the sampling commands with ``--solver`` (``sample``, ``eval``): with
    ``--solver PATH``, ``--method bespoke`` and the solver's step count
    (:func:`scoresde.cli._bespoke.solver_defaults`), else :func:`distilled_grid_default`.
    Settings given in any way still win (and are checked by
    :func:`scoresde.cli._bespoke.bespoke_options`)."""
    if given.get("solver"):
        from scoresde.cli._bespoke import solver_defaults

        return solver_defaults(given)
    return distilled_grid_default(given)


def distilled_grid_default(given: dict[str, Any]) -> dict[str, Any] | None:
    """The base layer of the sampling commands (``sample``, ``eval``): for a student of
    ``scoresde distill --method progressive`` (``extra["progressive"]`` in its checkpoint), DDIM
    with its step count and grid and no final denoising step (its network evaluations are its
    steps); ``None`` for any other model.  Settings given in any way still win (and are checked
    by :meth:`scoresde.io.loaded.DistilledGrid.check`)."""
    if not given.get("checkpoint") or given.get("model"):
        return None
    from scoresde.io.checkpoint import read_checkpoint_metadata
    from scoresde.io.info import checkpoint_file

    try:
        extra = read_checkpoint_metadata(checkpoint_file(given["checkpoint"])).get("extra") or {}
    except (OSError, ValueError):
        return None  # the command's own loading reports it
    entry = extra.get("progressive")
    if entry is None:
        return None
    return {"method": "ddim", "steps": int(entry["steps"]), "grid": entry["grid_name"], "denoise": False}


CLIP_CHOICES = ("none", *CLIP_MODES, "auto")


def clip_options(default: str = "none") -> list[Option]:
    """``--clip-denoised`` (none, clip or dynamic thresholding of the predicted x0, or auto:
    clip for image models in [-1, 1], none otherwise); apply with
    :func:`scoresde.sampling.clip.clip_denoised`."""
    return [
        Option(
            "clip_denoised",
            default,
            "keep the predicted x0 in the data range while sampling: none, clip (to [-1, 1]), dynamic "
            "(thresholding, Saharia et al. 2022) or auto (clip for image models whose data range is "
            "[-1, 1], none for others)",
            choices=CLIP_CHOICES,
        )
    ]


def ode_options(rtol: float = 1e-5, atol: float = 1e-5) -> list[Option]:
    """``--rtol``, ``--atol`` and ``--norm`` of the adaptive probability-flow ODE solver."""
    return [
        Option("rtol", rtol, "relative tolerance of the dopri5 solver", minimum=0.0),
        Option("atol", atol, "absolute tolerance of the dopri5 solver", minimum=0.0),
        Option(
            "norm",
            "per_sample",
            "adaptive error control: per_sample (shared steps, each sample within tolerance), independent "
            "(per-sample steps: exactly batch-independent, faster for large batches) or batch (one RMS)",
            choices=NORMS,
        ),
    ]


# --------------------------------------------------------------------------------------------- #
# Commands.
# --------------------------------------------------------------------------------------------- #
@dataclass
class Context:
    """What a command's body gets.

    Attributes:
        command: the subcommand's name.
        cfg: the resolved settings (every option's key).
        device: the resolved ``--device``.
        given: the settings before the command's ``base`` layer (see :class:`Command`).
    """

    command: str
    cfg: dict[str, Any]
    device: torch.device
    given: dict[str, Any] = field(default_factory=dict)
    folder: OutputFolder | None = field(default=None, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.cfg[key]

    def out_dir(self, default: str | Path | None = None, save: bool = True) -> Path:
        """The run's output folder (``--out``, else ``runs/<--name>``, else ``default``, else
        ``runs/<command>-<timestamp>``), claimed once (:func:`scoresde.cli.config.claim_run_dir`:
        an earlier run's results there are refused, or replaced under ``--overwrite``), with the
        settings saved as ``config.toml``."""
        if self.folder is None:
            self.folder = claim_run_dir(self.cfg, self.command, save=save, default=default)
        return self.folder.path


@dataclass(frozen=True)
class Command:
    """A subcommand: its options and its body, run the same way as every other.

    Args:
        name: the subcommand's name (also its table in a ``--config`` file).
        help: the one-line summary of ``scoresde --help``.
        doc: the description of ``scoresde <name> --help``.
        options: its settings; :func:`runtime_options` are added where missing, and ``--out``
            / ``--name`` always.
        body: ``run(ctx) -> exit status``.
        base: optional ``settings -> values``: a layer between the defaults and everything
            given (``--quick`` presets, a resumed checkpoint's settings); ``None`` for none.
    """

    name: str
    help: str
    doc: str
    options: Sequence[Option]
    body: Callable[[Context], int]
    base: Callable[[dict[str, Any]], Mapping[str, Any] | None] | None = None

    @property
    def all_options(self) -> list[Option]:
        keys = {o.key for o in self.options}
        return list(self.options) + [o for o in runtime_options() if o.key not in keys]

    @property
    def OPTIONS(self) -> list[Option]:
        return self.all_options

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_options(parser, self.all_options)

    def settings(self, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(settings, settings without the base layer)`` of a parsed command line."""
        given = resolve(args, self.all_options, self.name)
        layer = self.base(given) if self.base is not None else None
        cfg = resolve(args, self.all_options, self.name, base=layer) if layer else given
        return cfg, given

    def resolve(self, args: argparse.Namespace) -> dict[str, Any]:
        """The resolved settings of a parsed command line."""
        return self.settings(args)[0]

    def run(self, args: argparse.Namespace) -> int:
        """Resolve the settings, then run the body with ``--threads`` threads on ``--device``
        (``--threads 0``: :func:`scoresde.settings.runtime.auto_threads`, the free cores)."""
        from scoresde._core.device import local_rank, num_threads, resolve_device
        from scoresde.cli.checks import check_settings
        from scoresde.settings.runtime import auto_threads

        cfg, given = self.settings(args)
        check_settings(cfg)
        check_out(cfg, self.name)
        with num_threads(cfg["threads"] or auto_threads()):
            device = resolve_device(cfg["device"], local_rank())
            ctx = Context(self.name, cfg, device, given)
            ok = False
            try:
                status = int(self.body(ctx) or 0)
                ok = status == 0
                return status
            finally:
                if ctx.folder is not None:
                    finish_output_dir(ctx.folder, ok)
