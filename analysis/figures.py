"""Figures of a campaign: phase bars, round anatomy, timelines, ECDFs, PNG and PDF.

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
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
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


def _natural_key(name: str) -> list[object]:
    """``pi2`` before ``pi10``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def host_colours(hosts: list[str]) -> dict[str, str]:
    """A fixed colour per host: ``server`` black, the others in natural name order."""
    others = sorted((h for h in set(hosts) if h != SERVER_NODE), key=_natural_key)
    colours = {h: _HOST_COLOURS[i % len(_HOST_COLOURS)] for i, h in enumerate(others)}
    if SERVER_NODE in hosts:
        colours[SERVER_NODE] = "#000000"
    return colours


def _phase_style(phase: str) -> dict[str, object]:
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


def _phase_legend(ax: Axes, phases: list[str], title: str | None = None) -> None:
    """Legend of ``phases`` from top (last drawn, top of a stack) to bottom."""
    handles = [Patch(**_phase_style(p)) for p in reversed(phases)]  # type: ignore[arg-type]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        frameon=False,
        title=title,
    )


def _save(fig: Figure, path: Path) -> tuple[Path, Path]:
    """Write ``fig`` as PNG and PDF next to each other; return both paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    png, pdf = path.with_suffix(".png"), path.with_suffix(".pdf")
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight")
    return png, pdf


def _stacked_bars(ax: Axes, table: pd.DataFrame, phases: list[str]) -> None:
    """One bar per row of ``table`` (index: networks), one segment per phase column."""
    x = np.arange(len(table.index))
    bottom = np.zeros(len(table.index))
    for phase in phases:
        values = table[phase].fillna(0.0).to_numpy(dtype=float)
        ax.bar(x, values, 0.6, bottom=bottom, **_phase_style(phase))  # type: ignore[arg-type]
        bottom += values
    ax.set_xticks(x, [str(n) for n in table.index])
    ax.set_xlabel("network")
    ax.grid(axis="y", alpha=0.3)


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
    _phase_legend(ax, phases)
    return _save(fig, path)


def anatomy_bar(table: pd.DataFrame, path: Path) -> tuple[Path, Path]:
    """Stacked bar per network of the round anatomy's median seconds per phase.

    ``table`` is :func:`analysis.summary.anatomy_table`'s output (long: network,
    phase, median_s, median_round_s). Segments follow :data:`PHASE_ORDER`
    bottom-up, waiting phases hatched; a black tick marks each network's median
    round time, which need not equal the stack's height (each median is taken on
    its own). Raises ValueError when the table has no value.
    """
    if table.empty or table["median_s"].isna().all():
        raise ValueError(f"cannot draw {path.name}: the anatomy table has no values")
    wide = table.pivot_table(
        index="network", columns="phase", values="median_s", aggfunc="first"
    )
    wide = wide.reindex(network_order(wide.index))
    phases = phase_order(wide.columns)
    fig = Figure(figsize=(2.2 + 1.3 * len(wide.index), 4.8))
    ax = fig.add_subplot()
    _stacked_bars(ax, wide, phases)
    rounds = table.groupby("network")["median_round_s"].first().reindex(wide.index)
    if rounds.notna().any():
        x = np.arange(len(wide.index))
        ax.scatter(
            x,
            rounds.to_numpy(dtype=float),
            marker="_",
            s=900,
            linewidths=2.5,
            color="#000000",
            zorder=3,
        )
    ax.set_ylabel("median seconds per round and node (s)")
    ax.set_title("Round anatomy: median time per phase")
    handles: list[Artist] = [Patch(**_phase_style(p)) for p in reversed(phases)]  # type: ignore[arg-type]
    if rounds.notna().any():
        handles.insert(
            0, Line2D([], [], color="#000000", lw=2.5, label="median round time")
        )
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False
    )
    return _save(fig, path)


def choose_gantt_rounds(
    df: pd.DataFrame, preferred_round: int = 2
) -> list[tuple[str, str, int]]:
    """Which (network, run_id, round) to draw a timeline of: one per network.

    The network's first run (lowest repetition, then run id) and its round
    ``preferred_round`` (default 2: round 1 includes start-up effects such as
    first imports and connection set-up), or its first round when it has fewer.
    """
    chosen: list[tuple[str, str, int]] = []
    for network in network_order(df["network"]):
        rows = df[df["network"] == network]
        runs = rows[["repetition", "run_id"]].drop_duplicates()
        first = runs.sort_values(["repetition", "run_id"]).iloc[0]["run_id"]
        rounds = sorted(set(rows.loc[rows["run_id"] == first, "round"]))
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
    nodes = sorted(set(bars["node"]) - {SERVER_NODE}, key=_natural_key)
    if SERVER_NODE in set(bars["node"]):
        nodes.insert(0, SERVER_NODE)
    row = {node: i for i, node in enumerate(reversed(nodes))}
    phases = phase_order(bars["phase"])
    fig = Figure(figsize=(10.0, 1.4 + 0.55 * len(nodes)))
    ax = fig.add_subplot()
    for phase in phases:
        sel = bars[bars["phase"] == phase]
        ax.barh(
            sel["node"].map(row).to_numpy(dtype=float),
            (sel["end_s"] - sel["start_s"]).to_numpy(dtype=float),
            0.6,
            left=sel["start_s"].to_numpy(dtype=float),
            **_phase_style(phase),  # type: ignore[arg-type]
        )
    ax.set_yticks(list(row.values()), list(row.keys()))
    ax.set_ylim(-0.6, len(nodes) - 0.4)
    ax.set_xlabel(f"seconds since {origin}")
    network = str(df.loc[df["run_id"] == run_id, "network"].iloc[0])
    ax.set_title(f"{network}: run {run_id}, round {round_}")
    ax.grid(axis="x", alpha=0.3)
    _phase_legend(ax, phases)
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


def system_timeline(
    cpu: pd.DataFrame,
    nic: pd.DataFrame,
    title: str,
    path: Path,
    marks_s: list[float] | None = None,
) -> tuple[Path, Path]:
    """CPU % and NIC throughput per host over one run's time, two stacked panels.

    ``cpu`` has columns ``host, t_s, cpu_percent`` (mean over cores); ``nic``
    has ``host, device, direction`` (``sent``/``recv``), ``start_s, end_s,
    mbit_s`` (one row per sampling interval, drawn as steps; sent solid,
    received dashed). A host has one colour in both panels. ``marks_s`` draws
    dotted vertical lines (e.g. round starts) inside the sampled span. Raises
    ValueError when both tables are empty.
    """
    if cpu.empty and nic.empty:
        raise ValueError(f"cannot draw {path.name}: no CPU or NIC samples")
    colours = host_colours([*cpu["host"], *nic["host"]])
    fig = Figure(figsize=(9.0, 5.6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    for host in sorted(set(cpu["host"]), key=_natural_key):
        sel = cpu[cpu["host"] == host].sort_values("t_s")
        top.plot(sel["t_s"], sel["cpu_percent"], color=colours[host], label=host)
    for (host, device, direction), sel in nic.groupby(
        ["host", "device", "direction"], sort=True
    ):
        sel = sel.sort_values("start_s")
        xs = np.append(sel["start_s"].to_numpy(dtype=float), sel["end_s"].iloc[-1])
        ys = np.append(sel["mbit_s"].to_numpy(dtype=float), sel["mbit_s"].iloc[-1])
        bottom.step(
            xs,
            ys,
            where="post",
            color=colours[str(host)],
            linestyle=DIRECTION_LINESTYLES.get(str(direction), ":"),
            label=f"{host} {device} {direction}",
        )
    times = [*cpu["t_s"], *nic["start_s"], *nic["end_s"]]
    for mark in [m for m in marks_s or [] if min(times) <= m <= max(times)]:
        for ax in (top, bottom):
            ax.axvline(mark, color="#999999", linestyle=":", linewidth=0.8)
    top.set_ylabel("CPU (% of a core, mean over cores)")
    top.set_title(title)
    bottom.set_ylabel("NIC throughput (Mbit/s)")
    bottom.set_xlabel("seconds since the run's first sample")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _save(fig, path)
