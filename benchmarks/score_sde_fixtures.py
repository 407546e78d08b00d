"""Agreement of scoresde's NCSN++ / DDPM++ / DDPM with the paper's own code, and full-size builds.

Loads each fixture of ``shared/fixtures/score_sde_pytorch`` (made by running score_sde_pytorch)
with :func:`scoresde.interop.score_sde.load_score_sde` and reports, for the raw-weight network
output, the EMA-weight output and the score function, the max absolute difference divided by the
max absolute value of the paper's reference, at 1 and at the default number of threads.  Then it
builds the networks of the paper's full-size configs on the meta device (no memory, no weights)
and counts their parameters.  Writes docs/bench_score_sde_fixtures.md.

Run: PYTHONPATH=src python benchmarks/score_sde_fixtures.py
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
from safetensors.torch import load_file

from scoresde.interop.score_sde import load_score_sde
from scoresde.nets.score_sde import build_score_sde_net
from scoresde.nets.score_sde.paper_configs import PAPER_CONFIGS

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "score_sde_pytorch"
NAMES = ["ncsnpp_ve", "ddpmpp_vp", "ddpm_vp"]


def rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).abs().max() / ref.abs().max())


def agreement(name: str) -> dict[str, float]:
    ref = load_file(FIXTURES / name / "reference.safetensors")
    ckpt, cfg = FIXTURES / name / "checkpoint.pth", FIXTURES / name / "config.json"
    raw, ema = load_score_sde(ckpt, cfg, weights="raw"), load_score_sde(ckpt, cfg, weights="ema")
    with torch.no_grad():
        return {
            "model_out": rel(raw.net(ref["x"], ref["labels"]), ref["model_out"]),
            "ema_model_out": rel(ema.net(ref["x"], ref["labels"]), ref["ema_model_out"]),
            "score": rel(ema.model.score(ref["x"], ref["t"]), ref["score"]),
        }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench_score_sde_fixtures.md"))
    args = ap.parse_args(argv)
    default_threads = torch.get_num_threads()
    lines = [
        "# The paper's checkpoints: agreement with score_sde_pytorch",
        "",
        "Made by `benchmarks/score_sde_fixtures.py` on "
        f"{platform.machine()} CPU, torch {torch.__version__}, float32. Max abs difference / max abs "
        "of the paper's reference tensor (`shared/fixtures/score_sde_pytorch`, see its README).",
        "",
        "| fixture | threads | raw `model_out` | EMA `ema_model_out` | `score` |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        for name in NAMES:
            a = agreement(name)
            cells = " | ".join(f"{a[k]:.1e}" for k in ("model_out", "ema_model_out", "score"))
            lines.append(f"| `{name}` | {threads} | {cells} |")
            print(lines[-1])
    torch.set_num_threads(default_threads)
    lines += [
        "",
        "## Full-size paper configs (built on the meta device)",
        "",
        "| config (`PAPER_CONFIGS`) | network | image size | parameters |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, cfg in PAPER_CONFIGS.items():
        with torch.device("meta"):
            net = build_score_sde_net(cfg)
        count = sum(p.numel() for p in net.parameters())
        lines.append(f"| `{name}` | {type(net).__name__} | {cfg['data']['image_size']} | {count:,} |")
        print(lines[-1])
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
