"""Samples of this tree against another tree's (the check behind bench_speed.md's round-4 overhead section).

Every sampler on an ``ss.MLP`` with random weights (VP / VE / sub-VP SDE x eps / x0 / v / score
prediction x 7 and 30 steps x float32 / float64, final denoising on), and on the general path (a
Gaussian-mixture oracle and a hooked ``ScoreModel``, float64), in one subprocess per source tree;
prints the largest difference per sampler and dtype, relative to the largest output entry.

    PYTHONPATH=src python benchmarks/fast_path_equality.py --baseline-src /tmp/ovh2_base/src
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dump(path: str) -> None:
    """Run the sweep with the ``scoresde`` on ``sys.path`` and save ``{case: (x, nfe)}`` to ``path``."""
    import torch

    import scoresde as ss

    torch.set_num_threads(1)
    # Every grid sampler that runs on a plain score model (as tests/sampling/test_fast_path.py).
    methods = [n for n, e in ss.SAMPLERS.items() if e.uses_grid and not e.required and n != "consistency"]
    res = {}
    sdes = {"vp": ss.VPSDE(), "ve": ss.VESDE(), "subvp": ss.SubVPSDE()}
    for dtype in (torch.float32, torch.float64):
        for sde_name, sde in sdes.items():
            for pred in ("eps", "x0", "v", "score"):
                torch.manual_seed(0)
                model = ss.ScoreModel(ss.MLP(3, hidden=64, depth=2).to(dtype), sde, prediction=pred)
                x_T = (
                    torch.randn(16, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
                    * sde.prior_std()
                )
                for method in methods:
                    for steps in (7, 30):
                        g = torch.Generator().manual_seed(2)
                        r = ss.sample(model, sde, method=method, steps=steps, x_T=x_T, generator=g)
                        res[(method, sde_name, pred, str(dtype), steps)] = (r.x, r.nfe)
    gmm = ss.GaussianMixture(
        torch.tensor([0.3, 0.7]),
        torch.tensor([[-1.0, 0.5], [1.0, 1.0]]),
        torch.tensor([[[0.1, 0.0], [0.0, 0.05]], [[0.04, 0.0], [0.0, 0.09]]]),
    )
    for sde_name in ("vp", "ve"):
        sde = sdes[sde_name]
        torch.manual_seed(0)
        hooked = ss.ScoreModel(ss.MLP(2, hidden=32, depth=2).double(), sde, prediction="x0")
        hooked.register_forward_pre_hook(lambda m, a: None)
        for name, model in (("oracle", ss.AnalyticScore(gmm, sde)), ("hooked", hooked)):
            x_T = (
                torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
                * sde.prior_std()
            )
            for method in methods:
                g = torch.Generator().manual_seed(2)
                r = ss.sample(model, sde, method=method, steps=9, x_T=x_T, generator=g)
                res[(method, sde_name, name, "general path, float64", 9)] = (r.x, r.nfe)
    torch.save(res, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline-src", required=True, help="the other tree's src/")
    p.add_argument("--dump", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.dump:
        dump(args.dump)
        return 0
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, src in (("baseline", args.baseline_src), ("this tree", str(ROOT / "src"))):
            out = os.path.join(tmp, f"{name.replace(' ', '_')}.pt")
            env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
            cmd = [sys.executable, __file__, "--baseline-src", src, "--dump", out]
            subprocess.run(cmd, env=env, check=True, cwd=tmp)
            runs[name] = torch.load(out)
    old, new = runs["baseline"], runs["this tree"]
    worst: dict[tuple[str, str], tuple[float, tuple]] = {}
    for key, (x_old, nfe_old) in old.items():
        x_new, nfe_new = new[key]
        if nfe_new != nfe_old:
            raise SystemExit(f"{key}: NFE {nfe_new} vs {nfe_old}")
        d = float((x_new - x_old).abs().max() / x_old.abs().max())
        group = (key[0], key[3])
        if d >= worst.get(group, (-1.0, ()))[0]:
            worst[group] = (d, key)
    print("| sampler | dtype | largest difference / largest entry | where |")
    print("|---|---|---|---|")
    for (method, dtype), (d, key) in sorted(worst.items()):
        print(f"| {method} | {dtype} | {d:.1e} | {', '.join(map(str, key[1:3])) if d else '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
