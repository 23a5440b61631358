"""DC-Solver (Zhao et al. 2024, "DC-Solver: Improving Predictor-Corrector Diffusion Sampler via Dynamic
Compensation") on UniPC (data prediction, ``samplers.ode.unipc``).

Before the predictor of step i >= 2 the model output m_i is replaced by the Lagrange interpolant (the
reference code's ``dc_order`` = 2) through the last three outputs (t_i, m_i), (t_{i-1}, m'_{i-1}),
(t_{i-2}, m'_{i-2}) at the model time (the reference code's continuous time is affine in it, which leaves the
interpolant unchanged)

    tau_i = rho_i t_i + (1 - rho_i) t_{i-1},

so rho_i = 1 is UniPC itself (exactly: the weights are then 1, 0, 0). As in the reference code the
compensated m'_i also takes m_i's place in the history, read by the next steps' predictor and corrector;
the corrector's new node stays the raw output at the predicted point. The interpolant is linear in the
outputs, so the method is UniPC's tables plus the compensation table of ``linear_multistep``.

The ratios are searched as the reference code does, greedily step by step against a teacher's
trajectory (the exact PF-ODE at the grid's points, ``samplers.reference.pf_ode_trajectory``): rho_i
minimises the mean squared distance of the (corrected) x_{i+1} to the teacher's, the earlier ratios
fixed (``fit_rho``). The reference code uses AdamW (lr 0.1, 40 iterations) on about 10 draws; here
rho_i is the best of a grid of candidates in [1 - bound, 1 + bound], refined once around the best
(deterministic, no step size), and the step-wise ratios are then shrunk towards 1, rho = 1 + s (rho* - 1),
with s in ``SHRINK`` chosen on separate validation draws by the final RMS error (s = 0 is UniPC), which
guards against ratios that fit the search draws only. An artefact {"t": model times, "rho", "rho_searched"
(before shrinking), "base": "unipc" or "unipc_3", "shrink", "rms_val_init", "rms_val"} is saved with
``learnt_grid.save_grid`` and becomes a ``Sampler`` with ``dc_sampler``.

Cascade polynomial regression (CPR, the paper's Sec. 3.3 and the reference code's
``cascade_polynomial_regression``) carries searched ratios to budgets N and guidance scales g that were not
searched: with x = (i + 1) / N, n = N / 50 and w = g / 12 (the reference code's normalisations),

    rho_i = sum_{k <= degree} a_k x^k,   a_k = sum_{l, m <= 2} c_klm n^l w^m   (2 <= i < N - 1),

fitted by least squares to the searched ratios of several artefacts (``fit_cpr``; without guidance the w
terms are dropped). One departure: the last step's ratio (the step to sigma = 0, whose compensation
extrapolates the x0-prediction towards t = 0) has its own quadratic in (n, w), because a low-degree
polynomial in x cannot follow its jump (measured in the README). ``cpr_artefact`` evaluates the regression at
a new (N, g) and chooses the shrinkage on validation draws as ``fit_rho`` does, giving an artefact for
``dc_sampler``.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplers.checks import check_int, check_number
from samplers.core import Sampler, sample
from samplers.grids import TimeGrid, time_grid
from samplers.ode.common import check_choice, check_grid, check_order, predictor
from samplers.ode.multistep import linear_multistep
from samplers.ode.unipc import VARIANTS, unipc_coefficients
from samplers.schedules import Schedule

BASES = {"unipc": 2, "unipc_3": 3}  # the registry's UniPC names (bh2) -> order
SHRINK = (0.0, 0.25, 0.5, 0.75, 1.0)  # validation choices of s in rho = 1 + s (rho* - 1)


def lagrange_weights(t, tq, xp=np):
    """Weights of (m(t[0]), m(t[1]), m(t[2])) in the quadratic interpolant at ``tq``."""
    t0, t1, t2 = t
    return xp.stack([(tq - t1) * (tq - t2) / ((t0 - t1) * (t0 - t2)),
                     (tq - t0) * (tq - t2) / ((t1 - t0) * (t1 - t2)),
                     (tq - t0) * (tq - t1) / ((t2 - t0) * (t2 - t1))])


def compensation_table(grid: TimeGrid, rho, xp=np):
    """The engine's compensation table D (N, 3): rows 0 and 1 (fewer than three outputs) are (1, 0, 0)."""
    t = grid.t
    rows = [xp.asarray([1.0, 0.0, 0.0])] * min(2, grid.num_steps)
    for i in range(2, grid.num_steps):
        tq = t[i] * rho[i] + t[i - 1] * (1 - rho[i])
        rows.append(lagrange_weights((t[i], t[i - 1], t[i - 2]), tq, xp))
    return xp.stack(rows)


def unipc_tables(grid: TimeGrid, order: int, variant: str):
    """UniPC's (A, B, (Ac, C, cn)) in data prediction, B and C padded to the 2 past outputs DC reads."""
    A, B, (ac, C, cn) = unipc_coefficients(grid, order, variant, True, True, True)
    pad = lambda table: np.pad(table, ((0, 0), (0, max(0, 2 - table.shape[1]))))
    return A, pad(B), (ac, pad(C), cn)


def _check(grid: TimeGrid, order: int, variant: str) -> int:
    check_grid(grid)
    order = check_order(order, (1, 2, 3))
    check_choice("variant", variant, VARIANTS)
    if grid.num_steps < 3:
        raise ValueError(f"DC-Solver compensates from the third step on: the grid needs num_steps >= 3, "
                         f"got {grid.num_steps}")
    return order


def dc_solver(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", *, rho=None, order: int = 2,
              variant: str = "bh2") -> Sampler:
    """UniPC-``order`` (``variant``, data prediction, corrector, lower_order_final) with dynamic compensation
    ratios ``rho`` (one per step; rows 0 and 1 are not read; None: all ones, UniPC itself)."""
    order = _check(grid, order, variant)
    rho = np.ones(grid.num_steps) if rho is None else np.asarray(rho, np.float64)
    if rho.shape != (grid.num_steps,) or not np.all(np.isfinite(rho)):
        raise ValueError(f"rho must be {grid.num_steps} finite numbers (one per step), got {rho!r}")
    A, B, corr = unipc_tables(grid, order, variant)
    return linear_multistep(grid, predictor(schedule, predicts, "x0"), A, B, corr,
                            compensation=compensation_table(grid, rho))


def _trajectories(schedule: Schedule, model_fn: Callable, grid: TimeGrid, order: int, predicts: str):
    """jit(rhos (C, N), x (B, D)) -> corrected states x_1..x_N (C, N, B, D) of the compensated UniPC."""
    A, B, corr = unipc_tables(grid, order, "bh2")
    wrap = predictor(schedule, predicts, "x0")

    def one(rho, x):
        smp = linear_multistep(grid, wrap, A, B, corr, compensation=compensation_table(grid, rho, jnp))
        _, (xc, xn) = sample(smp, model_fn, x, trajectory=lambda s: (s.x_prev, s.x))
        return jnp.concatenate([xc[1:], xn[-1:]])  # x_prev after step j is the corrected x_j

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def fit_rho(schedule: Schedule, model_fn: Callable, grid: TimeGrid, x_train, teacher_train, x_val, exact_val, *,
            base: str = "unipc", predicts: str = "eps", bound: float = 0.5, candidates: int = 41) -> dict:
    """Search the ratios (module docstring) on ``x_train`` (B, D) with the teacher's states at every point of
    ``grid`` after the first, ``teacher_train`` (N, B, D); choose the shrinkage by the final RMS error on
    ``x_val`` against ``exact_val``. Returns the artefact with "rms_val_init" (UniPC) and "rms_val"."""
    check_choice("base", base, sorted(BASES))
    order = BASES[base]
    _check(grid, order, "bh2")
    n = grid.num_steps
    bound, candidates = check_number("bound", bound, 0.0, 1.0, open_lo=True), check_int("candidates", candidates, 3)
    teacher_train = np.asarray(teacher_train)
    if teacher_train.shape != (n,) + np.shape(x_train):
        raise ValueError(f"teacher_train must be the teacher's states at the grid's {n} later points, shape "
                         f"{(n,) + np.shape(x_train)}, got {teacher_train.shape}")
    run = _trajectories(schedule, model_fn, grid, order, predicts)
    x_train = jnp.asarray(x_train)
    rho = np.ones(n)
    offsets = np.linspace(-bound, bound, candidates)
    for i in range(2, n):
        centre, width = 1.0, 1.0
        for _ in range(2):  # a grid over [1 - bound, 1 + bound], then one over the best cell
            cand = np.repeat(rho[None], candidates, 0)
            cand[:, i] = np.clip(centre + width * offsets, 1 - bound, 1 + bound)
            states = np.asarray(run(jnp.asarray(cand, x_train.dtype), x_train)[:, i], np.float64)
            loss = np.mean((states - teacher_train[i]) ** 2, axis=(1, 2))
            loss = np.where(np.isfinite(loss), loss, np.inf)
            centre, width = cand[int(np.argmin(loss)), i], 2.0 / (candidates - 1)
        rho[i] = centre
    return _shrunk(run, grid, rho, base, x_val, exact_val)


def _shrunk(run, grid: TimeGrid, rho, base: str, x_val, exact_val) -> dict:
    """The artefact of ratios ``rho`` shrunk by the s in ``SHRINK`` of least final RMS error on ``x_val``."""
    x_val = jnp.asarray(x_val)
    shrunk = np.stack([1.0 + s * (rho - 1.0) for s in SHRINK])
    finals = np.asarray(run(jnp.asarray(shrunk, x_val.dtype), x_val)[:, -1], np.float64)
    val = np.sqrt(np.mean((finals - np.asarray(exact_val, np.float64)) ** 2, axis=(1, 2)))
    best = int(np.argmin(np.where(np.isfinite(val), val, np.inf)))
    return {"t": np.asarray(grid.t[:-1]), "rho": shrunk[best], "rho_searched": np.asarray(rho, np.float64),
            "base": base, "shrink": SHRINK[best], "rms_val_init": float(val[0]), "rms_val": float(val[best])}


NFE_UNIT, GUIDANCE_UNIT = 50.0, 12.0  # the reference code's normalisations of N and g in CPR


def _cpr_terms(nfe: int, guidance, degree: int):
    """(rows (N - 3, P) of the steps 2..N-2, row (Q,) of the last step) of CPR's features at (N, g)."""
    nw = np.outer((nfe / NFE_UNIT) ** np.arange(3),
                  [1.0] if guidance is None else (guidance / GUIDANCE_UNIT) ** np.arange(3)).ravel()
    x = (np.arange(2, nfe - 1) + 1.0) / nfe
    return (x[:, None, None] ** np.arange(degree + 1)[None, :, None] * nw[None, None]).reshape(len(x), -1), nw


def fit_cpr(artefacts, guidance=None, degree: int = 2) -> dict:
    """CPR (module docstring) fitted to the ``"rho_searched"`` of ``fit_rho`` artefacts of one base (and, with
    ``guidance``, one scale per artefact). An artefact whose validation kept shrink = 0 (its searched ratios did
    worse than UniPC on fresh draws) is left out; the rest must span three or more budgets (and scales).
    Returns {"base", "degree", "coef", "coef_last", "lo", "hi"}; predictions are clipped to the searched
    range [lo, hi]."""
    artefacts = list(artefacts)
    if not artefacts:
        raise ValueError("artefacts must hold fit_rho artefacts, got none")
    bases = {a["base"] for a in artefacts}
    if len(bases) != 1:
        raise ValueError(f"artefacts must share one base, got {sorted(bases)}")
    degree = check_int("degree", degree, 0)
    if guidance is not None:
        guidance = [float(g) for g in guidance]
        if len(guidance) != len(artefacts) or not np.all(np.isfinite(guidance)):
            raise ValueError(f"guidance must be one finite scale per artefact ({len(artefacts)}), got {guidance!r}")
    scales = [None] * len(artefacts) if guidance is None else guidance
    kept = [(a, g) for a, g in zip(artefacts, scales) if float(a["shrink"]) > 0]
    artefacts, scales = [a for a, _ in kept], [g for _, g in kept]
    nfes = [len(a["rho_searched"]) for a in artefacts]
    if len(set(nfes)) < 3 or (guidance is not None and len(set(scales)) < 3):
        raise ValueError(f"CPR's quadratics need artefacts with shrink > 0 at >= 3 budgets"
                         f"{' and >= 3 guidance scales' * (guidance is not None)}, got budgets {sorted(set(nfes))}"
                         + (f", scales {sorted(set(scales))}" if guidance is not None else ""))
    rows, last_rows, ys, last_ys = [], [], [], []
    for a, n, g in zip(artefacts, nfes, scales):
        body, last = _cpr_terms(n, g, degree)
        rows.append(body), last_rows.append(last)
        ys.append(np.asarray(a["rho_searched"], np.float64)[2:n - 1]), last_ys.append(a["rho_searched"][n - 1])
    rows, ys, last_rows = np.concatenate(rows), np.concatenate(ys), np.stack(last_rows)
    for table, what in ((rows, f"CPR of degree {degree}"), (last_rows, "the last step's quadratic")):
        if np.linalg.matrix_rank(table) < table.shape[1]:
            raise ValueError(f"the searched budgets {sorted(set(nfes))}"
                             + (f" and scales {sorted(set(scales))}" if guidance is not None else "")
                             + f" cannot determine {what} ({table.shape[1]} coefficients): search more "
                             "(budget, scale) pairs or lower the degree")
    last_ys = np.asarray(last_ys, np.float64)
    return {"base": bases.pop(), "degree": float(degree), "coef": np.linalg.lstsq(rows, ys, rcond=None)[0],
            "coef_last": np.linalg.lstsq(last_rows, last_ys, rcond=None)[0],
            "lo": float(min(ys.min(), last_ys.min())), "hi": float(max(ys.max(), last_ys.max()))}


def cpr_ratios(cpr: dict, nfe: int, guidance=None) -> np.ndarray:
    """The N ratios CPR predicts at budget ``nfe`` (and ``guidance``, when it was fitted with scales)."""
    nfe = check_int("nfe", nfe, 3)
    guided = len(cpr["coef_last"]) == 9
    if guided != (guidance is not None):
        raise ValueError(f"guidance must be {'a scale' if guided else 'None'}: this CPR was fitted "
                         f"{'with' if guided else 'without'} guidance scales, got {guidance!r}")
    body, last = _cpr_terms(nfe, None if guidance is None else float(guidance), int(cpr["degree"]))
    rho = np.concatenate([body @ cpr["coef"], [last @ cpr["coef_last"]]])
    return np.concatenate([np.ones(2), np.clip(rho, cpr["lo"], cpr["hi"])])


def cpr_artefact(schedule: Schedule, model_fn: Callable, grid: TimeGrid, cpr: dict, x_val, exact_val, *,
                 guidance=None, predicts: str = "eps") -> dict:
    """A ``dc_sampler`` artefact on ``grid`` from CPR's ratios at its budget (and ``guidance``), shrunk on
    ``x_val`` against the exact end points ``exact_val`` as ``fit_rho`` does (``model_fn`` is the guided
    model at that scale)."""
    check_choice("cpr base", cpr["base"], sorted(BASES))
    order = BASES[cpr["base"]]
    _check(grid, order, "bh2")
    rho = cpr_ratios(cpr, grid.num_steps, guidance)
    return _shrunk(_trajectories(schedule, model_fn, grid, order, predicts), grid, rho, cpr["base"], x_val, exact_val)


def dc_sampler(schedule: Schedule, artefact: dict, predicts: str = "eps") -> Sampler:
    """The compensated UniPC of an artefact of ``fit_rho`` (its model times, then sigma = 0)."""
    check_choice("artefact base", artefact["base"], sorted(BASES))
    grid = time_grid(schedule, timesteps=np.asarray(artefact["t"], np.float64), final="zero")
    return dc_solver(schedule, grid, predicts, rho=artefact["rho"], order=BASES[artefact["base"]])

