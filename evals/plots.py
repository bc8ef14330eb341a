"""Plots as base64 PNGs (matplotlib, Agg backend: no display, no files), for self-contained
HTML reports."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure as MplFigure

Bar = tuple[str, float | None, float | None, float | None]  # label, value, low, high


def to_base64(fig: MplFigure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _draw_bars(ax: plt.Axes, bars: Sequence[Bar], xlim: tuple[float, float] | None) -> None:
    shown = [b for b in bars if b[1] is not None]
    labels = [b[0] for b in shown]
    values = [float(b[1]) for b in shown]  # type: ignore[arg-type]
    # Clipped at 0: an interval end may sit a rounding error inside its estimate.
    lows = [
        max(0.0, v - (b[2] if b[2] is not None else v)) for v, b in zip(values, shown, strict=True)
    ]
    highs = [
        max(0.0, (b[3] if b[3] is not None else v) - v) for v, b in zip(values, shown, strict=True)
    ]
    colors = ["#2a7ab9" if v >= 0 else "#c0504d" for v in values]
    ax.barh(labels, values, xerr=[lows, highs], color=colors, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    if xlim:
        ax.set_xlim(*xlim)


def hbar_panels(
    panels: Sequence[tuple[str, Sequence[Bar]]],
    *,
    xlabel: str,
    xlim: tuple[float, float] | None = (-1.05, 1.05),
) -> str:
    """One horizontal bar chart per panel, side by side (e.g. the five theories)."""
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False)
    for ax, (title, bars) in zip(axes[0], panels, strict=False):
        _draw_bars(ax, bars, xlim)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
    fig.tight_layout()
    return to_base64(fig)


def grouped_rates(
    groups: Sequence[str], series: Mapping[str, Sequence[Bar]], *, ylabel: str
) -> str:
    """Vertical grouped bars of rates in [0, 1] with interval whiskers."""
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(groups) + 2), 3.4))
    width = 0.8 / max(1, len(series))
    for i, (name, bars) in enumerate(series.items()):
        xs = [g + i * width for g in range(len(groups))]
        vals = [b[1] if b[1] is not None else 0.0 for b in bars]
        err_low = [
            max(0.0, v - b[2]) if b[2] is not None else 0.0 for v, b in zip(vals, bars, strict=True)
        ]
        err_high = [
            max(0.0, b[3] - v) if b[3] is not None else 0.0 for v, b in zip(vals, bars, strict=True)
        ]
        ax.bar(xs, vals, width, yerr=[err_low, err_high], capsize=3, label=name)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.axhline(0.5, color="grey", linewidth=0.6, linestyle="--")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return to_base64(fig)
