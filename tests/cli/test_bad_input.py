"""A bad-input battery over every ``scoresde`` subcommand (in-process, through ``main(argv)``).

Each case gives a command line that a careful user might type wrongly and the exit status it
must get (2: usage error, 1: runtime failure) and words the one-line error must contain (the
option or the problem).  An outcome is ``clear`` (that status, those words, no traceback),
``unclear`` (another non-zero status, a missing word or a raw traceback), ``silent`` (exit 0)
or ``lost`` (the output folder changed: a file that was there changed or vanished, or a failed
run left files behind; compared by a hash of every file in it before and after).

``python -m tests.cli.test_bad_input`` prints the table of categories (cases tried / clear /
unclear / silent / lost) that ``docs/reliability.md`` shows.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scoresde as ss
from scoresde.cli.__main__ import SUBCOMMANDS, main

CHECKPOINT_COMMANDS = [n for n, c in SUBCOMMANDS.items() if "checkpoint" in {o.key for o in c.all_options}]
ODE_COMMANDS = [n for n, c in SUBCOMMANDS.items() if "rtol" in {o.key for o in c.all_options}]


def _has(command: str, key: str) -> bool:
    return key in {o.key for o in SUBCOMMANDS[command].all_options}


@dataclass(frozen=True)
class Case:
    """One bad command line: ``argv`` may hold ``{tmp}`` and ``{ckpt}`` (filled in at run time)."""

    category: str
    argv: tuple[str, ...]
    status: int
    words: tuple[str, ...]
    prepare: Callable[[Path], None] | None = None

    @property
    def id(self) -> str:
        return f"{self.category}:{' '.join(self.argv)}"


def _base(command: str) -> list[str]:
    """A command line that is fine except for what a case adds."""
    argv = [command]
    if _has(command, "checkpoint") and command != "train-classifier":
        argv += ["--checkpoint", "{ckpt}"]
    return [*argv, *(["--out", "{tmp}/out"] if command != "train" else ["--out", "{tmp}/runs"])]


def _cases() -> list[Case]:
    cases: list[Case] = []
    cuda = torch.cuda.is_available()
    for cmd in SUBCOMMANDS:
        b = _base(cmd)
        cases.append(Case("device", (*b, "--device", "tpu"), 2, ("--device", "tpu")))
        bad_cuda = "cuda:99" if cuda else "cuda"
        cases.append(Case("device", (*b, "--device", bad_cuda), 2, ("--device", bad_cuda)))
        cases.append(Case("threads", (*b, "--threads", "-1"), 2, ("threads", "-1")))
        cases.append(Case("seed", (*b, "--seed", "-1"), 2, ("seed", "-1")))
        cases.append(Case("seed", (*b, "--seed", str(2**64)), 2, ("seed", str(2**64))))
        cases.append(Case("seed", (*b, "--seed", "1.5"), 2, ("seed", "1.5")))
        for key in ("steps", "num", "batch_size", "samples", "sample_steps"):
            if _has(cmd, key):
                flag = "--" + key.replace("_", "-")
                cases.append(Case("counts", (*b, flag, "0"), 2, (flag, "0")))
                cases.append(Case("counts", (*b, flag, "ten"), 2, (flag, "ten")))
        for key in ("method", "grid", "norm"):
            if _has(cmd, key):
                cases.append(Case("names", (*b, "--" + key, "magic"), 2, (key, "magic")))
        cases.append(Case("names", (*b, "--set", "stepz=3"), 2, ("stepz",)))
        cases.append(Case("files", (*b, "--config", "{tmp}/nope.toml"), 2, ("nope.toml", "does not exist")))
        cases.append(Case("files", (*b, "--config", "{tmp}"), 2, ("--config", "directory")))
        if cmd in ODE_COMMANDS:
            cases.append(Case("tolerances", (*b, "--rtol", "0"), 2, ("--rtol", "0")))
            cases.append(Case("tolerances", (*b, "--rtol", "nan"), 2, ("rtol", "nan")))
            cases.append(Case("tolerances", (*b, "--atol", "-1"), 2, ("atol", "-1")))
        if cmd in CHECKPOINT_COMMANDS and cmd != "train-classifier":
            missing = [cmd, "--checkpoint", "{tmp}/missing.safetensors", "--out", "{tmp}/out"]
            cases.append(Case("files", tuple(missing), 2, ("missing.safetensors",)))
    cases += [
        Case("floats", (*_base("sample"), "--guidance", "nan"), 2, ("guidance", "nan")),
        Case("floats", (*_base("sample"), "--guidance", "inf"), 2, ("guidance", "inf")),
        Case("floats", (*_base("sample"), "--classifier-scale=-inf"), 2, ("--classifier-scale", "inf")),
        Case("floats", (*_base("train"), "--lr", "inf"), 2, ("lr", "inf")),
        Case("floats", (*_base("train"), "--sigma-data", "nan"), 2, ("sigma_data", "nan")),
        Case("floats", (*_base("train"), "--grad-clip", "-1"), 2, ("grad_clip", "-1")),
        Case("train", (*_base("train"), "--name", "../../x"), 2, ("name", "../../x")),
        # train's --out is the parent of --name; elsewhere --out is the folder itself: both is refused.
        Case("out", (*_base("distill"), "--name", "p"), 2, ("--out", "--name", "give one")),
        Case("out", (*_base("sample"), "--name", "s"), 2, ("--out", "--name", "give one")),
        Case("train", (*_base("train"), "--bpd-samples", "-5"), 2, ("bpd_samples", "-5")),
        Case("train", (*_base("train"), "--image-size", "0"), 2, ("image_size", "0")),
        Case("train", (*_base("train"), "--attn-resolutions", "3"), 2, ("attn_resolutions", "3")),
        Case("train", (*_base("train"), "--label-dropout", "0.1"), 2, ("label_dropout", "conditional")),
        Case("train", (*_base("train"), "--sample-method", "foo"), 2, ("sample_method", "foo")),
        Case("train", (*_base("train"), "--data", "{tmp}/none.npy"), 2, ("none.npy",)),
        Case("train", (*_base("train"), "--resume", "{tmp}/nothing"), 2, ("nothing", "not found")),
        Case(
            "train",
            ("train", "--config", "{tmp}/bad.toml", "--out", "{tmp}/runs"),
            2,
            ("steps", "abc"),
            prepare=lambda tmp: (tmp / "bad.toml").write_text('steps = "abc"\n'),
        ),
        Case(
            "train",
            ("train", "--config", "{tmp}/bool.toml", "--out", "{tmp}/runs"),
            2,
            ("conditional", "false"),
            prepare=lambda tmp: (tmp / "bool.toml").write_text('conditional = "false"\n'),
        ),
        Case(
            "classes",
            ("train-classifier", "--classes", "100000", "--out", "{tmp}/out"),
            2,
            ("--classes", "100000"),
        ),
        Case("classes", ("train-classifier", "--classes", "1"), 2, ("classes", "1")),
        Case(
            "files",
            (*_base("decode"), "--latents", "{tmp}/empty.npz"),
            2,
            ("--latents", "no latents"),
            prepare=lambda tmp: np.savez(tmp / "empty.npz", z=np.zeros((0, 2), np.float32)),
        ),
        Case(
            "files",
            (*_base("decode"), "--latents", "{tmp}/nolatents.npz"),
            2,
            ("nolatents.npz", "does not exist"),
        ),
        Case(
            "runtime",
            (
                "sample",
                "--checkpoint",
                "{tmp}/nan.safetensors",
                "--num",
                "4",
                "--steps",
                "3",
                "--out",
                "{tmp}/out",
            ),
            1,
            ("stopped being finite", "step 1"),
            prepare=lambda tmp: _nan_checkpoint(tmp / "nan.safetensors"),
        ),
        Case(
            "runtime",
            (*_base("train"), "--name", "busy", "--steps", "1"),
            1,
            ("in use by", "lock"),
            prepare=lambda tmp: _busy(tmp / "runs" / "busy"),
        ),
    ]
    return cases + _reliability_iii_cases()


def _reliability_iii_cases() -> list[Case]:
    """Issue 24: outputs never overwritten or mixed, data labels, latents files, size limits."""
    cases: list[Case] = []
    taken = ("already holds", "--overwrite")
    for cmd in SUBCOMMANDS:
        if cmd in ("train", "distill"):
            continue  # their own run-folder rule (tests/cli/test_train.py, tests/cli/test_distill.py)
        # An earlier run's results in --out: refused before any work, the folder untouched.
        cases.append(Case("outputs", tuple(_base(cmd)), 2, ("--out", *taken), prepare=_earlier_run))
        # --out is a file.
        argv = [a if a != "{tmp}/out" else "{tmp}/out/keep.txt" for a in _base(cmd)]
        cases.append(Case("outputs", tuple(argv), 2, ("--out", "not a folder")))
    steps = ("--steps", "2", "--method", "euler_maruyama")
    cases += [
        # The three cases: a second encode, a PNG set from another run, an .npz.
        Case(
            "outputs",
            (*_base("encode"), "--data", "two_moons", "--num", "4"),
            2,
            ("latents.npz", "encode.json", *taken),
            prepare=lambda tmp: _files(tmp / "out", "latents.npz", "encode.json", "config.toml"),
        ),
        Case(
            "outputs",
            ("sample", "--checkpoint", "{tmp}/img.safetensors", "--out", "{tmp}/out", "--format", "png"),
            2,
            ("samples_euler_maruyama_2_seed0", *taken),
            prepare=lambda tmp: _png_set(tmp, 4),
        ),
        Case(
            "outputs",
            (*_base("sample"), *steps, "--num", "2"),
            2,
            ("samples_euler_maruyama_2_seed0.npz", *taken),
            prepare=lambda tmp: _files(tmp / "out", "samples_euler_maruyama_2_seed0.npz"),
        ),
        Case(
            "outputs",
            (*_base("interpolate"), "--data", "two_moons"),
            2,
            ("interpolation.png", *taken),
            prepare=lambda tmp: _files(tmp / "out", "interpolation.png"),
        ),
        # Data: labels against the metadata and the training split, ambiguous arrays, CIFAR files.
        Case("data", _train_on("{tmp}/k.npz"), 2, ("100-109", "never occur", "0-9"), prepare=_keras_far),
        Case("data", _train_on("{tmp}/c"), 2, ("99", "batches.meta", "10 classes"), prepare=_cifar99),
        Case("data", _train_on("{tmp}/two.npz"), 2, ("ambiguous", "'x'", "'images'"), prepare=_two_arrays),
        Case(
            "data",
            (*_base("encode"), "--data", "{tmp}/two.npz"),
            2,
            ("ambiguous", "'x'", "'images'"),
            prepare=_two_arrays,
        ),
        Case(
            "data",
            _train_on("{tmp}/c"),
            2,
            ("data_batch_1", "data_batch_5", "missing"),
            prepare=lambda tmp: _cifar(tmp / "c", ["data_batch_3", "data_batch_4", "test_batch"]),
        ),
        Case(
            "data",
            _train_on("{tmp}/c"),
            2,
            ("test_batch", "missing"),
            prepare=lambda tmp: _cifar(tmp / "c", [f"data_batch_{i}" for i in range(1, 6)]),
        ),
        Case("data", _train_on("{tmp}/gap.npz"), 2, ("class(es) 1, 2", "no training image"), prepare=_gap),
        # Latents files: what the file is, not numpy's or pickle's words.
        *[
            Case(
                "latents",
                (*_base(cmd), "--latents", "{tmp}/" + name),
                2,
                ("--latents", name, *words),
                prepare=_latents_files,
            )
            for cmd in ("decode", "interpolate")
            for name, words in (
                ("afile.txt", ("not an .npz",)),
                ("strings.npz", ("strings",)),
                ("objects.npz", ("unpickling",)),
                ("nan.npz", ("nan",)),
                ("z.npy", (".npy",)),
            )
        ],
        Case(
            "models",
            (
                "sample",
                "--model",
                "score_sde:{tmp}/config.json",
                "--model-config",
                "{tmp}/config.json",
                "--out",
                "{tmp}/out",
            ),
            2,
            ("config.json", "text file", "not a pytorch checkpoint"),
            prepare=_score_sde_config,
        ),
        # Sizes bounded before any work.
        Case(
            "limits",
            (*_base("interpolate"), "--data", "two_moons", "--frames", "1000000"),
            2,
            ("--frames", "1000000", "10000"),
        ),
        Case("limits", ("demo", "--frames", "100000", "--out", "{tmp}/out"), 2, ("--frames", "100000")),
        Case("limits", (*_base("decode"), "--temperature", "1e30"), 2, ("--temperature", "1e+30", "(0, 10]")),
        Case("limits", (*_base("decode"), "--num", "100000000"), 2, ("--num", "100000000", "at most")),
        Case(
            "limits",
            (*_base("encode"), "--data", "two_moons", "--num", "100000000"),
            2,
            ("--num", "100000000", "at most"),
        ),
    ]
    return cases


def _files(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(f"an earlier run's {name}")


def _earlier_run(tmp: Path) -> None:
    _files(tmp / "out", "config.toml", "results.json")


def _png_set(tmp: Path, n: int) -> None:
    from PIL import Image

    _image_checkpoint(tmp / "img.safetensors")
    folder = tmp / "out" / "samples_euler_maruyama_2_seed0"
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("L", (8, 8), 30 * i).save(folder / f"{i:06d}.png")


def _image_checkpoint(path: Path) -> None:
    from scoresde.io.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = ss.ScoreModel(ss.MLP(64, hidden=8, depth=1), ss.VPSDE(), prediction="eps")
    info = {"name": "digits", "shape": [1, 8, 8], "num_classes": None, "levels": 17}
    save_checkpoint(path, model, step=1, train_config={"net": "mlp"}, data_info=info)


def _train_on(data: str) -> tuple[str, ...]:
    return ("train", "--data", data, "--out", "{tmp}/runs", "--net", "mlp", "--steps", "1", "--conditional")


def _keras_far(tmp: Path) -> None:
    x = np.zeros((10, 4, 4), np.uint8)
    np.savez(tmp / "k.npz", x_train=x, y_train=np.arange(10), x_test=x, y_test=np.arange(100, 110))


def _gap(tmp: Path) -> None:
    np.savez(tmp / "gap.npz", x=np.zeros((12, 4, 4), np.uint8), y=np.arange(12) % 2 * 3)


def _two_arrays(tmp: Path) -> None:
    x = np.zeros((4, 4, 4), np.uint8)
    np.savez(tmp / "two.npz", x=x, images=x + 1)


def _cifar(root: Path, files: list[str], test_label: int = 0) -> None:
    import pickle

    root.mkdir(parents=True)
    for k, name in enumerate(files):
        labels = [test_label, 1] if name == "test_batch" else [(2 * k + j) % 10 for j in range(2)]
        batch = {"data": np.zeros((2, 3072), np.uint8), "labels": labels}
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"label_names": [f"c{i}" for i in range(10)]}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def _cifar99(tmp: Path) -> None:
    _cifar(tmp / "c", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], test_label=99)


def _latents_files(tmp: Path) -> None:
    (tmp / "afile.txt").write_text("0.1 0.2\n")
    np.savez(tmp / "strings.npz", z=np.array([["a", "b"]]))
    np.savez(tmp / "objects.npz", z=np.array([[1.0, None]], dtype=object))
    np.savez(tmp / "nan.npz", z=np.array([[np.nan, 0.0]], np.float32))
    np.save(tmp / "z.npy", np.zeros((1, 2), np.float32))


_SCORE_SDE_CONFIG = {
    "model": {
        "name": "ddpm",
        "nf": 32,
        "ch_mult": [1, 1],
        "num_res_blocks": 0,
        "attn_resolutions": [8],
        "dropout": 0.0,
        "resamp_with_conv": True,
        "conditional": True,
        "nonlinearity": "swish",
        "normalization": "GroupNorm",
        "embedding_type": "fourier",
        "scale_by_sigma": False,
        "ema_rate": 0.9,
        "num_scales": 1000,
        "beta_min": 0.1,
        "beta_max": 20.0,
        "sigma_min": 0.01,
        "sigma_max": 50,
    },
    "data": {"centered": True, "image_size": 16, "num_channels": 3, "dataset": "CIFAR10"},
    "training": {"sde": "vpsde", "continuous": True},
}


def _score_sde_config(tmp: Path) -> None:
    (tmp / "config.json").write_text(json.dumps(_SCORE_SDE_CONFIG))


def _nan_checkpoint(path: Path) -> None:
    from scoresde.io.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), ss.VPSDE(), prediction="eps")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    save_checkpoint(path, model, step=1, data_info={"name": "two_moons", "shape": [2]})


def _busy(run: Path) -> None:
    from scoresde.io.runlock import LOCK_NAME

    run.mkdir(parents=True, exist_ok=True)
    record = {"pid": 1, "host": socket.gethostname(), "time": "2026-01-01T00:00:00", "argv": ["scoresde"]}
    (run / LOCK_NAME).write_text(json.dumps(record))


def _checkpoint(path: Path) -> str:
    from scoresde.io.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = ss.ScoreModel(ss.MLP(2, hidden=8, depth=1), ss.VPSDE(), prediction="eps")
    save_checkpoint(path, model, step=1, data_info={"name": "two_moons", "shape": [2]})
    return str(path)


def folder_digest(folder: Path) -> str:
    """A hash of every file under ``folder`` (relative names and contents)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode() + b"\0")
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def run_case(case: Case, tmp: Path, ckpt: str) -> tuple[str, int, str]:
    """``(outcome, exit status, stderr)`` of one case (see the module docstring)."""
    (tmp / "out").mkdir(parents=True, exist_ok=True)
    keep = tmp / "out" / "keep.txt"
    keep.write_text("precious")
    if case.prepare is not None:
        case.prepare(tmp)
    before = folder_digest(tmp / "out")
    argv = [a.format(tmp=tmp, ckpt=ckpt) for a in case.argv]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exit_:  # argparse's own usage errors
            status = int(exit_.code or 0)
        except Exception as exc:  # a raw exception escaping main
            status, err = -1, io.StringIO(f"Traceback (escaped): {type(exc).__name__}: {exc}")
    text = err.getvalue()
    if not keep.exists() or keep.read_text() != "precious" or folder_digest(tmp / "out") != before:
        return "lost", status, text
    if status == 0:
        return "silent", status, text
    low = text.lower()
    ok = status == case.status and "traceback (" not in low and all(w.lower() in low for w in case.words)
    return ("clear" if ok else "unclear"), status, text


CASES = _cases()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_error(case: Case, tmp_path: Path, ckpt: str) -> None:
    outcome, status, text = run_case(case, tmp_path, ckpt)
    assert outcome == "clear", f"{case.id}: {outcome}, exit {status} (want {case.status}), stderr {text!r}"
    assert len(text.strip().splitlines()) == 1, f"not one line: {text!r}"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(sorted(SUBCOMMANDS)),
    key=st.sampled_from(["steps", "num", "batch_size", "seed", "threads"]),
    value=st.integers(max_value=-1) | st.integers(min_value=2**63, max_value=2**80),
)
def test_out_of_range_integers_are_refused(command: str, key: str, value: int, ckpt: str) -> None:
    if not _has(command, key) or (key != "seed" and value > 0):
        return  # only negative counts and out-of-range seeds are bad for sure
    flag = "--" + key.replace("_", "-")
    with tempfile.TemporaryDirectory() as d:
        # The message names the option as a flag (--batch-size) or a config key (batch_size).
        case = Case("hypothesis", (*_base(command), flag, str(value)), 2, (key.split("_")[0], str(value)))
        outcome, status, text = run_case(case, Path(d), ckpt)
    assert outcome == "clear", f"{case.id}: {outcome}, exit {status}, {text!r}"


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(ODE_COMMANDS),
    rtol=st.floats(max_value=0.0) | st.just(float("nan")) | st.just(float("inf")),
)
def test_non_positive_rtol_is_refused(command: str, rtol: float, ckpt: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        case = Case("hypothesis", (*_base(command), "--rtol", repr(rtol)), 2, ("rtol",))
        outcome, status, text = run_case(case, Path(d), ckpt)
    assert outcome == "clear", f"{case.id}: {outcome}, exit {status}, {text!r}"


@pytest.mark.parametrize(
    "error",
    [
        "NonFiniteError",
        "CheckpointWriteError",
        "RunFolderBusyError",
        "RuntimeError",
        "PermissionError",
        "AssertionError",
    ],
)
def test_runtime_failures_exit_1_with_one_line(error: str, monkeypatch, capsys) -> None:
    """Every runtime failure class exits 1 with one line (the traceback only under SCORESDE_DEBUG)."""
    from scoresde._core.checks import NonFiniteError
    from scoresde.io.checkpoint import CheckpointWriteError
    from scoresde.io.runlock import RunFolderBusyError

    kinds = {
        "NonFiniteError": NonFiniteError("score went non-finite at step 3 (t = 0.5)"),
        "CheckpointWriteError": CheckpointWriteError(
            Path("run/checkpoints/last.safetensors"),
            OSError(28, "No space left on device"),
            intact=Path("run/checkpoints/step_0000005.safetensors"),
        ),
        "RunFolderBusyError": RunFolderBusyError("the run folder is in use by process 1"),
        "RuntimeError": RuntimeError("underflow in dt"),
        "PermissionError": PermissionError("permission denied: out/"),
        "AssertionError": AssertionError("underflow in dt"),
    }

    def boom(cfg):
        raise kinds[error]

    monkeypatch.setattr("scoresde.cli.checks.check_settings", boom)
    monkeypatch.delenv("SCORESDE_DEBUG", raising=False)
    assert main(["sample", "--checkpoint", "x"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    word = {"CheckpointWriteError": "step_0000005", "RunFolderBusyError": "in use"}.get(error, "step 3")
    word = "underflow" if error in ("RuntimeError", "AssertionError") else word
    word = "permission denied" if error == "PermissionError" else word
    assert word in err and "SCORESDE_DEBUG" in err
    monkeypatch.setenv("SCORESDE_DEBUG", "1")
    assert main(["sample", "--checkpoint", "x"]) == 1
    assert "Traceback" in capsys.readouterr().err


def table(rows: list[tuple[str, str]]) -> str:
    """A markdown table of ``(category, outcome)`` rows."""
    counts: dict[str, Counter] = {}
    for cat, outcome in rows:
        counts.setdefault(cat, Counter())[outcome] += 1
    lines = [
        "| category | cases tried | clear error | unclear | silent | lost |",
        "|---|---|---|---|---|---|",
    ]
    total: Counter = Counter()
    for cat, c in counts.items():
        total += c
        n = sum(c.values())
        lines.append(f"| {cat} | {n} | {c['clear']} | {c['unclear']} | {c['silent']} | {c['lost']} |")
    n = sum(total.values())
    lines.append(
        f"| **all** | {n} | {total['clear']} | {total['unclear']} | {total['silent']} | {total['lost']} |"
    )
    return "\n".join(lines)


def _main() -> int:
    torch.set_num_threads(1)
    rows, bad = [], []
    with tempfile.TemporaryDirectory() as root:
        ckpt = _checkpoint(Path(root) / "model.safetensors")
        for i, case in enumerate(CASES):
            tmp = Path(root) / f"case{i}"
            tmp.mkdir()
            outcome, status, text = run_case(case, tmp, ckpt)
            rows.append((case.category, outcome))
            if outcome != "clear":
                bad.append(f"{outcome}: {case.id} -> exit {status}: {text.strip()[:200]}")
    print(table(rows))
    for line in bad:
        print(line, file=sys.stderr)
    return 0 if not bad else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(_main())


def test_train_resume_falls_back_to_the_newest_step_checkpoint(tmp_path: Path, capsys) -> None:
    """A lost ``last.safetensors``: ``train --resume`` continues from the newest intact step."""
    from scoresde.io.checkpoint import load_checkpoint

    common = ["train", "--out", str(tmp_path), "--name", "r", "--net", "mlp", "--batch-size", "8"]
    tiny = ["--eval-every", "1000", "--num-samples", "4", "--sample-steps", "2", "--no-progress"]
    assert main([*common, *tiny, "--steps", "2", "--save-every", "1"]) == 0
    ckpts = tmp_path / "r" / "checkpoints"
    (ckpts / "last.safetensors").unlink()
    capsys.readouterr()
    assert main([*common, "--steps", "3", "--resume"]) == 0
    captured = capsys.readouterr()
    assert "step_0000002" in captured.err and "resumed" in captured.out
    assert load_checkpoint(ckpts / "last.safetensors").step == 3
