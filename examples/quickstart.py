"""Quick start: train a score model on a 2-D toy set, sample it two ways, plot and score the samples.

    python examples/quickstart.py            # about a minute on a CPU
    python examples/quickstart.py --quick    # a few seconds (what the tests run)

Writes ``quickstart.png`` into the folder given by ``--out`` (default ``runs/quickstart``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import scoresde as ss
from scoresde.viz import scatter_compare


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, for a smoke test")
    parser.add_argument("--out", default="runs/quickstart", help="output folder")
    args = parser.parse_args(argv)
    train_steps, n, sample_steps = (40, 300, 20) if args.quick else (3000, 4000, 500)

    g = torch.Generator().manual_seed(0)
    data = ss.toy_data("two_moons", 20_000, generator=g)
    held_out = ss.toy_data("two_moons", n, generator=torch.Generator().manual_seed(1))

    # A VP SDE and an MLP that predicts the noise (epsilon).
    sde = ss.VPSDE(beta_min=0.1, beta_max=20.0)
    torch.manual_seed(0)  # the initial weights (torch's global generator is seeded randomly per process)
    model = ss.ScoreModel(ss.MLP(2, hidden=128, depth=3), sde, prediction="eps", sigma_data=float(data.std()))
    fitted = ss.fit(model, data, steps=train_steps, batch_size=256, generator=g)
    print(f"trained {train_steps} steps in {fitted.seconds:.1f}s, final loss {fitted.losses[-1]:.3f}")

    samples, scores = {}, {}
    for method in ("euler_maruyama", "euler"):  # the reverse SDE and the probability-flow ODE
        out = ss.sample(fitted.ema_model, sde, shape=(n, 2), method=method, steps=sample_steps, seed=0)
        samples[method] = out.x
        scores[method] = ss.sliced_wasserstein(out.x, held_out, generator=torch.Generator().manual_seed(2))
        print(f"{method:>15}: NFE {out.nfe}, sliced W2 to held-out data {scores[method]:.3f}")

    png = scatter_compare(held_out, samples, Path(args.out) / "quickstart.png")
    print(f"wrote {png}")
    return scores


if __name__ == "__main__":
    main()
