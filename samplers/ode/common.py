"""Shared build-time pieces of the ODE solvers: argument checks and the model wrapper."""
from __future__ import annotations

from typing import Callable

from samplers.grids import TimeGrid
from samplers.param import as_prediction, check_prediction, dynamic_threshold
from samplers.schedules import Schedule

SPACES = ("x0", "eps", "velocity")


def check_order(order, allowed) -> int:
    if order not in allowed:
        raise ValueError(f"order must be one of {list(allowed)}, got {order!r}")
    return int(order)


def check_grid(grid) -> TimeGrid:
    if not isinstance(grid, TimeGrid):
        raise ValueError(f"grid must be a TimeGrid (see samplers.grids.time_grid), got {type(grid).__name__}")
    return grid


def check_choice(name: str, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def check_thresholding(options: dict) -> None:
    """Dynamic-thresholding options: keys in {ratio, max_value}, 0 < ratio <= 1, max_value >= 1."""
    unknown = set(options) - {"ratio", "max_value"}
    if unknown:
        raise ValueError(f"thresholding keys must be among ['max_value', 'ratio'], got {sorted(unknown)}")
    if not 0.0 < options.get("ratio", 0.995) <= 1.0:
        raise ValueError(f"thresholding ratio must be in (0, 1], got {options['ratio']!r}")
    if options.get("max_value", 1.0) < 1.0:
        raise ValueError(f"thresholding max_value must be >= 1, got {options['max_value']!r}")


def predictor(schedule: Schedule, predicts: str, space: str, thresholding: dict | None = None) -> Callable:
    """model_fn -> fn(x, t) giving the solver's ``space`` (x0 / eps / velocity), thresholded if asked."""
    check_prediction(predicts)
    check_choice("space", space, SPACES)
    if thresholding is not None:
        if space != "x0":
            raise ValueError("thresholding applies to data-prediction (x0) solvers only")
        check_thresholding(thresholding)

    def wrap(model_fn: Callable) -> Callable:
        fn = as_prediction(model_fn, schedule, predicts, space)
        if thresholding is None:
            return fn
        return lambda x, t: dynamic_threshold(fn(x, t), **thresholding)

    wrap.space = space  # read by engines that expose their step's model output (Transition)
    return wrap


def combine(coefs, terms):
    """sum_k coefs[k] * terms[k] for a short sequence (or stacked array) of terms, unrolled so
    that it fuses with the step's other element-wise work (no matrix-product kernel)."""
    return sum(coefs[k].astype(terms[k].dtype) * terms[k] for k in range(len(terms)))
