"""``-n`` is ``--num`` on every command that has ``--num``, and torchrun leaves it alone."""

from __future__ import annotations

import pytest

from scoresde.cli.__main__ import SUBCOMMANDS, build_parser
from scoresde.cli.config import resolve

WITH_NUM = sorted(name for name, c in SUBCOMMANDS.items() if any(o.key == "num" for o in c.all_options))


def test_some_commands_have_num() -> None:
    assert {"sample", "likelihood", "eval", "encode"} <= set(WITH_NUM)


@pytest.mark.parametrize("name", WITH_NUM)
def test_short_n_is_num(name: str) -> None:
    parser = build_parser()
    command = SUBCOMMANDS[name]
    short = resolve(parser.parse_args([name, "-n", "7"]), command.all_options, name)
    long = resolve(parser.parse_args([name, "--num", "7"]), command.all_options, name)
    assert short["num"] == long["num"] == 7


def test_torchrun_passes_short_n_through_but_not_num() -> None:
    run = pytest.importorskip("torch.distributed.run")
    head = ["--standalone", "--nproc_per_node=2", "-m", "scoresde", "sample", "--checkpoint", "x"]
    args = run.get_args_parser().parse_args([*head, "-n", "8"])
    assert args.training_script_args == ["sample", "--checkpoint", "x", "-n", "8"]
    if "--numa-binding" in run.get_args_parser()._option_string_actions:
        with pytest.raises(SystemExit):  # "ambiguous option: --num could match --numa-binding"
            run.get_args_parser().parse_args([*head, "--num", "8"])
