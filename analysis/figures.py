"""Figures: the shared palette, saving, and the round figures (bars, timelines).

Plotting only: inputs are tables from :mod:`analysis.summary` or the phase table.
Figures are drawn on the Agg canvas without pyplot, so no display or global state is
touched. Colours are fixed and colour-blind safe (Okabe-Ito; greys and Paul Tol's
wine for the phases beyond its eight): a phase, a network or a host has the same
colour in every figure of every report. Phases that wait (on Flower's polling or on
other nodes) are hatched with lines, unresolved time with dots.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analysis.summary import (
    LEGACY_PHASES,
    SERVER_NODE,
    network_order,
    phase_order,
)

PHASE_COLOURS = {
    "dispatch_wait": "#BBBBBB",  # light grey, hatched
    "downlink": "#0072B2",  # blue
    "client_startup": "#E69F00",  # orange
    "training": "#009E73",  # bluish green
    "evaluation": "#56B4E9",  # sky blue
    "reply_handoff": "#F0E442",  # yellow
    "uplink": "#D55E00",  # vermillion
    "pickup_wait": "#666666",  # dark grey, hatched
    "aggregation": "#CC79A7",  # reddish purple
    "server_other": "#882255",  # wine, hatched
    "unresolved": "#F2F2F2",  # near white, dotted: time not resolved into phases
}
# Waiting phases are hatched with lines, unresolved time with dots.
PHASE_HATCHES = {
    "dispatch_wait": "//",
    "pickup_wait": "\\\\",
    "server_other": "xx",
    "unresolved": "..",
}
# Hatch lines that stand out on their face colour.
_HATCH_COLOURS = {
    "dispatch_wait": "#444444",
    "pickup_wait": "#FFFFFF",
    "server_other": "#FFFFFF",
    "unresolved": "#444444",
}
# A phase the palette does not know (a newer table) is drawn, never dropped.
_UNKNOWN_PHASE_COLOUR = "#DDDDDD"
NETWORK_COLOURS = {
    "ethernet": "#000000",  # black
    "wifi": "#E69F00",  # orange
    "5g": "#0072B2",  # blue
}
# For networks the study does not name, in order of their sorted names.
_EXTRA_NETWORK_COLOURS = ("#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
# Hosts in system figures: the server black, the others in name order.
_HOST_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
MESSAGE_LINESTYLES = {"train": "-", "evaluate": "--"}
DIRECTION_LINESTYLES = {"sent": "-", "recv": "--"}
GANTT_COLUMNS = ["node", "phase", "message_type", "start_s", "end_s"]
# Resolution of the PNGs (the PDFs are vector graphics).
PNG_DPI = 120


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


def natural_key(name: str) -> list[object]:
    """``pi2`` before ``pi10``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def host_colours(hosts: list[str]) -> dict[str, str]:
    """A fixed colour per host: ``server`` black, the others in natural name order."""
    others = sorted((h for h in set(hosts) if h != SERVER_NODE), key=natural_key)
    colours = {h: _HOST_COLOURS[i % len(_HOST_COLOURS)] for i, h in enumerate(others)}
    if SERVER_NODE in hosts:
        colours[SERVER_NODE] = "#000000"
    return colours


def phase_style(phase: str) -> dict[str, object]:
    """Keyword arguments of a bar or patch of ``phase``: colour, hatch."""
    colour = PHASE_COLOURS.get(phase, _UNKNOWN_PHASE_COLOUR)
    # Face and edge rather than ``color``, which would also colour the hatch.
    style: dict[str, object] = {
        "facecolor": colour,
        "edgecolor": colour,
        "label": phase,
    }
    if phase in PHASE_HATCHES:
        style["hatch"] = PHASE_HATCHES[phase]
        style["hatchcolor"] = _HATCH_COLOURS[phase]
    return style


def phase_legend(ax: Axes, phases: list[str], title: str | None = None) -> None:
    """Legend of ``phases`` from top (last drawn, top of a stack) to bottom."""
    handles = [Patch(**phase_style(p)) for p in reversed(phases)]  # type: ignore[arg-type]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        frameon=False,
        title=title,
    )


def save_figure(fig: Figure, path: Path) -> tuple[Path, Path]:
    """Write ``fig`` as PNG and PDF next to each other; return both paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas = FigureCanvasAgg(fig)
    png, pdf = path.with_suffix(".png"), path.with_suffix(".pdf")
    # One layout pass for both files (``bbox_inches="tight"`` would lay the
    # figure out again for each): the tight box in inches, padded as savefig pads.
    fig.draw_without_rendering()
    box = fig.get_tightbbox(canvas.get_renderer()).padded(0.1)  # type: ignore[no-untyped-call]
    fig.savefig(png, dpi=PNG_DPI, bbox_inches=box)
    fig.savefig(pdf, bbox_inches=box)
    return png, pdf


def _stacked_bars(ax: Axes, table: pd.DataFrame, phases: list[str]) -> None:
    """One bar per row of ``table`` (index: networks), one segment per phase column."""
    x = np.arange(len(table.index))
    bottom = np.zeros(len(table.index))
    for phase in phases:
        values = table[phase].fillna(0.0).to_numpy(dtype=float)
        ax.bar(x, values, 0.6, bottom=bottom, **phase_style(phase))  # type: ignore[arg-type]
        bottom += values
    ax.set_xticks(x, [str(n) for n in table.index])
    ax.set_xlabel("network")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def phase_bar(table: pd.DataFrame, path: Path) -> tuple[Path, Path]:
    """Stacked bar of the median seconds per phase (segments) for each network (bars).

    ``table`` is :func:`analysis.summary.median_phase_table`'s output; a phase
    missing on a network draws no segment. Only the legacy phases (downlink,
    training, evaluation, uplink, server aggregation) are drawn: the round
    anatomy has its own figure, :func:`anatomy_bar`. Raises ValueError on an
    empty table.
    """
    phases = [p for p in LEGACY_PHASES if p in table.columns]
    if table.empty or not phases or table[phases].isna().all().all():
        raise ValueError(
            f"cannot draw {path.name}: the median phase table has no values"
        )
    fig = Figure(figsize=(1.6 + 1.3 * len(table.index), 4.2))
    ax = fig.add_subplot()
    _stacked_bars(ax, table, phases)
    ax.set_ylabel("time per round (s)")
    ax.set_title("Median time per phase and round")
    phase_legend(ax, phases)
    return save_figure(fig, path)


def anatomy_bar(shares: pd.DataFrame, path: Path) -> tuple[Path, Path]:
    """Stacked bar per network: the median round split by every phase's share.

    ``shares`` is :func:`analysis.summary.phase_shares`'s output: segments are
    ``segment_s`` (the phase's share of all node-round seconds times the
    median round), so each stack adds up to the network's median round time,
    waits and start-up included; the total is written above the bar. Segments
    follow :data:`PHASE_ORDER` bottom-up, waiting phases hatched. Raises
    ValueError when the table has no value.
    """
    if shares.empty or shares["segment_s"].isna().all():
        raise ValueError(f"cannot draw {path.name}: the anatomy table has no values")
    wide = shares.pivot_table(
        index="network", columns="phase", values="segment_s", aggfunc="first"
    )
    wide = wide.reindex(network_order(wide.index))
    phases = phase_order(wide.columns)
    fig = Figure(figsize=(2.2 + 1.1 * len(wide.index), 4.4))
    ax = fig.add_subplot()
    _stacked_bars(ax, wide, phases)
    totals = wide.fillna(0.0).sum(axis=1).to_numpy(dtype=float)
    for x, total in enumerate(totals):
        ax.annotate(
            f"{total:.1f} s",
            (x, total),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
        )
    ax.set_ylim(0.0, float(totals.max()) * 1.12 if len(totals) else 1.0)
    ax.set_ylabel("median round (s), split by phase share")
    ax.set_title("Where a round goes")
    phase_legend(ax, phases)
    return save_figure(fig, path)


def choose_gantt_rounds(
    df: pd.DataFrame, preferred_round: int = 2
) -> list[tuple[str, str, int]]:
    """Which (network, run_id, round) to draw a timeline of: one per network.

    The network's first run (lowest repetition, then run id) and its round
    ``preferred_round`` (default 2: round 1 includes start-up effects such as
    first imports and connection set-up), or its first round when it has fewer.
    """
    chosen: list[tuple[str, str, int]] = []
    runs = df[["network", "repetition", "run_id"]].drop_duplicates()
    for network in network_order(runs["network"].unique()):
        mine = runs[runs["network"] == network]
        first = mine.sort_values(["repetition", "run_id"]).iloc[0]["run_id"]
        rounds = sorted(df.loc[df["run_id"] == first, "round"].unique())
        wanted = preferred_round if preferred_round in rounds else rounds[0]
        chosen.append((network, str(first), int(wanted)))
    return chosen


def gantt_bars(df: pd.DataFrame, run_id: str, round_: int) -> tuple[pd.DataFrame, str]:
    """The bars of a round's timeline and what its x origin is.

    One row per phase row of (run, round): ``node``, ``phase``,
    ``message_type``, ``start_s`` and ``end_s`` in seconds since the round's
    first dispatch (the earliest ``dispatch_wait`` start), or since its first
    recorded instant when the table has no dispatch rows (the second value says
    which). Raises ValueError when the table has no row of that run and round.
    """
    rows = df[(df["run_id"] == run_id) & (df["round"] == round_)]
    if rows.empty:
        raise ValueError(f"the phase table has no rows of run {run_id} round {round_}")
    dispatch = rows.loc[rows["phase"] == "dispatch_wait", "start_ns"]
    if len(dispatch):
        origin_ns, origin = int(dispatch.min()), "the round's first dispatch"
    else:
        origin_ns = int(rows["start_ns"].min())
        origin = "the round's first recorded instant"
    bars = pd.DataFrame(
        {
            "node": rows["node"].astype(str),
            "phase": rows["phase"].astype(str),
            "message_type": rows["message_type"].astype(str),
            "start_s": (rows["start_ns"].astype("int64") - origin_ns) / 1e9,
            "end_s": (rows["end_ns"].astype("int64") - origin_ns) / 1e9,
        }
    )
    return bars.sort_values(["node", "start_s"]).reset_index(drop=True)[
        GANTT_COLUMNS
    ], origin


def gantt(df: pd.DataFrame, run_id: str, round_: int, path: Path) -> tuple[Path, Path]:
    """Timeline of one round: a row per node, a bar per phase row from start to end.

    Nodes from top in natural name order, the server's own aggregation timer in
    the top row; bars coloured by phase (waiting phases hatched), x in seconds
    since the round's first dispatch (see :func:`gantt_bars`). Raises
    ValueError when the table has no row of that run and round.
    """
    bars, origin = gantt_bars(df, run_id, round_)
    nodes = sorted(set(bars["node"]) - {SERVER_NODE}, key=natural_key)
    if SERVER_NODE in set(bars["node"]):
        nodes.insert(0, SERVER_NODE)
    row = {node: i for i, node in enumerate(reversed(nodes))}
    phases = phase_order(bars["phase"])
    fig = Figure(figsize=(7.6, 1.5 + 0.5 * len(nodes)))
    ax = fig.add_subplot()
    for phase in phases:
        sel = bars[bars["phase"] == phase]
        ax.barh(
            sel["node"].map(row).to_numpy(dtype=float),
            (sel["end_s"] - sel["start_s"]).to_numpy(dtype=float),
            0.6,
            left=sel["start_s"].to_numpy(dtype=float),
            **phase_style(phase),  # type: ignore[arg-type]
        )
    ax.set_yticks(list(row.values()), list(row.keys()))
    ax.set_ylim(-0.6, len(nodes) - 0.4)
    ax.set_xlabel(f"seconds since {origin}")
    network = str(df.loc[df["run_id"] == run_id, "network"].iloc[0])
    ax.set_title(f"{network}: run {run_id}, round {round_}")
    ax.grid(axis="x", alpha=0.3)
    phase_legend(ax, phases)
    return save_figure(fig, path)
