"""Glue of ``--solver``: a bespoke solver file (``scoresde fit-solver``) for the sampling commands.

A bespoke non-stationary solver (Shaul et al. 2024; :class:`scoresde.sampling.bespoke.BespokeSolver`)
is stored as the JSON of :meth:`~scoresde.sampling.bespoke.BespokeSolver.to_json` (``solver.json``
in the output folder of ``scoresde fit-solver``).  ``--solver PATH`` (the file, or a folder
holding ``solver.json``) runs it: the sampler becomes ``bespoke`` and the step count the
solver's (:func:`solver_defaults`, a base layer, so a ``--method`` or ``--steps`` given in any
way still wins and is then checked, :func:`bespoke_options`).  Every problem with the file or
with its fit to the model is a :class:`~scoresde.settings.ConfigError` naming ``--solver``
(exit status 2), never a traceback.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from scoresde.settings import ConfigError

__all__ = [
    "SOLVER_FILE",
    "bespoke_options",
    "describe",
    "fit_notes",
    "read_solver",
    "sampling_plan",
    "solver_defaults",
    "solver_file",
]

SOLVER_FILE = "solver.json"
"""The solver's file name in the output folder of ``scoresde fit-solver``."""

FITTED_FOR = "fitted_for"
"""The key of ``solver.json`` that records what the solver was fitted to (the weights'
:func:`~scoresde.io.digest.weights_digest`, the checkpoint, its step, ``--guidance``,
``--clip-denoised``, ``--class``); :func:`fit_notes` compares a run with it."""

_FIT_HINT = "fit one for this model with `scoresde fit-solver`"


def solver_file(path: str | Path) -> Path:
    """The solver file of ``--solver PATH``: the file itself, or ``PATH/solver.json`` for a folder.

    Raises:
        FileNotFoundError: no such file (or a folder without ``solver.json``).
    """
    p = Path(path)
    if p.is_dir():
        if not (p / SOLVER_FILE).is_file():
            raise FileNotFoundError(
                f"--solver: the folder {str(p)!r} holds no {SOLVER_FILE} (give the solver's file; "
                f"{_FIT_HINT})"
            )
        return p / SOLVER_FILE
    if not p.is_file():
        raise FileNotFoundError(f"--solver: no file {str(p)!r} ({_FIT_HINT})")
    return p


def _read_json(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(file, its JSON object)`` of ``--solver PATH``, checked to look like a bespoke solver."""
    file = solver_file(path)
    try:
        data = json.loads(file.read_text())
    except UnicodeDecodeError:
        raise ConfigError(
            f"--solver: {str(file)!r} is not a text file, so not a bespoke solver's JSON"
        ) from None
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"--solver: {str(file)!r} is not JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
            f"a bespoke solver is the solver.json of `scoresde fit-solver`"
        ) from None
    missing = [k for k in ("times", "a", "b") if not isinstance(data, dict) or k not in data]
    if missing:
        raise ConfigError(
            f"--solver: {str(file)!r} is JSON but not a bespoke solver (no {', '.join(map(repr, missing))}); "
            f"a bespoke solver is the solver.json of `scoresde fit-solver`"
        )
    return file, data


def read_solver(path: str | Path) -> Any:  # -> BespokeSolver (imports torch)
    """The :class:`~scoresde.sampling.bespoke.BespokeSolver` of ``--solver PATH``.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not JSON, JSON that is no bespoke solver, or one whose arrays are malformed
            (times not decreasing, coefficients of the wrong shape, non-finite values, ...).
    """
    from scoresde.sampling.bespoke import BespokeSolver

    file, data = _read_json(path)
    try:
        return BespokeSolver.from_json(data)
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(f"--solver: {str(file)!r} is not a valid bespoke solver: {text}") from None


def solver_defaults(given: dict[str, Any]) -> dict[str, Any] | None:
    """The base layer of ``--solver PATH``: ``method = "bespoke"`` and the solver's step count
    (settings given in any way still win, and :func:`bespoke_options` checks them); ``None``
    without ``--solver`` or when the file cannot be read (the body reports that).  Reads JSON
    only (no torch)."""
    if not given.get("solver"):
        return None
    try:
        _, data = _read_json(given["solver"])
        steps = len(data["times"]) - 1
    except (OSError, ValueError, TypeError):
        return None
    return {"method": "bespoke", **({"steps": steps} if steps >= 1 else {})}


def bespoke_options(cfg: dict[str, Any], sde: Any, shape: tuple[int, ...]) -> Any:
    """The solver of ``--solver`` for a run of the settings ``cfg`` on a model of ``sde`` and
    sample shape ``shape``; ``None`` when the run's sampler is not ``bespoke``.

    Raises:
        ConfigError: ``--method bespoke`` without ``--solver``, ``--solver`` with another
            ``--method``, a ``--steps`` other than the solver's, ``--grid optimized``, a solver
            fitted over another time interval than the model's SDE runs (``T`` to ``eps``, where
            the run starts and ends) or on samples of another shape, and every problem of
            :func:`read_solver`.
    """
    method, path = cfg["method"], cfg.get("solver") or ""
    if method != "bespoke" and not path:
        return None
    if not path:
        raise ConfigError(
            "--method bespoke needs --solver PATH: a bespoke solver fitted for this model "
            "(the solver.json of `scoresde fit-solver`)"
        )
    import torch

    from scoresde.sampling.bespoke import check_ends

    solver = read_solver(path)  # a bad file first: it is why the defaults of --solver did not apply
    if method != "bespoke":
        raise ConfigError(
            "--solver runs the bespoke sampler (its own times and coefficients), but --method is "
            f"{method!r}; drop --method (or give --method bespoke)"
        )
    if cfg["steps"] != solver.steps:
        raise ConfigError(
            f"--steps {cfg['steps']}: the solver {str(path)!r} takes {solver.steps} steps (one network "
            f"evaluation each); drop --steps or give --steps {solver.steps}"
        )
    if cfg.get("grid") == "optimized":
        raise ConfigError(
            "--grid optimized does not apply with --solver: a bespoke solver steps on its own fitted times"
        )
    s0, s1 = float(solver.times[0]), float(solver.times[-1])
    t0, t1 = float(sde.T), float(sde.eps)
    try:
        check_ends(solver, torch.tensor([t0, t1], dtype=torch.float64))
    except ValueError:
        raise ConfigError(
            f"--solver: {str(path)!r} was fitted on the time interval [{s1:g}, {s0:g}], but this model's "
            f"{type(sde).__name__} runs from T={t0:g} to eps={t1:g}: the solver is for another model; "
            + _FIT_HINT
        ) from None
    if solver.shape and tuple(solver.shape) != tuple(shape):
        raise ConfigError(
            f"--solver: {str(path)!r} was fitted on samples of shape {tuple(solver.shape)}, but this model's "
            f"are {tuple(shape)}: the solver is for another model; {_FIT_HINT}"
        )
    return solver


def fit_notes(path: str | Path, loaded: Any, cfg: dict[str, Any]) -> list[str]:
    """What differs between the run of ``cfg`` on ``loaded`` and what the solver at ``path`` was
    fitted to (its ``fitted_for`` record; none for a file without one): other weights, another
    ``--guidance``, ``--clip-denoised`` or ``--class``.  The solver still runs on another model
    (its times and coefficients are a valid solver of any PF-ODE on the same interval), but its
    error is then not the one ``fit-solver`` measured, so each difference is worth a warning."""
    _, data = _read_json(path)
    fitted = data.get(FITTED_FOR)
    if not isinstance(fitted, dict):
        return []
    notes = []
    where = f"--solver {str(path)!r} was fitted to"
    digest = fitted.get("weights_sha256")
    if digest and loaded.digest and digest != loaded.digest:
        notes.append(
            f"{where} {fitted.get('model')!s} (step {fitted.get('step')}), and this run loads "
            f"{loaded.path} (step {loaded.step}), whose weights differ: it runs, but its error is not "
            f"the one fit-solver measured; {_FIT_HINT}"
        )
    for key, flag in (("guidance", "--guidance"), ("clip_denoised", "--clip-denoised"), ("class", "--class")):
        if key in fitted and fitted[key] != cfg.get(key):
            notes.append(
                f"{where} a run with {flag} {_shown(fitted[key])}, this one has {_shown(cfg.get(key))}: "
                "a solver is fitted to one ODE, so refit it for this one for the error fit-solver measured"
            )
    return notes


def _shown(v: Any) -> str:
    return "(none)" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def sampling_plan(cfg: dict[str, Any], loaded: Any, sde: Any, device: Any) -> tuple[Any, dict[str, Any]]:
    """``(grid, sampler options)`` of a sampling command's settings: with ``--solver``, the
    bespoke solver (:func:`bespoke_options`) and a grid that gives only the run's ends (``T``
    and ``eps``: the solver steps on its own times); else :func:`scoresde.cli._io.sampling_grid`
    and no options.

    Raises:
        ConfigError: see :func:`bespoke_options`.
        ValueError: ``--solver`` for a progressive student (valid only with DDIM on its grid).
    """
    from scoresde.cli._io import sampling_grid

    solver = bespoke_options(cfg, sde, tuple(loaded.shape))
    if solver is None:
        return sampling_grid(cfg, loaded, sde, device), {}
    if loaded.distilled_grid is not None:
        loaded.distilled_grid.check(cfg["method"], cfg["steps"], cfg["grid"])  # refuses bespoke
    for note in fit_notes(cfg["solver"], loaded, cfg):
        print(f"warning: {note}", file=sys.stderr)
    return "uniform", {"solver": solver}


def describe(solver: Any, path: str | Path) -> str:
    """One line on a solver: where it came from and its training error."""
    what = f"bespoke solver {path}: {solver.steps} steps"
    if solver.base:
        what += f", started at {solver.base} on the {solver.grid or 'given'} grid"
    if solver.iterations and math.isfinite(solver.pilot_error):
        what += (
            f", {solver.iterations} iterations on {solver.pilot} draws: RMS error {solver.pilot_error:.4g} "
            f"vs {solver.pilot_error_start:.4g} at the start"
        )
    return what
