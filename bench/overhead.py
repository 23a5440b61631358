"""Sampler overhead: wall time of a whole sampling run divided by (model calls x one model call).

Ours: ``jax.jit(sample)`` of every registered solver at NFE 10 with the MLP model
(``models.mlp.MLP``, batch 4096, dim 64, depth 3) at each hidden width of ``--hidden``: 256 is a
launch-bound model on a GPU (its 9 small kernels take about 50 us a call on an H100, so one
extra fused kernel of the sampler is already +5-10%), 1024 one whose call is dominated by its
matrix products, as real diffusion networks are. Peers: diffusers' Python sampling loop with
each of its schedulers around the same MLP written in torch (the same weights copied).
"One call" is the model alone, measured as the time of as many chained calls as the
sampler makes (``nfe``; RK4 makes 8 of 10) with one synchronisation at the end, divided by that number (for JAX: a jitted ``lax.fori_loop``, the loop
a sampler runs in, holding the model only; for torch: eager calls). Each sampler and its floor
are timed in alternation (``time_paired``) so that drift falls on both. Columns: the ratio
"time / (calls x one call)" (goal for ours: < 1.05) and the sampler's own cost per step,
(time - calls x one call) / steps. All in float32 (default matmul precision), on the GPU when
JAX and torch see one; scheduler set-up (``set_timesteps``, our coefficient tables) is not timed.

    python bench/overhead.py [--hidden 256,1024] [--dim 64] [--batch 4096] [--depth 3] [--nfe 10] [--repeats 20]
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import (Progress, diffusers_loop, diffusers_methods, machine_lines, markdown_table,  # noqa: E402
                          time_paired)
from models.common import param_count  # noqa: E402
from models.mlp import MLP, init_mlp, mlp_model_fn  # noqa: E402
from samplers import registry  # noqa: E402
from samplers.core import sample  # noqa: E402
from samplers.schedules import vp_linear  # noqa: E402


def torch_mlp(module: MLP, params, device):
    """The flax ``MLP`` (Fourier time embedding) as a torch module with the same weights and the same
    constant frequencies (``models.common.fourier_frequencies``)."""
    import torch

    from models.common import fourier_frequencies

    if module.time_embedding != "fourier":
        raise ValueError("the torch twin implements time_embedding='fourier' only")
    w = fourier_frequencies(module.embed_dim, module.fourier_scale, module.fourier_seed).astype(np.float32)

    class TorchMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w", torch.tensor(w))
            dense = [params[f"Dense_{i}"] for i in range(module.depth + 1)]
            self.layers = torch.nn.ModuleList()
            for p in dense:
                k = np.asarray(p["kernel"])
                layer = torch.nn.Linear(*k.shape)
                layer.weight.data = torch.tensor(k.T.copy())
                layer.bias.data = torch.tensor(np.asarray(p["bias"]))
                self.layers.append(layer)

        def forward(self, x, t):
            t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
            args = 2.0 * np.pi * t[:, None] * self.w[None]
            h = torch.cat([x, torch.sin(args), torch.cos(args)], dim=-1)
            for layer in self.layers[:-1]:
                h = torch.nn.functional.silu(layer(h))
            return self.layers[-1](h)

    return TorchMLP().to(device).eval()


def jax_rows(module, params, x, names, args, progress) -> list:
    schedule = vp_linear()

    @functools.cache
    def chain(calls: int):
        """``calls`` chained model calls in one jitted loop: the same number of calls and the same
        one dispatch as the sampler's run, so that the run's fixed cost weighs alike on both."""
        ts = jnp.linspace(1.0, 1e-3, calls, dtype=jnp.float32)
        return jax.jit(lambda p, x: jax.lax.fori_loop(0, calls, lambda i, y: mlp_model_fn(module, p)(y, ts[i]), x))

    rows = []
    for name in names:
        try:
            smp = registry.build(name, schedule, args.nfe)
        except ValueError as err:
            progress.update(f"{name}: skipped ({err})")
            continue
        run = jax.jit(lambda p, x, smp=smp: sample(smp, mlp_model_fn(module, p), x).x)
        floor_run = chain(smp.nfe)
        total, floor = time_paired([lambda: run(params, x), lambda: floor_run(params, x)], repeats=args.repeats)
        floor /= smp.nfe
        rows.append([name, smp.nfe, 1e3 * total, 1e3 * floor, total / (smp.nfe * floor),
                     1e6 * (total - smp.nfe * floor) / smp.num_steps])
        progress.update(f"{name}: {rows[-1][-2]:.3f}")
    return rows


def diffusers_rows(module, params, x, methods, args, progress) -> list:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = (lambda out: torch.cuda.synchronize()) if device == "cuda" else (lambda out: None)
    net = torch_mlp(module, params, device)
    xt = torch.tensor(np.asarray(x), device=device)
    rows = []
    with torch.inference_mode():
        t_half = torch.tensor(0.5, device=device)
        chain = lambda: [net(xt, t_half) for _ in range(args.nfe)]
        for label, (make, steps, _) in methods.items():
            calls = [0]

            def model(inp, t):
                calls[0] += 1
                return net(inp, t.to(inp.dtype) / 1000.0 if torch.is_tensor(t) else t / 1000.0)

            def run():
                calls[0] = 0
                return diffusers_loop(make(steps(args.nfe), device), model, xt)

            total, floor = time_paired([run, chain], repeats=args.repeats, sync=sync)
            floor /= args.nfe
            num_steps = len(make(steps(args.nfe), device).timesteps)
            rows.append([f"diffusers {label}", calls[0], 1e3 * total, 1e3 * floor, total / (calls[0] * floor),
                         1e6 * (total - calls[0] * floor) / num_steps])
            progress.update(f"{label}: {rows[-1][-2]:.3f}")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", default="256,1024", help="comma-separated MLP widths, one table each")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--nfe", type=int, default=10)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--solvers", default="all", help="comma-separated registered names, or 'all'")
    p.add_argument("--no-diffusers", action="store_true")
    p.add_argument("--out", default="workdir/bench")
    args = p.parse_args()
    names = registry.names() if args.solvers == "all" else args.solvers.split(",")
    for n in names:
        if n not in registry.names():
            raise ValueError(f"--solvers entries must be among {registry.names()}, got {n!r}")
    widths = [int(h) for h in args.hidden.split(",")]
    methods = {} if args.no_diffusers else diffusers_methods()
    report = [f"# Sampler overhead\n\n{machine_lines()}\n"]
    print(report[0], flush=True)
    x = jax.random.normal(jax.random.PRNGKey(1), (args.batch, args.dim), jnp.float32)
    for hidden in widths:
        module = MLP(hidden=hidden, depth=args.depth)
        params = init_mlp(module, jax.random.PRNGKey(0), args.dim)
        progress = Progress(len(names) + len(methods), f"hidden {hidden} ")
        rows = jax_rows(module, params, x, names, args, progress)
        if methods:
            rows += diffusers_rows(module, params, x, methods, args, progress)
        table = markdown_table(["method", "model calls", "sampling (ms)", "one call (ms)",
                                "time / (calls x one call)", "sampler cost a step (us)"], rows)
        report.append(f"MLP dim {args.dim}, hidden {hidden}, depth {args.depth} ({param_count(params)} parameters), "
                      f"batch {args.batch}, float32, NFE {args.nfe}, median of {args.repeats} alternated runs\n\n"
                      f"{table}\n")
        print(f"\n{report[-1]}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "overhead.md"), "w") as f:
        f.write("\n".join(report))
    print(f"wrote {args.out}/overhead.md")


if __name__ == "__main__":
    main()
