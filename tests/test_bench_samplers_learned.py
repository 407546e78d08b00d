"""The helpers of ``benchmarks/samplers_learned.py`` that map a model's SDE onto diffusers' VP table.

The learned-model benchmark drives diffusers' schedulers with a VE model through the VP form of its
ODE; a mistake in that change of variables would show up as a peer error, not as a failure.  Here
the mapping is checked on exact Gaussian-mixture oracles, where a scheduler at 50 steps must land
near the tight reference solve of the same ODE.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import scoresde as ss

pytest.importorskip("diffusers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import samplers_learned as bench


def test_vp_table_is_the_vp_marginal() -> None:
    sde = ss.VPSDE()
    t = torch.arange(1, bench.N_TRAIN + 1, dtype=torch.float64) / bench.N_TRAIN
    expected = torch.exp(-sde.int_beta(t).double())
    torch.testing.assert_close(bench.vp_table(sde), expected, rtol=1e-12, atol=0.0)
    abar = torch.cumprod(1.0 - torch.as_tensor(bench.trained_betas(sde)), 0)
    torch.testing.assert_close(abar, expected, rtol=1e-10, atol=0.0)
    assert bench.vp_scale(sde, 0.3) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("sde", [ss.VPSDE(), ss.VESDE(sigma_min=0.01, sigma_max=10.0)], ids=["vp", "ve"])
def test_scheduler_run_converges_to_the_reference(sde: ss.SDE) -> None:
    from diffusers import DPMSolverMultistepScheduler

    gmm = ss.GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[-1.0, 0.5], [1.0, -0.5]]), 0.05)
    oracle = ss.AnalyticScore(gmm, sde)
    lm = bench.Learned("oracle", "oracle", oracle, None, "")  # type: ignore[arg-type]
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0)) * sde.prior_std()
    ref = ss.sample(
        oracle, x_T=x_T, method="dopri5", steps=1, t_end=bench.T_END, denoise=False, rtol=1e-6, atol=1e-6
    ).x
    run = bench.scheduler_run(
        lm, DPMSolverMultistepScheduler, {"solver_order": 2, "final_sigmas_type": "sigma_min"}, 1
    )
    errs = [bench.rms(run(x_T, None, n)[0], ref) for n in (8, 40)]  # type: ignore[arg-type]
    # A wrong change of variables leaves an O(1) error that does not fall with the steps; here the
    # second-order error falls (measured: 0.03 at 50 steps on the VP mixture of std 0.22).
    assert errs[1] < 0.5 * errs[0]
    assert errs[1] < 0.06


def test_page_keeps_models_without_results(tmp_path: Path) -> None:
    """A model measured by an earlier run (no ``result.json`` in ``--work``) keeps its summary rows
    and section of the existing page; the hand-written section is kept too."""
    page = "\n".join(
        [
            "# title",
            "",
            "| model | NFE 5 |",
            "|---|---|",
            "| vp8 | 0.51 | target row |",
            "",
            "| vp8 | 0.51 | budgets row |",
            "",
            bench.HAND_BEGIN,
            "reading | vp8 | written by hand",
            bench.HAND_END,
            "",
            "## vp8: the VP model",
            "",
            "its tables",
            "",
            "## ve8: the VE model",
            "",
            "stale",
        ]
    )
    rows, section = bench.kept_from_page(page, "vp8")  # type: ignore[misc]
    assert rows == ("| vp8 | 0.51 | target row |", "| vp8 | 0.51 | budgets row |")
    assert section == ["## vp8: the VP model", "", "its tables", ""]
    assert bench.kept_from_page(page, "unet28") is None
    out = tmp_path / "page.md"
    out.write_text(page)
    bench.write_page(tmp_path / "no-results", out)
    new = out.read_text()
    assert "| vp8 | 0.51 | target row |" in new and "| vp8 | 0.51 | budgets row |" in new
    assert "reading | vp8 | written by hand" in new and "its tables" in new
    assert "stale" not in new  # ve8 had no summary rows on the page: not kept


def test_ratio_bootstrap_is_paired_and_seeded() -> None:
    """The bootstrap of ours / best peer resamples the same draws on both sides: a peer whose
    per-draw errors are a fixed multiple of ours gives that ratio in every resample (no spread)."""
    g = torch.Generator().manual_seed(0)
    peer = torch.rand(64, generator=g, dtype=torch.float64) ** 4  # heavy-tailed, like path errors
    fixed = bench.ratio_bootstrap(0.16 * peer, peer)
    assert fixed.ratio == pytest.approx(0.4, rel=1e-12)
    assert fixed.se == pytest.approx(0.0, abs=1e-12) and fixed.p_half == 1.0
    assert bench.ratio_bootstrap(peer, peer).p_half == 0.0
    ours = torch.rand(64, generator=g, dtype=torch.float64) ** 4 * 0.3
    a, b = bench.ratio_bootstrap(ours, peer), bench.ratio_bootstrap(ours, peer)
    assert a == b  # the same seed, the same resamples
    assert a.ratio == pytest.approx(math.sqrt(float(ours.mean() / peer.mean())), rel=1e-12)
    # Delta method for sqrt(mean a / mean b) on paired draws: a first-order check of the spread.
    ra = ours / ours.mean() - peer / peer.mean()
    delta = 0.5 * a.ratio * float(ra.std()) / math.sqrt(64)
    assert 0.7 * delta < a.se < 1.3 * delta
    # The oracle benchmark's bootstrap (best option re-chosen per resample) agrees for one option a side.
    other = bench.oracle_bench.bootstrap_ratio(ours[None], peer[None])
    assert other[0] == pytest.approx(a.ratio, rel=1e-12) and other[1] == pytest.approx(a.se, rel=1e-12)
    assert other[4] == pytest.approx(a.p_half, abs=1e-12)
    with pytest.raises(ValueError, match="equal non-empty"):
        bench.ratio_bootstrap(ours, peer[:10])


def test_ratio_spread_needs_per_draw_errors() -> None:
    """A result stored before per-draw errors were kept gives no spread (the page shows ``-``)."""
    old = {("unipc", "logsnr"): {5: (0.1, 5, 0.1)}, ("diffusers DDIM", "trailing"): {5: (0.4, 5, 0.4)}}
    assert bench.ratio_spread(old, 5) is None
    assert bench.spread_cell(0.25, None) == "0.25 ± - (P -)"
    new = {
        ("unipc", "logsnr"): {5: (0.1, 5, 0.1, [0.01, 0.01])},
        ("diffusers DDIM", "trailing"): {5: (0.4, 5, 0.4, [0.16, 0.16])},
    }
    sp = bench.ratio_spread(new, 5)
    assert sp is not None and sp.ratio == pytest.approx(0.25) and sp.p_half == 1.0
    assert bench.spread_cell(0.25, sp) == "0.25 ± 0.00 (P 1.00)"


def test_afs_settle_keeps_only_the_fits_chosen_on_validation() -> None:
    """``--bespoke-afs``: a kept AFS fit's page cell replaces the stored fit's (recorded in its cost
    entry); a rejected one's page cell is recorded only, never left in the results to be chosen on."""
    plain, afs = ("bespoke", "trained"), bench.AFS_ROW
    results = {plain: {5: (0.3, 5, 0.2), 10: (0.1, 10, 0.05)}, afs: {5: (0.25, 5, 0.2), 10: (0.2, 10, 0.1)}}
    cost = {"bespoke": {"5": {"afs": {"kept": True}}, "10": {"afs": {"kept": False}}}}
    bench.afs_settle(results, cost, (5, 10))
    assert results[plain] == {10: (0.1, 10, 0.05)} and results[afs] == {5: (0.25, 5, 0.2)}
    assert cost["bespoke"]["5"]["afs"]["replaced_cell"] == [0.3, 5, 0.2]
    assert cost["bespoke"]["10"]["afs"]["page_cell"] == [0.2, 10, 0.1]
    assert "replaced_cell" not in cost["bespoke"]["10"]["afs"]
    # Nothing kept: the AFS row goes.
    results = {plain: {5: (0.3, 5, 0.2)}, afs: {5: (0.4, 5, 0.3)}}
    bench.afs_settle(results, {"bespoke": {"5": {"afs": {"kept": False}}}}, (5,))
    assert afs not in results and results[plain] == {5: (0.3, 5, 0.2)}
