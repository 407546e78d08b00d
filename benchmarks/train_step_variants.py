"""Variants of scoresde's training step side by side with diffusers', in one process.

Issue 22's training measurements (docs/bench_speed.md, "Training step at batch 64"): alternating
rounds of each variant's step (forward, backward, AdamW, EMA; batch 64 by default), reporting the
median wall and CPU seconds (``time.process_time``: what a shared core does not inflate) and the
ratio to diffusers' ``train_unconditional`` step.  Variants are ``+``-joined options:

- ``base``: this round's starting forwards patched back onto the network (upsampling by
  ``F.interpolate`` + 3x3 convolution, out-of-place block additions), the "before" column;
- ``noinplace``: only the out-of-place block additions of the starting code;
- ``fused`` / ``foreach``: that AdamW implementation (default: torch's for-loop one);
- ``cl``: ``channels_last`` network and data;
- ``theirs``: diffusers' step (``benchmarks/speed.py``'s ``_diffusers_step``).

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src taskset -c 1 python benchmarks/train_step_variants.py
--size 28x28x1 --variants base,current+fused,theirs --repeats 7``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import torch.nn.functional as F

import speed


def _old_up(self, x):
    return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _old_res(self, x, temb):
    from scoresde.nets import unet

    h = self.conv1(F.silu(self.norm1(x)))
    h = h + self.temb(F.silu(temb))[:, :, None, None]
    h = self.conv2(self.dropout(F.silu(self.norm2(h))))
    return (self.skip(x) + h) * unet._SKIP_SCALE


def _old_attn(self, x):
    from scoresde.nets import unet

    b, c, h, w = x.shape
    q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
    out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
    out = self.proj(out.transpose(-1, -2).reshape(b, c, h, w))
    return (x + out) * unet._SKIP_SCALE


def ours(variant: str, size: str, batch: int):
    """One step of our network under ``variant`` (see the module docstring)."""
    import scoresde as ss
    from scoresde.nets import unet

    opts = set(variant.split("+"))
    ch, side, attn = speed.SIZES[size]
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = speed.scoresde_unet(ch, side, attn)
    for m in net.modules():
        if "base" in opts and isinstance(m, unet.Upsample):
            m.forward = types.MethodType(_old_up, m)
        if opts & {"base", "noinplace"} and isinstance(m, unet.ResBlock):
            m.forward = types.MethodType(_old_res, m)
        if opts & {"base", "noinplace"} and isinstance(m, unet.AttnBlock):
            m.forward = types.MethodType(_old_attn, m)
    model = ss.ScoreModel(net, ss.VPSDE(), prediction="eps")
    fmt = torch.channels_last if "cl" in opts else torch.contiguous_format
    model.to(memory_format=fmt)
    kw = {"fused": True} if "fused" in opts else {"foreach": True} if "foreach" in opts else {}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **kw)
    ema = ss.EMA(model, decay=0.999)
    x = torch.randn(batch, ch, side, side, generator=g).contiguous(memory_format=fmt)

    def step() -> None:
        loss = ss.dsm_loss(model, x, generator=g).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)

    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="28x28x1", choices=list(speed.SIZES))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--variants", default="base,current+fused,theirs")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    ch, side, _ = speed.SIZES[args.size]
    cases = {
        v: speed._diffusers_step(ch, side, args.batch, "cpu", False)[0]
        if v == "theirs"
        else ours(v, args.size, args.batch)
        for v in args.variants.split(",")
    }
    print(f"{args.size} batch {args.batch}, 1 thread, {speed.load_text()}", flush=True)
    for fn in cases.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for k, fn in cases.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(time.process_time() - c0)
    t = {k: statistics.median(v) for k, v in wall.items()}
    c = {k: statistics.median(v) for k, v in cpu.items()}
    for k in cases:
        line = f"  {k:24s} wall {t[k]:7.3f} s/step {args.batch / t[k]:6.1f} img/s"
        line += f" vs diffusers {t['theirs'] / t[k]:.3f}x" if "theirs" in t else ""
        line += f" | cpu {c[k]:7.3f} s/step {args.batch / c[k]:6.1f} img/s"
        line += f" vs diffusers {c['theirs'] / c[k]:.3f}x" if "theirs" in c else ""
        print(line, flush=True)
    print(f"  end: {speed.load_text()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
