"""The exact oracle: sample a Gaussian mixture with its exact score and watch the error fall with steps.

``ss.AnalyticScore`` gives the exact score of every perturbed marginal p_t of Gaussian-mixture data,
so the only error left in a sample is the sampler's own discretisation error.  This script measures
it for the reverse SDE (Euler-Maruyama) and the probability-flow ODE (Euler) as the number of steps
grows, against exact samples of the mixture.

    python examples/gmm_oracle.py            # the full table (tens of seconds)
    python examples/gmm_oracle.py --quick    # a small table (what the tests run)
"""

from __future__ import annotations

import argparse

import torch

import scoresde as ss


def main(argv: list[str] | None = None) -> dict[tuple[str, int], float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and step counts")
    args = parser.parse_args(argv)
    n, step_counts = (1000, (4, 64)) if args.quick else (5000, (4, 16, 64, 256))

    gmm = ss.GaussianMixture.ring(k=8, radius=2.0, std=0.1)
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm, sde)
    exact = gmm.sample(n, torch.Generator().manual_seed(1)).float()

    floor = ss.sliced_wasserstein(
        gmm.sample(n, torch.Generator().manual_seed(2)).float(),
        exact,
        generator=torch.Generator().manual_seed(0),
    )
    print(f"exact vs exact samples (noise floor): sliced W2 {floor:.4f}")
    print(f"{'steps':>6} {'euler_maruyama':>15} {'euler':>10}")
    table: dict[tuple[str, int], float] = {}
    for steps in step_counts:
        row = []
        for method in ("euler_maruyama", "euler"):
            x = ss.sample(oracle, sde, shape=(n, 2), method=method, steps=steps, seed=0).x
            table[method, steps] = ss.sliced_wasserstein(x, exact, generator=torch.Generator().manual_seed(0))
            row.append(table[method, steps])
        print(f"{steps:>6} {row[0]:>15.4f} {row[1]:>10.4f}")
    return table


if __name__ == "__main__":
    main()
