"""Figures of a campaign: the stacked phase bar and transfer-time ECDFs, as PNG and PDF.

Plotting only: inputs are tables from :mod:`analysis.summary` or the phase table.
Figures are drawn on the Agg canvas without pyplot, so no display or global state is
touched. Colours are fixed (Okabe-Ito, colour-blind safe): a phase or a network has
the same colour in every figure of every report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.phases import PHASES
from analysis.summary import network_order

PHASE_COLOURS = {
    "downlink": "#0072B2",  # blue
    "training": "#009E73",  # bluish green
    "evaluation": "#56B4E9",  # sky blue
    "uplink": "#D55E00",  # vermillion
    "aggregation": "#CC79A7",  # reddish purple
}
NETWORK_COLOURS = {
    "ethernet": "#000000",  # black
    "wifi": "#E69F00",  # orange
    "5g": "#0072B2",  # blue
}
# For networks the study does not name, in order of their sorted names.
_EXTRA_NETWORK_COLOURS = ("#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
MESSAGE_LINESTYLES = {"train": "-", "evaluate": "--"}


def network_colours(networks: list[str]) -> dict[str, str]:
    """A fixed colour per network: the study's three by name, others in name order."""
    colours: dict[str, str] = {}
    others = sorted(n for n in networks if n.lower() not in NETWORK_COLOURS)
    for name in networks:
        if name.lower() in NETWORK_COLOURS:
            colours[name] = NETWORK_COLOURS[name.lower()]
        else:
            index = others.index(name) % len(_EXTRA_NETWORK_COLOURS)
            colours[name] = _EXTRA_NETWORK_COLOURS[index]
    return colours


def _save(fig: Figure, path: Path) -> tuple[Path, Path]:
    """Write ``fig`` as PNG and PDF next to each other; return both paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    png, pdf = path.with_suffix(".png"), path.with_suffix(".pdf")
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight")
    return png, pdf


def phase_bar(table: pd.DataFrame, path: Path) -> tuple[Path, Path]:
    """Stacked bar of the median seconds per phase (segments) for each network (bars).

    ``table`` is :func:`analysis.summary.median_phase_table`'s output; a phase
    missing on a network draws no segment. Raises ValueError on an empty table.
    """
    phases = [p for p in PHASES if p in table.columns]
    if table.empty or not phases or table[phases].isna().all().all():
        raise ValueError(
            f"cannot draw {path.name}: the median phase table has no values"
        )
    fig = Figure(figsize=(1.6 + 1.3 * len(table.index), 4.2))
    ax = fig.add_subplot()
    x = np.arange(len(table.index))
    bottom = np.zeros(len(table.index))
    for phase in phases:
        values = table[phase].fillna(0.0).to_numpy(dtype=float)
        ax.bar(x, values, 0.6, bottom=bottom, label=phase, color=PHASE_COLOURS[phase])
        bottom += values
    ax.set_xticks(x, [str(n) for n in table.index])
    ax.set_xlabel("network")
    ax.set_ylabel("time per round (s)")
    ax.set_title("Median time per phase and round")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step points of the ECDF, starting at 0 at the smallest value."""
    ordered = np.sort(values)
    fractions = np.arange(1, len(ordered) + 1) / len(ordered)
    return np.concatenate([ordered[:1], ordered]), np.concatenate([[0.0], fractions])


def transfer_ecdf(df: pd.DataFrame, phase: str, path: Path) -> tuple[Path, Path]:
    """ECDF of one transfer phase's seconds per message, one colour per network.

    Each sample is one downlink or uplink row of the phase table (one Flower
    message); the train message is drawn solid, the evaluate message dashed.
    Raises ValueError when the table has no row of ``phase``.
    """
    if phase not in ("downlink", "uplink"):
        raise ValueError(f"transfer_ecdf draws downlink or uplink, not {phase!r}")
    rows = df[df["phase"] == phase]
    if rows.empty:
        raise ValueError(
            f"cannot draw {path.name}: the phase table has no {phase} rows"
        )
    networks = network_order(rows["network"])
    colours = network_colours(networks)
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    for network in networks:
        for message_type, style in MESSAGE_LINESTYLES.items():
            sel = rows[
                (rows["network"] == network) & (rows["message_type"] == message_type)
            ]
            if sel.empty:
                continue
            xs, ys = _ecdf(sel["duration_s"].to_numpy(dtype=float))
            ax.step(
                xs,
                ys,
                where="post",
                color=colours[network],
                linestyle=style,
                label=f"{network} ({message_type}, n={len(sel)})",
            )
    positive = rows["duration_s"][rows["duration_s"] > 0]
    # Ethernet and 5G differ by one to two orders of magnitude: keep both readable.
    if len(positive) and positive.max() / positive.min() > 50:
        ax.set_xscale("log")
    ax.set_xlabel(f"{phase} time per message (s)")
    ax.set_ylabel("fraction of messages")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(f"ECDF of {phase} time")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _save(fig, path)
