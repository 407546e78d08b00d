"""How far the convolutions bound the training step and the sampling forward on this CPU (issue 22).

Issue 22 asks for a training step at >= 1.5x diffusers' images/s and a sampling loop at <= 0.67x
its wall time, both at equal parameters on the same layout (``benchmarks/speed.py``: scoresde's
``UNet`` against diffusers' ``UNet2DModel``, 32/64/64 channels, 28x28x1, batch 64).  This script
measures what limits both, in one process on one thread:

1. **The core's attainable peak**: float32 GFLOP/s of a large matrix product (1024^3, MKL), the
   rate no convolution algorithm beats per multiply-add.
2. **Every convolution of each network, replayed alone**: forward hooks record each ``Conv2d``'s
   input shape during one forward; each is then timed alone (forward without autograd; forward
   plus backward of input and weight gradients), and its multiply-adds counted.  Their sum against
   the whole step (or forward) gives the convolutions' share, and their GFLOP/s against (1) how
   close oneDNN's direct convolution already runs to the peak.
3. **The bound**: if everything that is not a convolution took no time at all, our step would
   cost the sum of our convolutions; diffusers' whole step over that sum is the largest ratio any
   change outside the convolutions can give.
4. **Fewer multiply-adds by another algorithm**: Winograd's F(2x2, 3x3) (Lavin & Gray 2016)
   needs 16 products per 2x2 output tile instead of 36, in 16 matrix products of
   ``(N * tiles, C_in) x (C_in, C_out)``; the time of those 16 products alone (in their fastest
   layout, without the input and output transforms, which only add) against oneDNN's direct
   convolution at each 3x3 shape is a floor on what Winograd written over torch's operators
   could reach.

Run: ``PYTHONPATH=src taskset -c 0 python benchmarks/conv_bound.py --out docs/bench_conv_bound.md``
(``--quick``: batch 8, three rounds).  Timings are CPU time of the process (``time.process_time``,
one thread), median of ``--repeats`` rounds; the machine may be shared (the page states its load).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def cpu_time(fn: Callable[[], object], repeats: int) -> float:
    """Median CPU seconds of ``fn`` over ``repeats`` rounds after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def gemm_peak(repeats: int) -> float:
    """float32 GFLOP/s of a 1024^3 matrix product: the best of ``3 * repeats`` rounds (the peak is
    what the core attains, so the fastest round is the reading)."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = min(cpu_time(lambda: a @ b, 1) for _ in range(3 * repeats))
    return 2 * 1024**3 / best / 1e9


def conv_shapes(net: object, x: object, *args: object) -> list[tuple]:
    """``(module, input shape)`` of every ``Conv2d`` call in one forward of ``net(x, *args)``."""
    import torch

    seen: list[tuple] = []
    hooks = [
        m.register_forward_hook(lambda m, inp, out: seen.append((m, tuple(inp[0].shape))))
        for m in net.modules()  # type: ignore[attr-defined]
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        net(x, *args)  # type: ignore[operator]
    for h in hooks:
        h.remove()
    return seen


def macs(conv: object, shape: tuple) -> int:
    """Multiply-adds of one forward of ``conv`` on an input of ``shape``."""
    import torch

    n, c, h, w = shape
    out = torch.nn.functional.conv2d(
        torch.empty(1, c, h, w, device="meta"),
        torch.empty(conv.weight.shape, device="meta"),  # type: ignore[attr-defined]
        stride=conv.stride,  # type: ignore[attr-defined]
        padding=conv.padding,  # type: ignore[attr-defined]
        groups=conv.groups,  # type: ignore[attr-defined]
    )
    k = conv.weight[0].numel()  # type: ignore[attr-defined]
    return n * out.shape[1] * out.shape[2] * out.shape[3] * k


def _conv_forward(x: Any, w: Any, b: Any, kw: dict) -> None:
    import torch

    with torch.no_grad():
        torch.nn.functional.conv2d(x, w, b, **kw)


def _conv_backward(x: Any, w: Any, b: Any, kw: dict) -> None:
    import torch

    y = torch.nn.functional.conv2d(x, w, b, **kw)
    y.backward(torch.ones_like(y))


def conv_replays(seen: list[tuple]) -> tuple[Callable[[], None], Callable[[], None], int]:
    """Every recorded convolution replayed alone, in order: (all forwards without autograd, all
    forwards + backwards), and their forward multiply-adds."""
    import torch

    fwd, both, total = [], [], 0
    for conv, shape in seen:
        w = conv.weight.detach().clone()
        b = None if conv.bias is None else conv.bias.detach().clone()
        x = torch.randn(shape)
        kw = {"stride": conv.stride, "padding": conv.padding, "groups": conv.groups}
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        br = None if b is None else b.clone().requires_grad_()
        fwd.append(partial(_conv_forward, x, w, b, kw))
        both.append(partial(_conv_backward, xr, wr, br, kw))
        total += macs(conv, shape)
    return partial(_run_all, fwd), partial(_run_all, both), total


def _run_all(fns: list[Callable[[], None]]) -> None:
    for f in fns:
        f()


def round_robin(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median CPU seconds of each function, each timed once per round in turn over ``repeats``
    rounds (after a warm-up round), so that all see the same state of a shared machine."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.process_time()
            f()
            times[k].append(time.process_time() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def winograd_conv(x: Any, w: Any) -> Any:
    """A 3x3 convolution (stride 1, padding 1, no bias) by Winograd's F(2x2, 3x3) over torch's
    operators (Lavin & Gray 2016, eq. 8: ``Y = A^T [(G g G^T) * (B^T d B)] A`` per 2x2 output tile,
    each transform applied separably to rows and columns; the channel sum as 16 matrix products)."""
    import torch
    import torch.nn.functional as F

    n, c, h, wd = x.shape
    o = w.shape[0]
    th, tw = (h + 1) // 2, (wd + 1) // 2
    # G g G^T on the weights: (4, 4, C, O).
    g0, g1, g2 = w[..., 0, :], w[..., 1, :], w[..., 2, :]
    r = torch.stack([g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2])
    c0, c1, c2 = r[..., 0], r[..., 1], r[..., 2]
    u = torch.stack([c0, (c0 + c1 + c2) / 2, (c0 - c1 + c2) / 2, c2], 1).transpose(2, 3)
    # B^T d B on the overlapping 4x4 input tiles (stride 2), in the products' layout (16, tiles, C).
    p = F.pad(x, (1, 1 + 2 * tw - wd, 1, 1 + 2 * th - h)).permute(0, 2, 3, 1)  # N, H, W, C
    rows = [p[:, k : k + 2 * th : 2] for k in range(4)]
    v = torch.stack([rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3]])
    cols = [v[:, :, :, k : k + 2 * tw : 2] for k in range(4)]
    v = torch.stack([cols[0] - cols[2], cols[1] + cols[2], cols[2] - cols[1], cols[1] - cols[3]], 1)
    m = torch.bmm(v.reshape(16, n * th * tw, c), u.reshape(16, c, o)).view(4, 4, n, th, tw, o)
    # A^T m A back to 2x2 tiles, interleaved into the image.
    y = torch.stack([m[0] + m[1] + m[2], m[1] - m[2] - m[3]])
    y = torch.stack([y[:, 0] + y[:, 1] + y[:, 2], y[:, 1] - y[:, 2] - y[:, 3]], 1)  # 2, 2, N, th, tw, O
    y = y.permute(2, 5, 3, 0, 4, 1).reshape(n, o, 2 * th, 2 * tw)
    return y[:, :, :h, :wd]


def winograd_gemm_floor(seen: list[tuple], repeats: int) -> list[tuple[str, float, float, float, float]]:
    """Per distinct 3x3 stride-1 shape: (shape, direct convolution ms, F(2x2,3x3)'s 16 matrix
    products alone ms, the whole F(2x2,3x3) convolution over torch's operators ms, its largest
    error relative to the direct convolution's largest output), forward without autograd."""
    import torch

    rows, done = [], set()
    for conv, shape in seen:
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.groups != 1:
            continue
        n, c, h, w = shape
        o = conv.weight.shape[0]
        key = (n, c, o, h, w)
        if key in done:
            continue
        done.add(key)
        x, wt = torch.randn(shape), torch.randn(conv.weight.shape) / (3 * c**0.5)  # values: any
        tiles = n * ((h + 1) // 2) * ((w + 1) // 2)
        v, u = torch.randn(16, tiles, c), torch.randn(16, c, o)  # the fastest layout found

        direct = partial(_conv_forward, x, wt, None, {"padding": 1})
        with torch.no_grad():
            ref = torch.nn.functional.conv2d(x, wt, padding=1)
            err = float((winograd_conv(x, wt) - ref).abs().max() / ref.abs().max())
            full = partial(winograd_conv, x, wt)
            rows.append(
                (
                    f"{n}x{c}x{h}x{w} -> {o}",
                    1e3 * cpu_time(direct, repeats),
                    1e3 * cpu_time(partial(torch.bmm, v, u), repeats),
                    1e3 * cpu_time(full, repeats),
                    err,
                )
            )
    return rows


def _no_grad_forward(net: Any, x: Any, args: tuple) -> None:
    import torch

    with torch.no_grad():
        net(x, *args)


def networks(batch: int, sample_batch: int) -> dict[str, tuple]:
    """name -> (module, forward input at ``batch``, at ``sample_batch``, a function of a batch size
    giving the extra forward args, the training step at ``batch``) at 28x28x1."""
    import torch

    import speed

    ours_step, _ = speed._scoresde_step(1, 28, 7, batch, "cpu", False)
    theirs_step, _ = speed._diffusers_step(1, 28, batch, "cpu", False)
    g = torch.Generator().manual_seed(0)
    x, xs = torch.randn(batch, 1, 28, 28, generator=g), torch.randn(sample_batch, 1, 28, 28, generator=g)
    return {
        "scoresde UNet": (
            speed.scoresde_unet(1, 28, 7),
            x,
            xs,
            lambda n: (torch.rand(n, generator=g),),
            ours_step,
        ),
        "diffusers UNet2DModel": (
            speed.diffusers_unet(1, 28),
            x,
            xs,
            lambda n: (torch.randint(0, 1000, (n,), generator=g),),
            theirs_step,
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64, help="training batch (speed.py's train section)")
    p.add_argument("--sample-batch", type=int, default=32, help="forward batch (speed.py's sample section)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="batches 8, three rounds")
    p.add_argument("--out", type=Path, default=None, help="write the markdown page here")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    batch, sample_batch, repeats = (8, 8, 3) if a.quick else (a.batch, a.sample_batch, a.repeats)
    load = os.getloadavg()
    peak = gemm_peak(repeats)
    nets = networks(batch, sample_batch)
    lines = [
        "# The convolutions bound the training step and the sampling forward (issue 22)",
        "",
        "Generated by `benchmarks/conv_bound.py` (its docstring says what each number is): "
        f"{platform.machine()}, torch {torch.__version__}, one thread, training step at batch {batch}, "
        f"forward (one sampling step) at batch {sample_batch}, "
        f"CPU time (median of {repeats} rounds; each round times every step, forward and replay once, "
        f"in turn). Load average at the start: {load[0]:.1f} (1 min), "
        f"{load[1]:.1f} (5 min) on {os.cpu_count()} cores (other jobs may have shared the machine: "
        "read the ratios and shares, measured in one process).",
        "",
        f"Attainable float32 peak of one core (1024^3 matrix product, MKL): **{peak:.1f} GFLOP/s**.",
        "",
        "| network (28x28x1) | convolutions | step: all convolutions alone / whole step | "
        "forward: convolutions alone / whole forward | convolution GFLOP/s (forward; fwd+bwd) | "
        "share of the peak (forward) |",
        "|---|---|---|---|---|---|",
    ]
    fns: dict[str, Callable[[], object]] = {}
    counts, shapes = {}, {}
    for name, (net, x, xs, args, step) in nets.items():
        seen = conv_shapes(net, x, *args(batch))
        _, both, n_macs = conv_replays(seen)
        seen_s = conv_shapes(net, xs, *args(sample_batch))
        fwd, _, n_macs_s = conv_replays(seen_s)
        net.eval()
        fns |= {
            f"{name} step": step,
            f"{name} convs fwd+bwd": both,
            f"{name} forward": partial(_no_grad_forward, net, xs, args(sample_batch)),
            f"{name} convs fwd": fwd,
        }
        counts[name], shapes[name] = (len(seen), n_macs, n_macs_s), seen_s
    t = round_robin(fns, repeats)
    results = {}
    for name in nets:
        n_convs, n_macs, n_macs_s = counts[name]
        both, t_step = t[f"{name} convs fwd+bwd"], t[f"{name} step"]
        fwd, t_fwd = t[f"{name} convs fwd"], t[f"{name} forward"]
        results[name] = (shapes[name], fwd, both, t_fwd, t_step)
        gf_f = 2 * n_macs_s / fwd / 1e9
        gf_b = 3 * 2 * n_macs / both / 1e9
        lines.append(
            f"| {name} | {n_convs} ({n_macs / batch / 1e6:.1f} M multiply-adds per image) | "
            f"{1e3 * both:.0f} / {1e3 * t_step:.0f} ms = **{both / t_step:.0%}** | "
            f"{1e3 * fwd:.0f} / {1e3 * t_fwd:.0f} ms = **{fwd / t_fwd:.0%}** | {gf_f:.1f}; {gf_b:.1f} | "
            f"{gf_f / peak:.0%} |"
        )
    (_, o_fwd, o_both, o_tf, o_ts), (_, d_fwd, _, d_tf, d_ts) = results.values()
    lines += [
        "",
        "(Forward + backward counts three times the forward's multiply-adds: the input and the weight "
        "gradient each cost one forward's.)",
        "",
        "## The bound",
        "",
        "| | measured ratio (ours / diffusers' time) | the most any change outside the convolutions "
        "can reach (ours' convolutions alone / diffusers' whole) | issue 22's target |",
        "|---|---|---|---|",
        f"| training step | {o_ts / d_ts:.2f}x the time ({d_ts / o_ts:.2f}x the images/s) | "
        f"{o_both / d_ts:.2f}x the time ({d_ts / o_both:.2f}x the images/s) | 1.5x the images/s |",
        f"| forward (a sampling step) | {o_tf / d_tf:.2f}x | {o_fwd / d_tf:.2f}x "
        f"(on diffusers' own network: its convolutions alone are {d_fwd / d_tf:.2f}x its forward) | "
        "0.67x the time |",
        "",
        "The sampling target runs *diffusers'* network through our adapter, so its bound is the last "
        "one: the same convolutions at the same rate cost at least that share of the forward.",
        "",
        "## Winograd F(2x2, 3x3): its 16 matrix products alone against the direct convolution",
        "",
        "| 3x3 convolution (N x C_in x H x W -> C_out) of our UNet, sampling batch | direct (oneDNN) ms | "
        "F(2x2,3x3)'s matrix products alone ms (/ direct) | F(2x2,3x3) in full over torch's "
        "operators ms (/ direct) | its error (max, relative) |",
        "|---|---|---|---|---|",
    ]
    for shape, t_direct, t_gemm, t_full, err in winograd_gemm_floor(results["scoresde UNet"][0], repeats):
        lines.append(
            f"| {shape} | {t_direct:.2f} | {t_gemm:.2f} ({t_gemm / t_direct:.2f}) | "
            f"{t_full:.2f} ({t_full / t_direct:.2f}) | {err:.1e} |"
        )
    lines += [
        "",
        "F(2x2,3x3) does 16/36 of the direct convolution's multiply-adds, but at these channel counts "
        "its matrix products (inner dimension C_in) run far from the peak, so they alone take the "
        "share of the direct time in the third column; the transforms, which read and write four "
        "times the input and output, would have to fit in the rest, and over torch's operators (one "
        "pass per operator) they take several times the whole direct convolution (fourth column). "
        "Only a fused kernel could test the remaining margin; none is shipped.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if a.out is not None:
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
