"""Train-step throughput (images/s): our jitted JAX step against the same step in PyTorch, in one run.

One step = noise the batch at random times, the network's loss, backward, global-norm clipping,
Adam, EMA of the parameters -- ``train.loop.make_train_step`` on every local device for JAX,
the same sequence for torch (``torch.optim.Adam``, ``clip_grad_norm_``, ``_foreach_lerp_``).

Rows:
* digits: configs/digits.py's MLP (512 x 4, Fourier time features) on 8x8 digits, against a
  torch MLP of the same layers;
* CIFAR-10 DDPM: our UNet built from diffusers' ``google/ddpm-cifar10-32`` config (35.7M
  parameters, ``models.convert.unet_kwargs_from_diffusers``), against diffusers' ``UNet2DModel``
  of that config;
* CIFAR-10 DDPM++ (configs/dpm_cifar.py's network): JAX only, diffusers has no such model.

    python bench/train_throughput.py [--cifar-batch N] [--repeats N]

On CPU the CIFAR batch defaults to 8 (the recipe's 128 on an accelerator). Prints the machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import machine_lines, markdown_table  # noqa: E402
from configs import digits, dpm_cifar  # noqa: E402
from models.common import fourier_frequencies, param_count  # noqa: E402
from train import distributed  # noqa: E402
from train.config import build_network, build_objective, validate  # noqa: E402
from train.loop import init_state, keys, make_train_step, shard_step  # noqa: E402
from train.optim import make_optimizer  # noqa: E402
from models.convert import DDPM_CIFAR10  # noqa: E402



def timed(step, repeats: int, sync) -> float:
    """Seconds per call of ``step`` after 2 warm-up calls (the first compiles)."""
    for _ in range(2):
        sync(step())
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = step()
    sync(out)
    return (time.perf_counter() - t0) / repeats


def jax_rate(config, batch: int, repeats: int) -> tuple[float, int]:
    """(images/s, parameters) of the JAX train step of ``config`` at global batch ``batch``."""
    config = validate(config)
    network, objective = build_network(config), build_objective(config)
    tx, _ = make_optimizer(config.train)
    mesh = distributed.make_mesh(jax.local_devices())
    init_key, train_key = keys(config.seed)
    holder = {"state": jax.jit(lambda k: init_state(network, tx, k), out_shardings=distributed.replicated(mesh))(
        init_key)}
    step_fn = shard_step(make_train_step(network, objective, tx, train_key, config.train.ema_decay), mesh)
    x = np.random.default_rng(0).uniform(-1, 1, (batch, *network.event_shape)).astype(np.float32)
    x = distributed.global_batch(x, mesh)

    def step():
        holder["state"], metrics = step_fn(holder["state"], x)
        return metrics["loss"]

    seconds = timed(step, repeats, jax.block_until_ready)
    return batch / seconds, param_count(holder["state"].params)


def torch_rate(model, shape, batch: int, repeats: int, device: str, call) -> tuple[float, int]:
    """(images/s, parameters) of the same step in torch: VP noising, eps MSE, clip, Adam, EMA."""
    import torch

    model = model.to(device)
    params = [p for p in model.parameters()]
    opt = torch.optim.Adam(params, lr=1e-4)
    ema = [p.detach().clone() for p in params]
    x0 = torch.rand((batch, *shape), device=device) * 2 - 1

    def step():
        t = torch.rand(batch, device=device) * (1 - 1e-3) + 1e-3
        log_alpha = -0.25 * t**2 * 19.9 - 0.05 * t
        a = torch.exp(log_alpha).view(-1, *[1] * len(shape))
        s = torch.sqrt(1 - a**2)
        noise = torch.randn_like(x0)
        loss = torch.mean((call(model, a * x0 + s * noise, t) - noise) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1e-3)
        return loss

    sync = (lambda _: torch.cuda.synchronize()) if device == "cuda" else (lambda out: out.item())
    seconds = timed(step, repeats, sync)
    return batch / seconds, sum(p.numel() for p in params)


class TorchMLP:
    """The torch twin of ``models.mlp.MLP`` (Fourier time features with the same constant frequencies,
    ``models.common.fourier_frequencies``; concat, Dense+SiLU x depth, Dense)."""

    @staticmethod
    def build(dim: int, hidden: int, depth: int, embed_dim: int, fourier_scale: float, fourier_seed: int = 0):
        import torch
        from torch import nn

        class MLP(nn.Module):
            def __init__(self):
                super().__init__()
                w = fourier_frequencies(embed_dim, fourier_scale, fourier_seed).astype(np.float32)
                self.register_buffer("w", torch.tensor(w))
                layers, width = [], dim + embed_dim
                for _ in range(depth):
                    layers += [nn.Linear(width, hidden), nn.SiLU()]
                    width = hidden
                self.net = nn.Sequential(*layers, nn.Linear(width, dim))

            def forward(self, x, t):
                args = 2 * torch.pi * t[:, None] * self.w[None]
                h = torch.cat([x.flatten(1), torch.sin(args), torch.cos(args)], 1)
                return self.net(h).view_as(x)

        return MLP()


def main() -> None:
    on_cpu = jax.default_backend() == "cpu"
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar-batch", type=int, default=8 if on_cpu else 128)
    parser.add_argument("--repeats", type=int, default=5 if on_cpu else 20)
    args = parser.parse_args()

    import torch
    from diffusers import UNet2DModel

    from models.convert import unet_kwargs_from_diffusers

    device = "cuda" if torch.cuda.is_available() and not on_cpu else "cpu"
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    rows = []

    d = digits.get_config()
    batch = d.train.batch_size
    j, nj = jax_rate(d, batch, args.repeats * 10)
    kw = d.model.kwargs
    t, nt = torch_rate(TorchMLP.build(64, kw.hidden, kw.depth, kw.embed_dim, kw.fourier_scale,
                                      kw.get("fourier_seed", 0)), (1, 8, 8), batch,
                       args.repeats * 10, device, lambda m, x, tt: m(x, tt))
    rows.append(["digits MLP (configs/digits.py)", batch, f"{nj:,} / {nt:,}", j, t, j / t])
    print(f"digits: JAX {j:.0f} images/s, torch {t:.0f} images/s", flush=True)

    c = dpm_cifar.get_config()
    c.mode = "sample"  # no CIFAR-10 files are read: the step runs on random images
    c.model.name, c.model.kwargs = "unet", unet_kwargs_from_diffusers(DDPM_CIFAR10)
    j, nj = jax_rate(c, args.cifar_batch, args.repeats)
    unet = UNet2DModel(**DDPM_CIFAR10)
    t, nt = torch_rate(unet, (3, 32, 32), args.cifar_batch, args.repeats, device,
                       lambda m, x, tt: m(x, tt * 999).sample)
    rows.append(["CIFAR-10 DDPM UNet (google/ddpm-cifar10-32)", args.cifar_batch, f"{nj:,} / {nt:,}", j, t, j / t])
    print(f"CIFAR-10 DDPM: JAX {j:.1f} images/s, torch {t:.1f} images/s", flush=True)

    c = dpm_cifar.get_config()
    c.mode = "sample"
    j, nj = jax_rate(c, args.cifar_batch, args.repeats)
    rows.append(["CIFAR-10 DDPM++ (configs/dpm_cifar.py)", args.cifar_batch, f"{nj:,} / -", j, None, None])

    print(f"## train-step throughput, JAX ({jax.default_backend()}, {len(jax.local_devices())} device(s)) vs "
          f"torch ({device}, {torch.get_num_threads()} threads)\n")
    print(machine_lines())
    print()
    print(markdown_table(["network", "batch", "params (ours / torch)", "JAX images/s", "torch images/s",
                          "JAX / torch"], rows))


if __name__ == "__main__":
    main()
