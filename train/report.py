"""Console and file output shared by the train loop, ``launch.py`` and the benchmarks.

* ``Progress``: the one progress line of the project (count, percentage, rate, elapsed, ETA; no tqdm).
* ``fmt``, ``markdown_table``: GitHub-markdown tables of results.
* ``plot_error_vs_nfe``: the log-log plot of a solver's error against its number of model calls.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable, Iterable, Sequence

import numpy as np


def fmt_time(seconds: float) -> str:
    """``H:MM:SS``; ``?`` for an unknown (non-finite) time."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """``{label}[done/total] pct | rate | elapsed ETA | note``, printed at each ``update``.

    ``unit`` names what is counted (``it``: items or steps); with ``per_unit=(n, name)`` the line also
    shows ``n x rate`` of ``name`` (e.g. images/s at batch n). With ``skip_first`` the rate counts from
    the first update on (the first item's time is compile time, e.g. a jitted train step's), otherwise
    from construction. With ``inplace`` the line is rewritten in place on a terminal (one line per
    update elsewhere, e.g. in a log file).
    """

    def __init__(self, total: int, label: str = "", stream=None, done: int = 0, unit: str = "it",
                 per_unit: tuple[int, str] | None = None, skip_first: bool = False, inplace: bool = False):
        if total < 1:
            raise ValueError(f"total must be >= 1, got {total!r}")
        self.total, self.label, self.done, self.unit, self.per_unit = total, label, done, unit, per_unit
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self._origin = None if skip_first else (done, self.t0)  # (count, time) the rate counts from
        self.inplace = inplace and hasattr(self.stream, "isatty") and self.stream.isatty()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def advance(self, done: int) -> float:
        """Set the count to ``done``; the current rate (per second; NaN until it can be measured)."""
        self.done = done
        now = time.perf_counter()
        if self._origin is None:
            self._origin = (done, now)
            return float("nan")
        count, dt = done - self._origin[0], now - self._origin[1]
        return count / dt if dt > 0 and count > 0 else float("nan")

    def show(self, rate: float, note: str = "") -> None:
        """Print the line for the current count at ``rate``."""
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        width = len(str(self.total))
        known = math.isfinite(rate)
        speed = f"{rate:.2f} {self.unit}/s" if known else f"? {self.unit}/s"
        if self.per_unit is not None:
            speed += f" {rate * self.per_unit[0]:.0f} {self.per_unit[1]}/s" if known else f" ? {self.per_unit[1]}/s"
        line = (f"{self.label}[{self.done:>{width}}/{self.total}] {100.0 * self.done / self.total:5.1f}% | {speed} | "
                f"elapsed {fmt_time(self.elapsed)} ETA {fmt_time(eta)}" + (f" | {note}" if note else ""))
        final = self.done >= self.total
        print(("\r" if self.inplace else "") + line, end="\n" if final or not self.inplace else "", file=self.stream,
              flush=True)

    def update(self, note: str = "", n: int = 1) -> None:
        """Count ``n`` more finished items and print the line."""
        self.show(self.advance(self.done + n), note)


# -- tables -----------------------------------------------------------------------------------------

def fmt(value, digits: int = 3) -> str:
    """A table cell: floats in 3 significant digits, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence], digits: int = 3) -> str:
    """A GitHub-markdown table with right-aligned columns after the first; cells by ``fmt(cell, digits)``."""
    cells = [[fmt(c, digits) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in cells])


# -- plots ------------------------------------------------------------------------------------------

def plot_error_vs_nfe(curves: dict, path: str, title: str = "", dashed: Callable[[str], bool] = lambda label: False,
                      ylabel: str = "RMS error vs exact PF-ODE solution") -> None:
    """Log-log plot of RMS error against NFE; ``curves[label] = (nfes, errors)``; ``dashed(label)``
    picks the curves drawn dashed (e.g. a peer library's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = plt.get_cmap("tab20").colors
    for i, (label, (nfes, errs)) in enumerate(curves.items()):
        nfes, errs = np.asarray(nfes, float), np.asarray(errs, float)
        ok = np.isfinite(errs) & (errs > 0)
        if ok.any():
            ax.loglog(nfes[ok], errs[ok], "--" if dashed(label) else "-", color=colors[i % len(colors)],
                      marker="o", ms=3, label=label)
    ax.set_xlabel("NFE (model calls)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
