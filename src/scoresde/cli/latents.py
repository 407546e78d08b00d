"""``scoresde encode``, ``decode`` and ``interpolate``: the probability-flow ODE as an invertible map.

The PF-ODE (Song et al. 2021, Eq. 13) maps data at ``t = eps`` to latents at ``t = T`` and
back, deterministically (App. D.4-D.5).  Each is a :class:`~scoresde.cli.command.Command`.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from scoresde.cli._io import load_data, load_model
from scoresde.cli._json import write_json
from scoresde.cli.checks import check_ode_batch
from scoresde.cli.command import Command, Context, checkpoint_options, ode_options, runtime_options
from scoresde.io.latents import load_latents
from scoresde.settings import Option
from scoresde.viz.pictures import save_picture

_SOLVER = [*checkpoint_options(), *ode_options(), *runtime_options()]
_DATA = Option("data", "digits", "digits, a toy set name, or a .npy/.npz file (held-out split of images)")


def _solver(ctx: Context) -> dict:
    """The ODE integrator of encode/decode (``--rtol``, ``--atol``, ``--norm``)."""
    from scoresde.flow.integrators import make_integrator

    return {"integrator": make_integrator("dopri5", rtol=ctx["rtol"], atol=ctx["atol"], norm=ctx["norm"])}


# ---------------------------------------------------------------------------------------------- #
def _encode(ctx: Context) -> int:
    import math

    from scoresde.cli.likelihood import count_note
    from scoresde.flow import latent as ss
    from scoresde.parallel import BatchOutput, init_distributed, run_batches

    cfg = ctx.cfg
    solver = _solver(ctx)
    loaded = load_model(ctx)
    check_ode_batch(cfg["num"], loaded.shape, "--num")
    data = load_data(cfg["data"], loaded, cfg["num"], cfg["seed"])
    # Under torchrun each rank encodes its block of the points and rank 0 writes the result
    # (exactly a one-process run's with --norm independent, where every point takes its own steps).
    info = init_distributed(str(ctx.device))
    notes = []
    note = count_note(cfg["num"], data.x.shape[0], f"the held-out split of {data.name}")
    if note is not None:
        notes.append(note)
        if info.is_main:
            print(f"warning: {note}", file=sys.stderr)

    def job(items: range, generator: torch.Generator) -> BatchOutput:
        x = data.x[items.start : items.stop].float().to(ctx.device)
        res = ss.encode(loaded.model, loaded.sde, x, **solver)
        back = ss.decode(loaded.model, loaded.sde, res.x, **solver).x
        return BatchOutput({"z": res.x.detach().cpu(), "back": back.detach().cpu()}, {"nfe": float(res.nfe)})

    n = data.x.shape[0]
    run = run_batches(job, n, max(1, math.ceil(n / info.world_size)), seed=cfg["seed"], info=info)
    items, stats = run.items, run.stats
    if items is None or stats is None:  # not rank 0
        return 0
    z, back = items["z"], items["back"]
    out = ctx.out_dir()
    np.savez(out / "latents.npz", z=z.numpy(), x=data.x.numpy())
    err = float(
        (back - data.x).flatten(1).norm(dim=1).div(data.x.flatten(1).norm(dim=1).clamp_min(1e-12)).max()
    )
    prior = float(loaded.sde.prior_std())
    summary = {
        "num": int(z.shape[0]),
        "num_asked": cfg["num"],
        "notes": notes,
        "nfe": int(stats["nfe"].max()),
        "latent_std": float(z.std()),
        "prior_std": prior,
        "max_relative_reconstruction_error": err,
    }
    write_json(out / "encode.json", summary)
    print(f"encoded {z.shape[0]} points of {data.name} ({summary['nfe']} function evaluations)")
    print(
        f"latent std {summary['latent_std']:.4f} (prior std {prior:.4f}); "
        f"decode(encode(x)) max relative error {err:.2e}"
    )
    print(f"outputs in {out.resolve()}: latents.npz (z, x), encode.json, config.toml")
    return 0


encode = Command(
    name="encode",
    help="map data to latents with the probability-flow ODE (writes latents.npz)",
    doc="""Encode data into latents z = x(T) with the probability-flow ODE (Song et al. 2021, App. D.4).

Writes latents.npz (arrays z and x) and encode.json (the latents' std beside the prior's and the
round-trip error of decoding them again).

Example:
    scoresde encode --checkpoint runs/digits --data digits --num 16 --out runs/enc
""",
    options=[
        *_SOLVER,
        _DATA,
        Option("num", 16, "number of data points", minimum=1, short="-n"),
    ],
    body=_encode,
)


# ---------------------------------------------------------------------------------------------- #
def _decode(ctx: Context) -> int:
    from scoresde.flow import latent as ss

    cfg = ctx.cfg
    loaded = load_model(ctx)
    if cfg["latents"]:
        z = load_latents(cfg["latents"])
        if tuple(z.shape[1:]) != loaded.shape:
            raise ValueError(f"latents have shape {tuple(z.shape[1:])}, the model's data {loaded.shape}")
        check_ode_batch(z.shape[0], loaded.shape, "--latents")
    else:
        check_ode_batch(cfg["num"], loaded.shape, "--num")
        z = loaded.sde.prior_sample(
            (cfg["num"], *loaded.shape), torch.Generator().manual_seed(cfg["seed"])
        ).float()
    out = ctx.out_dir()
    z = ss.temperature(z, cfg["temperature"]) if cfg["temperature"] != 1.0 else z
    res = ss.decode(loaded.model, loaded.sde, z.to(ctx.device), **_solver(ctx))
    x = res.x.detach().cpu()
    np.savez(out / "samples.npz", x=x.numpy(), z=z.numpy())
    save_picture(x, loaded.info, out / "samples.png", title=f"decoded, temperature {cfg['temperature']}")
    print(
        f"decoded {x.shape[0]} latents at temperature {cfg['temperature']} ({res.nfe} function evaluations)"
    )
    print(f"outputs in {out.resolve()}: samples.png, samples.npz (x, z), config.toml")
    return 0


decode = Command(
    name="decode",
    help="map latents (or prior draws) to samples with the probability-flow ODE",
    doc="""Decode latents into data with the probability-flow ODE (Song et al. 2021, App. D.4-D.5).

The latents come from --latents FILE.npz (array z, as `scoresde encode` writes) or, without it,
--num draws of the prior.  --temperature scales them (z -> tau z) first: below 1 gives smoother,
more typical samples.  Writes samples.png and samples.npz (x, z).

Example:
    scoresde decode --checkpoint runs/digits --num 64 --temperature 0.8 --out runs/dec
""",
    options=[
        *_SOLVER,
        Option("latents", "", "a latents .npz of `scoresde encode` (default: draws of the prior)", type=str),
        Option("num", 64, "prior draws when no --latents are given", minimum=1, short="-n"),
        Option("temperature", 1.0, "scale the latents by this factor first", minimum=1e-6),
    ],
    body=_decode,
)


# ---------------------------------------------------------------------------------------------- #
def _interpolate(ctx: Context) -> int:
    from scoresde.flow import latent as ss

    cfg = ctx.cfg
    loaded = load_model(ctx)
    check_ode_batch(cfg["frames"], loaded.shape, "--frames")
    if not cfg["latents"]:
        data = load_data(cfg["data"], loaded, max(cfg["first"], cfg["second"]) + 1, cfg["seed"])
        x = data.x[[cfg["first"], cfg["second"]]].float()
        z = ss.encode(loaded.model, loaded.sde, x.to(ctx.device), **_solver(ctx)).x.detach().cpu()
        source = data.name
        i, j = 0, 1
    else:
        z = load_latents(cfg["latents"])
        source = cfg["latents"]
        i, j = cfg["first"], cfg["second"]
        for key, k in (("first", i), ("second", j)):
            if not k < z.shape[0]:
                raise ValueError(f"{key}: index {k} is outside the {z.shape[0]} latents of {source}")
    if tuple(z.shape[1:]) != loaded.shape:
        raise ValueError(f"latents have shape {tuple(z.shape[1:])}, the model's data {loaded.shape}")
    out = ctx.out_dir()
    alphas = torch.linspace(0, 1, cfg["frames"])
    path = ss.slerp(z[i][None], z[j][None], alphas)[:, 0]  # (A, *D)
    res = ss.decode(loaded.model, loaded.sde, path.to(ctx.device), **_solver(ctx))
    x = res.x.detach().cpu()
    np.savez(out / "interpolation.npz", x=x.numpy(), z=path.numpy(), alpha=alphas.numpy())
    save_picture(
        x,
        loaded.info,
        out / "interpolation.png",
        nrow=-1 if x.ndim == 2 else x.shape[0],
        title="slerp path in latent space, decoded (colour: alpha)",
    )
    print(
        f"decoded a {cfg['frames']}-point slerp path between two latents of {source} ({res.nfe} evaluations)"
    )
    print(f"outputs in {out.resolve()}: interpolation.png, interpolation.npz (x, z, alpha), config.toml")
    return 0


interpolate = Command(
    name="interpolate",
    help="decode a spherical interpolation between two data points or two latents",
    doc="""Interpolate between two points in latent space (Song et al. 2021, App. D.5).

Encodes points --first and --second of --data with the probability-flow ODE (or takes them from
--latents FILE.npz), walks the great-circle path between them (scoresde.slerp) in --frames steps
and decodes each point.  Writes interpolation.png (a strip for images) and interpolation.npz.

Example:
    scoresde interpolate --checkpoint runs/digits --data digits --first 0 --second 5 --out runs/interp
""",
    options=[
        *_SOLVER,
        _DATA,
        Option("latents", "", "a latents .npz of `scoresde encode` instead of --data", type=str),
        Option("first", 0, "index of the first point", minimum=0),
        Option("second", 1, "index of the second point", minimum=0),
        Option("frames", 8, "points along the path, both ends included", minimum=2),
    ],
    body=_interpolate,
)
