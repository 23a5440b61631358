"""Sampler overhead: wall time of a whole sampling run divided by (model calls x one model call).

Ours: ``jax.jit(sample)`` of every registered solver at NFE 10 with the MLP model
(``models.mlp.MLP``, batch 4096, dim 64, hidden 256 by default). Peers: diffusers' Python
sampling loop with each of its schedulers around the same MLP written in torch (the same
weights copied). "One call" is the model alone, measured as the time of ``--nfe`` chained
calls with one synchronisation at the end, divided by ``--nfe`` (for JAX: a jitted
``lax.fori_loop``, the loop a sampler runs in, holding the model only; for torch: eager
calls). A lone jitted call with its own dispatch and ``block_until_ready`` is also
printed: on a GPU its fixed latency exceeds the model's cost, so it is no floor there.
The ratio "time / (calls x one call)" is the sampler's overhead (goal for ours: < 1.05).
All in float32, on the GPU when JAX and torch see one; scheduler set-up
(``set_timesteps``, our coefficient tables) is not timed.

    python bench/overhead.py [--dim 64] [--batch 4096] [--hidden 256] [--depth 3] [--nfe 10] [--repeats 10]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import (Progress, diffusers_loop, diffusers_methods, machine_lines, markdown_table,  # noqa: E402
                          time_call)
from models.mlp import MLP, init_mlp, mlp_model_fn, param_count  # noqa: E402
from samplers import registry  # noqa: E402
from samplers.core import sample  # noqa: E402
from samplers.schedules import vp_linear  # noqa: E402


def torch_mlp(module: MLP, params, device):
    """The flax ``MLP`` (Fourier time embedding) as a torch module with the same weights."""
    import torch

    if module.time_embedding != "fourier":
        raise ValueError("the torch twin implements time_embedding='fourier' only")

    class TorchMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w", torch.tensor(np.asarray(params["fourier_w"])))
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--nfe", type=int, default=10)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--solvers", default="all", help="comma-separated registered names, or 'all'")
    p.add_argument("--no-diffusers", action="store_true")
    p.add_argument("--out", default="workdir/bench")
    args = p.parse_args()
    names = registry.names() if args.solvers == "all" else args.solvers.split(",")
    for n in names:
        if n not in registry.names():
            raise ValueError(f"--solvers entries must be among {registry.names()}, got {n!r}")
    print(f"# Sampler overhead\n\n{machine_lines()}\n", flush=True)

    module = MLP(hidden=args.hidden, depth=args.depth)
    params = init_mlp(module, jax.random.PRNGKey(0), args.dim)
    x = jax.random.normal(jax.random.PRNGKey(1), (args.batch, args.dim), jnp.float32)
    schedule = vp_linear()
    call = jax.jit(lambda p, x, t: mlp_model_fn(module, p)(x, t))
    lone = time_call(call, params, x, jnp.float32(0.5), repeats=args.repeats)
    ts = jnp.linspace(1.0, 1e-3, args.nfe, dtype=jnp.float32)
    chain = jax.jit(lambda p, x: jax.lax.fori_loop(0, args.nfe, lambda i, y: mlp_model_fn(module, p)(y, ts[i]), x))
    floor = time_call(chain, params, x, repeats=args.repeats) / args.nfe
    print(f"JAX model call: {1e3 * floor:.3f} ms in a loop, {1e3 * lone:.3f} ms alone", flush=True)
    setting = (f"MLP dim {args.dim}, hidden {args.hidden}, depth {args.depth} ({param_count(params)} parameters), "
               f"batch {args.batch}, float32, NFE {args.nfe}, median of {args.repeats}")
    rows = []
    methods = {} if args.no_diffusers else diffusers_methods()
    progress = Progress(len(names) + len(methods), "methods ")
    for name in names:
        try:
            smp = registry.build(name, schedule, args.nfe)
        except ValueError as err:
            progress.update(f"{name}: skipped ({err})")
            continue
        run = jax.jit(lambda p, x, smp=smp: sample(smp, mlp_model_fn(module, p), x).x)
        total = time_call(run, params, x, repeats=args.repeats)
        rows.append([name, smp.nfe, 1e3 * total, 1e3 * floor, total / (smp.nfe * floor)])
        progress.update(f"{name}: {rows[-1][-1]:.3f}")

    if methods:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        net = torch_mlp(module, params, device)
        xt = torch.tensor(np.asarray(x), device=device)
        with torch.inference_mode():
            gap = float(torch.max(torch.abs(net(xt, 0.5).cpu() - torch.tensor(np.asarray(call(params, x, 0.5))))))
            t_half = torch.tensor(0.5, device=device)
            lone_t = time_call(net, xt, t_half, repeats=args.repeats, sync=lambda out: sync())
            floor_t = time_call(lambda: [net(xt, t_half) for _ in range(args.nfe)], repeats=args.repeats,
                                sync=lambda out: sync()) / args.nfe
            print(f"torch twin vs flax MLP: max |difference| {gap:.2e}; torch model call: {1e3 * floor_t:.3f} ms "
                  f"in a loop, {1e3 * lone_t:.3f} ms alone", flush=True)
            for label, (make, steps, _) in methods.items():
                calls = [0]

                def model(inp, t):
                    calls[0] += 1
                    return net(inp, t.to(inp.dtype) / 1000.0 if torch.is_tensor(t) else t / 1000.0)

                times = []
                for _ in range(args.repeats + 1):  # the first run warms up
                    sched = make(steps(args.nfe), device)
                    calls[0] = 0
                    sync()
                    t0 = time.perf_counter()
                    diffusers_loop(sched, model, xt)
                    sync()
                    times.append(time.perf_counter() - t0)
                total = statistics.median(times[1:])
                rows.append([f"diffusers {label}", calls[0], 1e3 * total, 1e3 * floor_t, total / (calls[0] * floor_t)])
                progress.update(f"{label}: {rows[-1][-1]:.3f}")

    table = markdown_table(["method", "model calls", "sampling (ms)", "one call (ms)", "time / (calls x one call)"],
                           rows)
    print(f"\n{setting}\n\n{table}\n", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "overhead.md"), "w") as f:
        f.write(f"# Sampler overhead\n\n{machine_lines()}\n\n{setting}\n\n{table}\n")
    print(f"wrote {args.out}/overhead.md")


if __name__ == "__main__":
    main()
