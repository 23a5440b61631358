"""Build-time checks of scalar arguments: each returns the value as a Python number or raises a
ValueError that names the argument and the allowed values (bools and strings are not numbers)."""
from __future__ import annotations

import numpy as np


def _real(value):
    """``value`` as a float if it is a real scalar (Python or numpy, 0-d arrays included), else None."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return None
    try:
        a = np.asarray(value)
    except Exception:  # a traced value, an object numpy cannot take
        return None
    if a.ndim != 0 or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        return None
    return float(a)


def check_int(name: str, value, minimum: int = 1) -> int:
    """An integer (Python or numpy) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(name: str, value, lo: float | None = None, hi: float | None = None, open_lo: bool = False) -> float:
    """A finite real number in [lo, hi] ((lo, hi] with ``open_lo``; a missing bound is unbounded)."""
    v = _real(value)
    if v is None:
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not np.isfinite(v) or (lo is not None and (v <= lo if open_lo else v < lo)) or (hi is not None and v > hi):
        rng = f"{'(' if open_lo else '['}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ValueError(f"{name} must lie in {rng}, got {value!r}")
    return v


def check_positive(name: str, value) -> float:
    """A finite real number > 0."""
    return check_number(name, value, 0.0, open_lo=True)
