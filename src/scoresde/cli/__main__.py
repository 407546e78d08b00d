"""``scoresde`` command-line entry point: one :class:`~scoresde.cli.command.Command` per subcommand.

How to add a subcommand or an option group: see :mod:`scoresde.cli.command`.
"""

from __future__ import annotations

import argparse
import sys

from scoresde.cli import (
    colorize,
    demo,
    evaluate,
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
]
"""Every subcommand, in the order of ``scoresde --help``."""

SUBCOMMANDS: dict[str, Command] = {c.name: c for c in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scoresde",
        description="Score-based generative modelling through SDEs (Song et al. 2021).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except (ValueError, TypeError, OSError) as err:  # OSError: a missing file, an unwritable folder
        print(f"scoresde {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
