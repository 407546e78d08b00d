"""``scoresde`` command-line entry point: one :class:`~scoresde.cli.command.Command` per subcommand.

How to add a subcommand or an option group: see :mod:`scoresde.cli.command`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from scoresde.cli.command import Command


class Entry(NamedTuple):
    """Where a subcommand lives: ``getattr(import_module(module), attr)`` is its :class:`Command`."""

    name: str
    module: str
    attr: str
    help: str


TABLE: tuple[Entry, ...] = (
    Entry(
        "demo",
        "scoresde.cli.demo",
        "COMMAND",
        "train score models on the 2-D funnel and compare samplers (a few minutes on a CPU)",
    ),
    Entry(
        "train",
        "scoresde.cli.train",
        "COMMAND",
        "train a score model on images (digits, .npy/.npz arrays, image folders); torchrun for DDP",
    ),
    Entry(
        "sample",
        "scoresde.cli.sample",
        "COMMAND",
        "sample a trained checkpoint (optionally guided): PNG grid and .npz array or PNG folder",
    ),
    Entry(
        "fit-solver",
        "scoresde.cli.fit_solver",
        "COMMAND",
        "fit a bespoke few-step solver (Shaul et al. 2024) to a checkpoint, for `sample --solver`",
    ),
    Entry(
        "distill",
        "scoresde.cli.distill",
        "COMMAND",
        "distil a checkpoint into a consistency model or a progressive DDIM student (1-4 steps); resumable",
    ),
    Entry(
        "train-classifier",
        "scoresde.cli.train_classifier",
        "COMMAND",
        "train a time-dependent classifier for classifier guidance (mixtures or digits)",
    ),
    Entry(
        "likelihood",
        "scoresde.cli.likelihood",
        "COMMAND",
        "log-likelihood (nats, bits/dim) of data under a checkpoint, by the probability-flow ODE",
    ),
    Entry(
        "encode",
        "scoresde.cli.latents",
        "encode",
        "map data to latents with the probability-flow ODE (writes latents.npz)",
    ),
    Entry(
        "decode",
        "scoresde.cli.latents",
        "decode",
        "map latents (or prior draws) to samples with the probability-flow ODE",
    ),
    Entry(
        "interpolate",
        "scoresde.cli.latents",
        "interpolate",
        "decode a spherical interpolation between two data points or two latents",
    ),
    Entry(
        "eval",
        "scoresde.cli.evaluate",
        "COMMAND",
        "sample quality of a checkpoint vs held-out data (sliced W2, MMD, energy; labelled images: Frechet, "
        "accuracy; --fid-weights: FID, KID, IS)",
    ),
    Entry(
        "inpaint",
        "scoresde.cli.inpaint",
        "COMMAND",
        "inpaint held-out images with a score model (projection, DPS or SMC): PNG figure and .npz",
    ),
    Entry(
        "colorize",
        "scoresde.cli.colorize",
        "COMMAND",
        "colorize held-out grayscale images with a 3-channel score model: PNG figure and .npz",
    ),
    Entry(
        "export",
        "scoresde.cli.export",
        "COMMAND",
        "export a checkpoint as a diffusers pipeline folder (UNet2DModel + DDIMScheduler)",
    ),
)
"""Every subcommand, in the order of ``scoresde --help``: its name, where its
:class:`~scoresde.cli.command.Command` lives, and its help line (a copy of ``Command.help``,
checked by ``tests/cli/test_startup.py``).  Only the command that runs is imported, so
``scoresde --help`` and ``scoresde sample --help`` import no torch."""


def load_command(name: str) -> Command:
    """The :class:`~scoresde.cli.command.Command` named ``name`` (imports its module)."""
    entry = next(e for e in TABLE if e.name == name)
    return getattr(importlib.import_module(entry.module), entry.attr)


def __getattr__(name: str) -> Any:
    """``COMMANDS`` (every :class:`Command`, in order) and ``SUBCOMMANDS`` (by name), imported on
    first use: they import every subcommand's module, torch included."""
    if name == "COMMANDS":
        return [load_command(e.name) for e in TABLE]
    if name == "SUBCOMMANDS":
        return {e.name: load_command(e.name) for e in TABLE}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first argument that is not an option)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``scoresde``; with ``only``, just that subcommand's options are built (the
    others are listed with their help line), so only its module is imported."""
    parser = argparse.ArgumentParser(
        prog="scoresde",
        description="Score-based generative modelling through SDEs (Song et al. 2021).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 done, 2 usage error, 1 runtime failure (SCORESDE_DEBUG=1: traceback).",
    )
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in TABLE:
        if only is not None and entry.name != only:
            sub.add_parser(entry.name, help=entry.help, add_help=False)
            continue
        command = load_command(entry.name)
        p = sub.add_parser(
            entry.name,
            help=entry.help,
            description=command.doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(p)
        if any(o.key == "data" for o in command.all_options):
            from scoresde.data.images import DATA_LAYOUTS

            p.epilog = f"{DATA_LAYOUTS}\n\n{p.epilog or ''}".rstrip()
        p.set_defaults(run=command.run)
    return parser


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("SCORESDE_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the exit status.

    0: done; 2: a usage error (a bad option value, an unknown name, a missing file given as an
    option); 1: a runtime failure (a non-finite model output, a busy run folder, a failed
    checkpoint write, a solver failure, any other error); 130: interrupted.  Errors print one
    line ``scoresde <command>: error: ...``; ``--debug`` (before the command) or
    ``SCORESDE_DEBUG=1`` prints the traceback too.  See :mod:`scoresde.cli.checks`.
    """
    from scoresde.settings.runtime import quiet_openmp

    quiet_openmp()  # before torch is imported: idle OpenMP threads sleep instead of spinning
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = _chosen(argv)
    parser = build_parser(chosen if chosen in {e.name for e in TABLE} else "")
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"scoresde {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        from scoresde.cli.checks import exit_status

        status = exit_status(err)
        if _debug(args):
            traceback.print_exc()
        text = " ".join(str(err).split()) or "(no message)"
        if status == 1 and not isinstance(err, OSError | RuntimeError | ArithmeticError):
            text = f"{type(err).__name__}: {text}"
        hint = "" if _debug(args) else " (SCORESDE_DEBUG=1 or --debug shows the traceback)"
        print(f"scoresde {args.command}: error: {text}{hint if status == 1 else ''}", file=sys.stderr)
        return status
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Under torchrun, leave the process group before the interpreter exits: a gloo group still
    alive at exit can abort the process ("terminate called without an active exception") after
    its outputs are written.  Imports nothing that the command did not load already."""
    if "torch.distributed" in sys.modules:
        from scoresde.parallel.process_group import cleanup_distributed

        cleanup_distributed()


if __name__ == "__main__":
    sys.exit(main())
