"""The analytic first step (``ss.sampling.analytic_first_step``) against the exact Gaussian-mixture oracle."""

from __future__ import annotations

import json
import math

import pytest
import torch

import scoresde as ss
from scoresde.sampling import AnalyticFirstStep, analytic_first_step


def _problem(dim: int = 8):
    """An anisotropic mixture with non-zero means (where ``D(x_T, T) = 0`` would be wrong)."""
    g = torch.Generator().manual_seed(0)
    k = 3
    means = torch.randn(k, dim, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(k, dim, dim, generator=g, dtype=torch.float64))
    eig = torch.logspace(math.log10(3e-4), math.log10(0.5), dim, dtype=torch.float64)
    covs = q @ torch.diag_embed(eig.expand(k, dim)) @ q.transpose(-1, -2)
    gmm = ss.GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), means, covs)
    sde = ss.VPSDE()
    return ss.AnalyticScore(gmm, sde), sde


def _afs(oracle, dim: int = 8) -> AnalyticFirstStep:
    return analytic_first_step(oracle, (dim,), generator=torch.Generator().manual_seed(5), pilot=512)


def test_mean_is_the_denoiser_at_T_within_its_spread() -> None:
    oracle, sde = _problem()
    afs = _afs(oracle)
    x = torch.randn(256, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = oracle.denoise(x, torch.full((256,), sde.T, dtype=torch.float64))
    got = afs.denoise(x, sde.T)
    # The posterior mean at T hardly depends on x_T: the stored mean is within 5 % of its scale
    # (the RMS of D is about the data mean's, ~1), far closer than D = 0 would be.
    err = float((got.double() - exact).pow(2).mean().sqrt())
    scale = float(exact.pow(2).mean().sqrt())
    assert err < 0.05 * scale, (err, scale)
    # Elsewhere it is the model's own prediction (same arithmetic: equal up to float64 rounding).
    t = torch.full((256,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(afs.denoise(x, t), oracle.denoise(x, t), rtol=1e-12, atol=1e-12)


def test_nfe_counts_only_network_evaluations_and_is_deterministic() -> None:
    oracle, _ = _problem()
    afs = _afs(oracle)
    x_T = torch.randn(64, 8, generator=torch.Generator().manual_seed(2))
    for method, opts in (("unipc", {"order": 3}), ("deis", {}), ("dpm_solver++_2m", {})):
        a = ss.sample(afs, x_T=x_T, method=method, steps=6, t_end=1e-3, denoise=False, **opts)
        b = ss.sample(afs, x_T=x_T, method=method, steps=6, t_end=1e-3, denoise=False, **opts)
        assert a.nfe == 5, (method, a.nfe)
        assert torch.equal(a.x, b.x)  # the same code run twice


def test_six_steps_at_five_nfe_beat_five_steps() -> None:
    """The point of it: the free first step buys a sixth step at NFE 5 (here 0.14 against 0.18)."""
    oracle, _ = _problem()
    afs = _afs(oracle)
    x_T = torch.randn(256, 8, generator=torch.Generator().manual_seed(3))
    ref = ss.sample(
        oracle, x_T=x_T.double(), method="dopri5", steps=1, t_end=1e-3, denoise=False, rtol=1e-9, atol=1e-9
    ).x

    def rms(model, steps: int) -> tuple[float, int]:
        out = ss.sample(
            model, x_T=x_T, method="unipc", steps=steps, grid="uniform", t_end=1e-3, denoise=False, order=3
        )
        return float((out.x.double() - ref).pow(2).mean().sqrt()), out.nfe

    plain, nfe_plain = rms(oracle, 5)
    with_afs, nfe_afs = rms(afs, 6)
    assert nfe_plain == nfe_afs == 5
    assert with_afs < 0.9 * plain, (with_afs, plain)


def test_bad_inputs() -> None:
    oracle, sde = _problem()
    with pytest.raises(TypeError, match=r"explicit torch\.Generator"):
        analytic_first_step(oracle, (8,), generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pilot must be"):
        analytic_first_step(oracle, (8,), generator=torch.Generator(), pilot=0)
    afs = _afs(oracle)
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="does not take labels"):
        afs(x, torch.full((4,), sde.T), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        afs(torch.randn(4, 3), torch.full((4,), sde.T))
    assert afs.evaluations(sde.T) == 0 and afs.evaluations(0.5) == 1


# ------------------------------------------------------------------------------------------------ #
# Class-conditional models: one mean per label.
# ------------------------------------------------------------------------------------------------ #
def _conditional(dim: int = 8):
    """The mixture of :func:`_problem` with component ``k`` as class ``k`` (3 classes)."""
    from scoresde.guidance import ClassConditionalScore

    oracle, sde = _problem(dim)
    return ClassConditionalScore(oracle.gmm, sde), sde


def _labels(n: int, classes: int = 3) -> torch.Tensor:
    return torch.arange(n) % classes


def test_per_label_means_are_returned_at_T_row_by_label() -> None:
    cond, sde = _conditional()
    afs = analytic_first_step(
        cond, (8,), generator=torch.Generator().manual_seed(5), pilot=256, num_classes=3
    )
    assert afs.num_classes == 3 and tuple(afs.mean.shape) == (3, 8)
    # Each row is the label's pilot mean: the same draws under every label (same code, same numbers).
    x_p = sde.prior_sample((256, 8), generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    t_p = torch.full((256,), sde.T)
    for c in range(3):
        want = cond.denoise(x_p, t_p, torch.full((256,), c)).double().mean(0)
        assert torch.equal(afs.mean[c], want)
    x = torch.randn(7, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([2, 0, 1, 1, 0, 2, 2])
    got = afs.denoise(x, sde.T, y)
    assert torch.equal(got, afs.mean.float()[y])  # exactly the label's row at t_start
    # Elsewhere the model's own conditional prediction.
    torch.testing.assert_close(afs.denoise(x, 0.3, y), cond.denoise(x, 0.3, y), rtol=0, atol=0)
    # The label matters (rows far apart) and each row is the exact conditional D(x_T, T, c) within
    # 5 % of its scale: the spread of E[x_0 | x_T, c] over x_T is small.
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = _labels(300)
    exact = cond.denoise(x, torch.full((300,), sde.T, dtype=torch.float64), y)
    err = float((afs.denoise(x, sde.T, y).double() - exact).pow(2).mean().sqrt())
    scale = float(exact.pow(2).mean().sqrt())
    assert err < 0.05 * scale, (err, scale)
    assert float((afs.mean[0] - afs.mean[1]).norm()) > 0.5 * scale


def test_per_label_nfe_and_determinism_and_unconditional_unchanged() -> None:
    cond, sde = _conditional()
    afs = analytic_first_step(
        cond, (8,), generator=torch.Generator().manual_seed(5), pilot=128, num_classes=3
    )
    x_T = torch.randn(30, 8, generator=torch.Generator().manual_seed(2))
    y = _labels(30)
    a = ss.sample(afs, x_T=x_T, y=y, method="unipc", steps=6, t_end=1e-3, denoise=False, order=3)
    b = ss.sample(afs, x_T=x_T, y=y, method="unipc", steps=6, t_end=1e-3, denoise=False, order=3)
    assert a.nfe == 5 and torch.equal(a.x, b.x)
    # Without num_classes the unconditional mean is made exactly as before (the model called
    # without labels once on the pilot batch).
    oracle, _ = _problem()
    u = analytic_first_step(oracle, (8,), generator=torch.Generator().manual_seed(5), pilot=64)
    x_p = sde.prior_sample((64, 8), generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    assert u.num_classes is None
    assert torch.equal(u.mean, oracle.denoise(x_p, torch.full((64,), sde.T)).double().mean(0))


def test_per_label_under_classifier_free_guidance() -> None:
    """The mean is whatever the wrapped (guided) model returns; its NFE per call is kept."""
    from scoresde.guidance import ClassifierFreeGuidance

    cond, sde = _conditional()
    cfg = ClassifierFreeGuidance(cond, scale=1.5, null_label=3)
    afs = analytic_first_step(cfg, (8,), generator=torch.Generator().manual_seed(5), pilot=64, num_classes=4)
    x_p = sde.prior_sample((64, 8), generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    want = cfg.denoise(x_p, torch.full((64,), sde.T), torch.full((64,), 1)).double().mean(0)
    assert torch.equal(afs.mean[1], want)
    x_T = torch.randn(8, 8, generator=torch.Generator().manual_seed(2))
    out = ss.sample(afs, x_T=x_T, y=torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]), method="dpm_solver++_2m", steps=6,
                    t_end=1e-3, denoise=False)  # fmt: skip
    assert out.nfe == 2 * 5  # two network evaluations per guided call, none at T


def test_per_label_bad_inputs() -> None:
    cond, sde = _conditional()
    with pytest.raises(ValueError, match="num_classes must be"):
        analytic_first_step(cond, (8,), generator=torch.Generator(), num_classes=0)
    afs = analytic_first_step(cond, (8,), generator=torch.Generator().manual_seed(5), pilot=16, num_classes=3)
    x, t = torch.randn(4, 8), torch.full((4,), sde.T)
    with pytest.raises(ValueError, match="one mean per label"):
        afs(x, t)
    with pytest.raises(ValueError, match="label 3 out of range"):
        afs(x, t, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="label -1 out of range"):
        afs(x, t, torch.tensor([0, -1, 2, 1]))
    with pytest.raises(ValueError, match="integer tensor of shape"):
        afs(x, t, torch.zeros(4))
    with pytest.raises(ValueError, match="shape"):
        afs(torch.randn(4, 3), t, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="one row per class"):
        AnalyticFirstStep(cond, torch.zeros(2, 8), sde.T, num_classes=3)
    # Off t_start the labels go to the model unchecked here (the model's own checks apply).
    assert afs(x, torch.full((4,), 0.5), torch.tensor([0, 1, 2, 0])).shape == (4, 8)


def test_fit_bespoke_through_the_first_step_uses_the_wrapped_models_reference() -> None:
    """An (n+1)-step bespoke solver on the wrapped model: the reference is the model's own ODE, the
    start's error is that of the AFS-wrapped base solver, and the fit counts n evaluations a solve."""
    from scoresde.sampling import bespoke_from_base, fit_bespoke

    cond, sde = _conditional()
    afs = analytic_first_step(
        cond, (8,), generator=torch.Generator().manual_seed(5), pilot=128, num_classes=3
    )
    ts = ss.time_grid(sde, 6, "logsnr", t_end=1e-3)
    start = bespoke_from_base(sde, "unipc", ts, {"order": 3})
    y = _labels(48)
    fit = fit_bespoke(
        afs, sde, 6, (8,), starts=[start], pilot=48, iterations=3, y=y,
        generator=torch.Generator().manual_seed(9), reference_tol=1e-8, dtype=torch.float64,
    )  # fmt: skip
    x_T = (
        torch.randn((48, 8), generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        * sde.prior_std()
    )
    ref = ss.sample(
        cond, x_T=x_T, y=y, method="dopri5", grid=ts[[0, -1]], denoise=False, rtol=1e-8, atol=1e-8
    )
    base = ss.sample(afs, x_T=x_T, y=y, method="unipc", grid=ts, denoise=False, order=3)
    assert base.nfe == 5
    want = float((base.x - ref.x).pow(2).mean().sqrt())
    assert math.isclose(fit.pilot_error_start, want, rel_tol=1e-6), (fit.pilot_error_start, want)
    assert fit.pilot_error <= fit.pilot_error_start
    # 1 start + 3 training iterations + the last: 5 solves of 5 evaluations, plus the reference.
    assert fit.pilot_nfe == ref.nfe + 5 * 5
    out = ss.sample(afs, x_T=x_T, y=y, method="bespoke", solver=fit.solver, t_end=1e-3, denoise=False)
    assert out.nfe == 5


def test_bespoke_solver_carries_the_first_step_and_runs_on_the_bare_model() -> None:
    """A solver fitted through the analytic first step stores its per-label means (JSON round trip
    exact) and reproduces the wrapped run on the bare model, with one evaluation fewer than steps."""
    from scoresde.sampling import BespokeSolver, bespoke_from_base, fit_bespoke

    cond, sde = _conditional()
    afs = analytic_first_step(cond, (8,), generator=torch.Generator().manual_seed(5), pilot=64, num_classes=3)
    start = bespoke_from_base(sde, "dpm_solver++_2m", ss.time_grid(sde, 4, "logsnr", t_end=1e-3))
    assert (
        start.first_step_mean is None and start.evaluations == 4 and "first_step_mean" not in start.to_json()
    )
    fit = fit_bespoke(
        afs, sde, 4, (8,), starts=[start], pilot=16, iterations=2, y=_labels(16),
        generator=torch.Generator().manual_seed(9), reference_tol=1e-6,
    )  # fmt: skip
    solver = fit.solver
    assert solver.first_step_classes == 3 and torch.equal(solver.first_step_mean, afs.mean)
    assert solver.steps == 4 and solver.evaluations == 3
    back = BespokeSolver.from_json(json.loads(json.dumps(solver.to_json())))
    assert back.first_step_classes == 3 and torch.equal(back.first_step_mean, solver.first_step_mean)
    x_T = torch.randn(12, 8, generator=torch.Generator().manual_seed(3)) * sde.prior_std()
    y = _labels(12)
    run = dict(x_T=x_T, y=y, method="bespoke", t_end=1e-3, denoise=False)
    wrapped = ss.sample(afs, solver=solver, **run)
    bare = ss.sample(cond, solver=back, **run)
    assert wrapped.nfe == bare.nfe == 3
    assert torch.equal(wrapped.x, bare.x)  # the same arithmetic: D_0 is the label's mean either way
    with pytest.raises(ValueError, match="one mean per label"):
        ss.sample(cond, solver=back, x_T=x_T, method="bespoke", t_end=1e-3, denoise=False)
    with pytest.raises(ValueError, match="label 5 out of range"):
        ss.sample(cond, solver=back, **{**run, "y": torch.full((12,), 5)})


def test_bespoke_solver_first_step_fields_are_checked() -> None:
    from scoresde.sampling import BespokeSolver, bespoke_from_base

    _, sde = _conditional()
    good = bespoke_from_base(sde, "ddim", ss.time_grid(sde, 3, "logsnr"))
    fields = dict(times=good.times, a=good.a, b=good.b)
    with pytest.raises(ValueError, match="needs first_step_mean"):
        BespokeSolver(**fields, first_step_classes=3)
    with pytest.raises(ValueError, match="one row per class"):
        BespokeSolver(**fields, first_step_mean=torch.zeros(2, 8), first_step_classes=3)
    with pytest.raises(ValueError, match="finite"):
        BespokeSolver(**fields, first_step_mean=torch.full((8,), math.nan))
    with pytest.raises(ValueError, match="first_step_classes must be"):
        BespokeSolver(**fields, first_step_mean=torch.zeros(1, 8), first_step_classes=0)
    # One unconditional mean: no labels taken at the first step.
    one = BespokeSolver(**fields, first_step_mean=torch.ones(8))
    out = ss.sample(_problem()[0], solver=one, x_T=torch.randn(5, 8), method="bespoke", denoise=False)
    assert out.nfe == 2
