"""The run specification (``SampleSpec``), the sampler keys and their aliases, the layering."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch

import scoresde as ss
from scoresde.guidance import MatrixOperator, conditional_sample, dps_sample, smc_sample
from scoresde.guidance.projection import start_inverse_problem
from scoresde.sampling import ALIASES, SAMPLERS, SampleSpec, get_sampler, start_sampling
from scoresde.sampling.registry import canonical_method
from scoresde.sampling.spec import SPEC_FIELDS, split_spec

ROOT = Path(__file__).resolve().parents[2]


def test_keywords_and_spec_are_one_run(gmm2d: ss.GaussianMixture) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    kw = {"shape": (5, 2), "steps": 6, "seed": 3, "record": True, "grid": "logsnr"}
    by_keywords = ss.sample(oracle, method="heun", **kw)
    by_spec = ss.sample(oracle, method="heun", spec=SampleSpec(**kw))
    # keywords override the spec's fields
    mixed = ss.sample(oracle, method="heun", spec=SampleSpec(**{**kw, "steps": 2}), steps=6)
    for res in (by_spec, mixed):
        assert torch.equal(res.x, by_keywords.x) and torch.equal(res.trajectory, by_keywords.trajectory)
        assert res.nfe == by_keywords.nfe


def test_every_entry_point_takes_the_spec() -> None:
    """Adding a field to SampleSpec reaches every entry point: none of them lists the run's
    arguments itself; each takes ``spec=`` and ``**kwargs`` collected by ``split_spec``."""
    for fn in (ss.sample, conditional_sample, dps_sample, smc_sample):
        params = inspect.signature(fn).parameters
        assert "spec" in params and any(p.kind is p.VAR_KEYWORD for p in params.values()), fn
        repeated = (SPEC_FIELDS - {"shape"}) & set(params)
        assert not repeated, (fn.__name__, repeated)
    for fn in (start_sampling, start_inverse_problem):
        assert "spec" in inspect.signature(fn).parameters


def test_split_spec_and_unused_fields() -> None:
    spec, options = split_spec(None, {"steps": 7, "snr": 0.1}, steps=200, grid="logsnr")
    assert spec.steps == 7 and spec.grid == "logsnr" and options == {"snr": 0.1}
    with pytest.raises(TypeError, match="spec must be a SampleSpec"):
        split_spec({"steps": 3}, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no field bogus"):
        SampleSpec().replace(bogus=1)
    with pytest.raises(ValueError, match=r"smc_sample does not take x_T=, record="):
        SampleSpec(x_T=torch.zeros(1, 1), record=True).check_unused(
            ("x_T", "record", "denoise"), "smc_sample"
        )


def test_old_sampler_keys_are_aliases(gmm2d: ss.GaussianMixture) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    assert set(ALIASES) == {
        "dpm_solver_2",
        "dpm_solver_3",
        "dpm_solver++_2m",
        "dpm_solver++_3m",
        "dpm_solver++_2m_sde",
        "edm_stochastic",
    }
    for old, new in ALIASES.items():
        assert new in list(SAMPLERS) and old not in list(SAMPLERS)  # listed once, by its key
        assert old in SAMPLERS and SAMPLERS[old] is SAMPLERS[new] is get_sampler(old)
        assert canonical_method(old) == new
        assert SAMPLERS[new].fn.__name__ == new  # keys are the functions' names
        a = ss.sample(oracle, shape=(4, 2), method=old, steps=4, seed=1)
        b = ss.sample(oracle, shape=(4, 2), method=new, steps=4, seed=1)
        assert torch.equal(a.x, b.x) and a.nfe == b.nfe
    for key, sampler in SAMPLERS.items():
        assert sampler.fn.__name__ == key
    with pytest.raises(ValueError, match="unknown sampling method 'dpm_solver\\+\\+'"):
        get_sampler("dpm_solver++")


def test_optimized_grid_string_points_to_the_tuner(gmm2d: ss.GaussianMixture) -> None:
    oracle = ss.AnalyticScore(gmm2d, ss.VPSDE())
    with pytest.raises(ValueError, match="GridOptimizer"):
        ss.sample(oracle, shape=(2, 2), method="heun", steps=3, grid="optimized")
    with pytest.raises(ValueError, match="adaptive"):
        ss.sample(oracle, shape=(2, 2), method="dopri5", steps=3, grid=ss.sampling.GridOptimizer(pilot=4))


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_tuners_sit_above_the_sample_facade() -> None:
    """api.py and everything it is built from never import the grid tuners (they call sample)."""
    sampling = ROOT / "src" / "scoresde" / "sampling"
    for name in ("api", "setup", "spec", "registry", "dpm_solver_v3"):
        deps = _imports(sampling / f"{name}.py")
        assert not deps & {"scoresde.sampling.grid_opt", "scoresde.sampling.ems"}, name
    assert "scoresde.sampling.api" in _imports(sampling / "grid_opt.py")
    assert "scoresde.sampling.api" in _imports(sampling / "ems.py")


def test_default_sampling_is_declared_once() -> None:
    from scoresde.cli.evaluate import COMMAND as EVAL
    from scoresde.cli.sample import COMMAND as SAMPLE
    from scoresde.sampling import DEFAULT_SAMPLING

    assert (DEFAULT_SAMPLING.method, DEFAULT_SAMPLING.steps, DEFAULT_SAMPLING.grid) == (
        "euler_maruyama",
        100,
        "auto",
    )
    for command in (SAMPLE, EVAL):
        defaults = {o.key: o.default for o in command.options}
        assert defaults["method"] == DEFAULT_SAMPLING.method, command.name
        assert defaults["steps"] == DEFAULT_SAMPLING.steps and defaults["grid"] == DEFAULT_SAMPLING.grid
    assert (
        DEFAULT_SAMPLING.grid_for(ss.EDMSDE()) == "edm" and DEFAULT_SAMPLING.grid_for(ss.VPSDE()) == "uniform"
    )


def test_dps_measurement_protocol_has_no_guidance_import() -> None:
    op = MatrixOperator(torch.eye(2, dtype=torch.float64))
    from scoresde.sampling.dps import Measurement

    assert isinstance(op, Measurement) and not isinstance(torch.eye(2), Measurement)
