"""``scoresde`` command-line entry point: one :class:`~scoresde.cli.command.Command` per subcommand.

How to add a subcommand or an option group: see :mod:`scoresde.cli.command`.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from scoresde.cli import (
    colorize,
    demo,
    evaluate,
    export,
    inpaint,
    latents,
    likelihood,
    sample,
    train,
    train_classifier,
)
from scoresde.cli.command import Command

COMMANDS: list[Command] = [
    demo.COMMAND,
    train.COMMAND,
    sample.COMMAND,
    train_classifier.COMMAND,
    likelihood.COMMAND,
    latents.encode,
    latents.decode,
    latents.interpolate,
    evaluate.COMMAND,
    inpaint.COMMAND,
    colorize.COMMAND,
    export.COMMAND,
]
"""Every subcommand, in the order of ``scoresde --help``."""

SUBCOMMANDS: dict[str, Command] = {c.name: c for c in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scoresde",
        description="Score-based generative modelling through SDEs (Song et al. 2021).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 done, 2 usage error, 1 runtime failure (SCORESDE_DEBUG=1: traceback).",
    )
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        p = sub.add_parser(
            name,
            help=command.help,
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
    from scoresde.cli.checks import exit_status

    parser = build_parser()
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
        status = exit_status(err)
        if _debug(args):
            traceback.print_exc()
        text = " ".join(str(err).split()) or "(no message)"
        if status == 1 and not isinstance(err, OSError | RuntimeError | ArithmeticError):
            text = f"{type(err).__name__}: {text}"
        hint = "" if _debug(args) else " (SCORESDE_DEBUG=1 or --debug shows the traceback)"
        print(f"scoresde {args.command}: error: {text}{hint if status == 1 else ''}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
