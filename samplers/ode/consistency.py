"""Multistep consistency sampling (Song et al. 2023, Algorithm 1) of a consistency model f(x, t) -> x0
(any model works: its prediction is converted to x0, so for a diffusion model this is "denoise, then
re-noise to the next level").

Step i on the grid t_0 > t_1 > ... > t_n:

    x0 = f(x_i, t_i);   x_{i+1} = alpha(t_{i+1}) x0 + sigma(t_{i+1}) z,   z ~ N(0, I),

and the last step returns x0 itself (noise-free: the grid's last point only closes the grid),
so one step is the one-step sample f(x_T, T) and n steps spend n model calls. The paper's
re-noising x0 + sqrt(t_{i+1}^2 - eps^2) z on the EDM schedule differs from this by eps^2 = 4e-6
in variance. Multistep consistency models (Heek et al. 2024) are sampled by DDIM on their
segment boundaries instead (``samplers.ode.ddim`` with ``predicts="x0"``).
"""
from __future__ import annotations

from samplers.core import Sampler, Transition, basic_init, gaussian_step, take_rows
from samplers.grids import TimeGrid
from samplers.ode.common import check_grid, predictor
from samplers.schedules import Schedule


def consistency(schedule: Schedule, grid: TimeGrid, predicts: str = "x0") -> Sampler:
    """The multistep consistency sampler on ``grid`` (``grid.num_steps`` model calls); a consistency
    model predicts x0 (``predicts="x0"``)."""
    check_grid(grid)
    n = grid.num_steps
    wrap = predictor(schedule, predicts, "x0")
    a_next, s_next = grid.alpha[1:].copy(), grid.sigma[1:].copy()
    a_next[-1], s_next[-1] = 1.0, 0.0  # the last step returns x0
    t_model = grid.t[:-1]

    def transition(state, model_fn):
        t, a, s = take_rows(state.i, state.x.dtype, t_model, a_next, s_next)
        x0 = wrap(model_fn)(state.x, t)
        nxt = state.replace(x=a * x0, i=state.i + 1, nfe=state.nfe + 1)
        return Transition(a * x0, s, x0, a, t, "x0", nxt)

    return Sampler(basic_init, gaussian_step(transition), n, n, transition)

