"""``scoresde`` command-line entry point: one module per subcommand."""

from __future__ import annotations

import argparse
import sys

from scoresde.cli import colorize as colorize_cli
from scoresde.cli import demo
from scoresde.cli import evaluate as eval_cli
from scoresde.cli import inpaint as inpaint_cli
from scoresde.cli import likelihood as likelihood_cli
from scoresde.cli import sample as sample_cli
from scoresde.cli import train as train_cli
from scoresde.cli import train_classifier as train_classifier_cmd
from scoresde.cli.latents import decode as decode_cli
from scoresde.cli.latents import encode as encode_cli
from scoresde.cli.latents import interpolate as interpolate_cli

SUBCOMMANDS = {
    "demo": demo,
    "train": train_cli,
    "sample": sample_cli,
    "train-classifier": train_classifier_cmd,
    "likelihood": likelihood_cli,
    "encode": encode_cli,
    "decode": decode_cli,
    "interpolate": interpolate_cli,
    "eval": eval_cli,
    "inpaint": inpaint_cli,
    "colorize": colorize_cli,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scoresde",
        description="Score-based generative modelling through SDEs (Song et al. 2021).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"scoresde {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. an output folder that cannot be written
        print(f"scoresde {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
