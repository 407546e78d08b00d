"""Stochastic samplers on the exact mixture oracle: distribution, NFE, reproducibility, bad input."""

from __future__ import annotations

import pytest
import torch

import scoresde as ss
from tests.conftest import SDE_IDS, all_sdes
from tests.sampling.test_basic import _mode_stats

STOCHASTIC = [
    "euler_maruyama",
    "reverse_diffusion",
    "ancestral",
    "pc",
    "langevin",
    "ald",
    "edm_stochastic",
    "dpm_solver++_2m_sde",
]
SDES = dict(zip(SDE_IDS, all_sdes()))


def _check_mixture(gmm, x, tol_w: float, tol_mu: float, tol_cov: float) -> None:
    w, means, covs = _mode_stats(gmm, x)
    torch.testing.assert_close(w, gmm.weights, atol=tol_w, rtol=0)
    torch.testing.assert_close(means, gmm.means, atol=tol_mu, rtol=0)
    torch.testing.assert_close(covs, gmm.covs, atol=tol_cov, rtol=0)


# (method, sde, steps, options): one fast configuration per family, the SDEs rotated.
FAST = [
    ("ancestral", "vp", 100, {}),
    ("pc", "subvp", 50, {}),
    ("pc", "ve", 50, {"predictor": "ancestral", "snr": 0.3}),
    ("edm_stochastic", "vp", 50, {}),
    ("dpm_solver++_2m_sde", "ve", 50, {}),
    ("dpm_solver++_2m_sde", "subvp", 50, {"grid": "logsnr", "solver_type": "heun"}),
]


@pytest.mark.parametrize(
    ("method", "sde_id", "steps", "options"), FAST, ids=[f"{m}-{s}" for m, s, _, _ in FAST]
)
def test_sampler_reproduces_mixture_fast(gmm2d, method, sde_id, steps, options) -> None:
    """n = 10k (seed 0): weights within 0.02, means within 0.03, covariances within 0.02.

    Monte-Carlo standard errors are about 0.005 (weights), 0.003-0.007 (means) and 0.002-0.004
    (covariances); the rest of each tolerance is the discretisation bias of 50-100 steps
    (measured between 0.001 and 0.022 across these configurations).
    """
    sde = SDES[sde_id]
    res = ss.sample(
        ss.AnalyticScore(gmm2d, sde), sde, shape=(10_000, 2), method=method, steps=steps, seed=0,
        dtype=torch.float64, **options,
    )  # fmt: skip
    _check_mixture(gmm2d, res.x, 0.02, 0.03, 0.02)


def test_corrector_only_reproduces_mixture_fast(gmm2d) -> None:
    """ALD, VE, 100 noise levels x 3 steps, n = 10k: weights, means and covs within 0.03.

    Corrector-only sampling has no discretisation order: its bias is set by the Langevin step
    size (``step_lr`` / ``snr``) and the number of steps per level, so the tolerance is wider
    than for the predictors (measured: 0.016, 0.006, 0.019).  Plain ``langevin`` needs more
    evaluations and is checked in the slow test.
    """
    sde = SDES["ve"]
    res = ss.sample(
        ss.AnalyticScore(gmm2d, sde), sde, shape=(10_000, 2), method="ald", steps=100, seed=0,
        dtype=torch.float64, n_corrector=3,
    )  # fmt: skip
    _check_mixture(gmm2d, res.x, 0.03, 0.03, 0.03)


SLOW = {
    "euler_maruyama": (400, {}),
    "reverse_diffusion": (400, {}),
    "ancestral": (400, {}),
    "pc": (200, {}),
    "langevin": (200, {"n_corrector": 5}),
    "ald": (200, {"n_corrector": 5}),
    "edm_stochastic": (200, {}),
    "dpm_solver++_2m_sde": (200, {"grid": "logsnr"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", STOCHASTIC)
def test_every_sampler_every_sde_reproduces_mixture(sde, gmm2d, method) -> None:
    """n = 40k: weights within 0.015, means within 0.025, covs within 0.012 (0.03 / 0.04 / 0.03
    for the order-0 corrector-only samplers); Monte-Carlo errors are about half the former."""
    steps, options = SLOW[method]
    if method == "ald" and isinstance(sde, ss.SubVPSDE):
        pytest.xfail(
            "known limitation: ALD (made for VE/SMLD) ignores the drift; under sub-VP its steps "
            "(prop. sigma(t)^2, sigma ~ B(t) near 0) are too small to follow the scale s(t) -> 1 at low "
            "noise, leaving the means shrunk by ~0.065 > 0.04"
        )
    res = ss.sample(
        ss.AnalyticScore(gmm2d, sde), sde, shape=(40_000, 2), method=method, steps=steps, seed=1,
        dtype=torch.float64, **options,
    )  # fmt: skip
    if method in ("langevin", "ald"):
        _check_mixture(gmm2d, res.x, 0.03, 0.04, 0.03)
    else:
        _check_mixture(gmm2d, res.x, 0.015, 0.025, 0.012)


@pytest.mark.parametrize(
    ("method", "options", "per_step"),
    [
        ("euler_maruyama", {}, 1),
        ("reverse_diffusion", {}, 1),
        ("ancestral", {}, 1),
        ("pc", {}, 2),
        ("pc", {"n_corrector": 3}, 4),
        ("pc", {"n_corrector": 0}, 1),
        ("pc", {"predictor": "none", "n_corrector": 2}, 2),
        ("langevin", {"n_corrector": 3}, 3),
        ("ald", {"n_corrector": 2}, 2),
        ("edm_stochastic", {}, 2),
        ("dpm_solver++_2m_sde", {}, 1),
    ],
)
def test_nfe_is_counted_exactly(gmm2d, method, options, per_step) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    res = ss.sample(oracle, shape=(3, 2), method=method, steps=7, seed=0, denoise=False, **options)
    assert res.nfe == 7 * per_step
    assert ss.sample(oracle, shape=(3, 2), method=method, steps=7, seed=0, **options).nfe == 7 * per_step + 1


def test_edm_stochastic_last_step_to_zero_noise_costs_one(gmm2d) -> None:
    sde = ss.VESDE(sigma_min=0.01, sigma_max=10.0)
    grid = torch.tensor([1.0, 0.5, 0.2, 0.0], dtype=torch.float64)
    res = ss.sample(ss.AnalyticScore(gmm2d, sde), shape=(3, 2), method="edm_stochastic", grid=grid, seed=0,
                    denoise=False)  # fmt: skip
    assert res.nfe == 2 + 2 + 1


@pytest.mark.parametrize(
    ("method", "options"),
    [(m, {}) for m in STOCHASTIC if m not in ("pc", "langevin")]
    + [("pc", {"norms": "sample", "snr": 0.05}), ("langevin", {"norms": "sample", "snr": 0.05})],
)
def test_seed_reproduces_across_batch_sizes(gmm2d, method, options) -> None:
    sde = ss.VPSDE()
    oracle = ss.AnalyticScore(gmm2d, sde)
    kw = {"method": method, "steps": 8, "dtype": torch.float64, **options}
    big = ss.sample(oracle, shape=(9, 2), seed=3, **kw).x
    small = ss.sample(oracle, shape=(4, 2), seed=3, **kw).x
    torch.testing.assert_close(big[:4], small)
    assert not torch.allclose(ss.sample(oracle, shape=(4, 2), seed=4, **kw).x, small)
    g = ss.sample(oracle, shape=(4, 2), generator=torch.Generator().manual_seed(0), **kw).x
    torch.testing.assert_close(
        g, ss.sample(oracle, shape=(4, 2), generator=torch.Generator().manual_seed(0), **kw).x
    )


def test_any_tensor_shape(gmm2d) -> None:
    """Samplers are shape-agnostic: a (B, 1, 2) batch gives the (B, 2) batch's samples."""
    oracle = ss.AnalyticScore(gmm2d, ss.VESDE(sigma_max=10.0))
    for method in STOCHASTIC:
        opts = {"norms": "sample"} if method in ("pc", "langevin") else {}
        flat = ss.sample(oracle, shape=(5, 2), method=method, steps=5, seed=2, dtype=torch.float64, **opts).x
        img = ss.sample(
            oracle, shape=(5, 1, 2), method=method, steps=5, seed=2, dtype=torch.float64, **opts
        ).x
        assert img.shape == (5, 1, 2)
        torch.testing.assert_close(img.reshape(5, 2), flat)


def test_bad_arguments(gmm2d) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())

    def run(method: str, **options) -> None:
        ss.sample(oracle, shape=(4, 2), method=method, steps=3, seed=0, **options)

    with pytest.raises(ValueError, match="unknown predictor 'heun'"):
        run("pc", predictor="heun")
    with pytest.raises(ValueError, match="unknown corrector 'mala'"):
        run("pc", corrector="mala")
    with pytest.raises(ValueError, match="snr must be a positive"):
        run("pc", snr=0.0)
    with pytest.raises(ValueError, match="snr must be a positive"):
        run("langevin", snr=-1.0)
    with pytest.raises(ValueError, match="n_corrector must be an integer >= 0"):
        run("pc", n_corrector=-1)
    with pytest.raises(ValueError, match="corrector-only sampling needs n_corrector >= 1"):
        run("langevin", n_corrector=0)
    with pytest.raises(ValueError, match="both be 'none'"):
        run("pc", predictor="none", corrector="none")
    with pytest.raises(ValueError, match="unknown norms"):
        run("pc", norms="mean")
    with pytest.raises(ValueError, match="step_lr must be a positive"):
        run("ald", step_lr=0.0)
    with pytest.raises(ValueError, match="S_churn must be a number >= 0"):
        run("edm_stochastic", S_churn=-1.0)
    with pytest.raises(ValueError, match="S_noise must be a number >= 0"):
        run("edm_stochastic", S_noise=float("nan"))
    with pytest.raises(ValueError, match="unknown ancestral variance 'beta'"):
        run("ancestral", variance="beta")
    with pytest.raises(ValueError, match="unknown solver_type"):
        run("dpm_solver++_2m_sde", solver_type="rk4")
    with pytest.raises(TypeError, match="unexpected keyword argument 'snr'"):
        run("edm_stochastic", snr=0.1)
    ve = ss.AnalyticScore(gmm2d, ss.VESDE(sigma_max=10.0))
    with pytest.raises(ValueError, match=r"sigma\(t_end\) > 0"):
        ss.sample(ve, shape=(4, 2), method="ald", steps=3, t_end=0.0)


def test_registry_declares_the_stochastic_samplers() -> None:
    for name in STOCHASTIC:
        entry = ss.SAMPLERS[name]
        assert entry.stochastic
        assert entry.order in (0, 1)
        assert "20" in entry.description  # cites a paper year
