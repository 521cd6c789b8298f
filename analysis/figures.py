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
# Resolution of the PNGs (the PDFs are vector graphics).
PNG_DPI = 120
# Points an ECDF is drawn through at most (quantiles of the data beyond that).
_MAX_CURVE_POINTS = 400
# Points a time series is drawn through at most (means of equal runs beyond that).
_MAX_SERIES_POINTS = 1500


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
    canvas = FigureCanvasAgg(fig)
    png, pdf = path.with_suffix(".png"), path.with_suffix(".pdf")
    # One layout pass for both files (``bbox_inches="tight"`` would lay the
    # figure out again for each): the tight box in inches, padded as savefig pads.
    fig.draw_without_rendering()
    box = fig.get_tightbbox(canvas.get_renderer()).padded(0.1)  # type: ignore[no-untyped-call]
    fig.savefig(png, dpi=PNG_DPI, bbox_inches=box)
    fig.savefig(pdf, bbox_inches=box)
    return png, pdf


def save_figure(fig: Figure, path: Path) -> tuple[Path, Path]:
    """Write a figure drawn elsewhere (PNG and PDF next to each other)."""
    return _save(fig, path)


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
    rows = df.loc[df["phase"] == phase, ["network", "message_type", "duration_s"]]
    if rows.empty:
        raise ValueError(
            f"cannot draw {path.name}: the phase table has no {phase} rows"
        )
    networks = network_order(rows["network"].unique())
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
            xs, ys = _curve_points(sel["duration_s"].to_numpy(dtype=float))
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


def _thinned(frame: pd.DataFrame, x: str) -> pd.DataFrame:
    """At most :data:`_MAX_SERIES_POINTS` rows: means over equal runs of rows."""
    if len(frame) <= _MAX_SERIES_POINTS:
        return frame
    bins = np.arange(len(frame)) * _MAX_SERIES_POINTS // len(frame)
    numeric = frame.select_dtypes("number")
    return numeric.groupby(bins).mean().sort_values(x)


def _thinned_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """At most :data:`_MAX_SERIES_POINTS` intervals, each the bytes of its runs.

    A merged interval spans its first start to its last end; its rate is the
    mean of the rates weighted by their durations (bytes over time).
    """
    if len(frame) <= _MAX_SERIES_POINTS:
        return frame
    bins = np.arange(len(frame)) * _MAX_SERIES_POINTS // len(frame)
    seconds = (frame["end_s"] - frame["start_s"]).to_numpy(dtype=float)
    work = pd.DataFrame(
        {
            "start_s": frame["start_s"].to_numpy(dtype=float),
            "end_s": frame["end_s"].to_numpy(dtype=float),
            "megabits": frame["mbit_s"].to_numpy(dtype=float) * seconds,
            "seconds": seconds,
        }
    ).groupby(bins)
    merged = work.agg(
        start_s=("start_s", "min"),
        end_s=("end_s", "max"),
        megabits=("megabits", "sum"),
        seconds=("seconds", "sum"),
    )
    merged["mbit_s"] = merged["megabits"] / merged["seconds"].where(
        merged["seconds"] > 0
    )
    return merged.reset_index(drop=True)


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
    colours = host_colours([*cpu["host"].unique(), *nic["host"].unique()])
    fig = Figure(figsize=(9.0, 5.6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    for host in sorted(cpu["host"].unique(), key=_natural_key):
        sel = _thinned(cpu[cpu["host"] == host].sort_values("t_s"), "t_s")
        top.plot(sel["t_s"], sel["cpu_percent"], color=colours[host], label=host)
    for (host, device, direction), sel in nic.groupby(
        ["host", "device", "direction"], sort=True
    ):
        sel = _thinned_rates(sel.sort_values("start_s"))
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
    times = np.concatenate(
        [cpu["t_s"].to_numpy(float), nic[["start_s", "end_s"]].to_numpy(float).ravel()]
    )
    first, last = float(times.min()), float(times.max())
    marks = [m for m in marks_s or [] if first <= m <= last]
    if marks:
        # One collection per panel: hundreds of rounds as single lines are slow.
        for ax in (top, bottom):
            ax.vlines(
                marks,
                0.0,
                1.0,
                transform=ax.get_xaxis_transform(),
                colors="#999999",
                linestyles=":",
                linewidth=0.8,
            )
    top.set_ylabel("CPU (% of a core, mean over cores)")
    top.set_title(title)
    bottom.set_ylabel("NIC throughput (Mbit/s)")
    bottom.set_xlabel("seconds since the run's first sample")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _save(fig, path)


# --- the study, stragglers, convergence, ECDFs per phase, bytes over time ---------

STRATEGY_LINESTYLES = ("-", "--", ":", "-.")


def strategy_linestyles(strategies: list[str]) -> dict[str, str]:
    """A fixed line style per strategy, in name order."""
    ordered = sorted(set(strategies))
    return {
        s: STRATEGY_LINESTYLES[i % len(STRATEGY_LINESTYLES)]
        for i, s in enumerate(ordered)
    }


def study_bars(
    table: pd.DataFrame, quantities: list[str], path: Path
) -> tuple[Path, Path]:
    """Median per network (bars) with its bootstrap CI (error bars), one panel each.

    ``table`` is :func:`analysis.study.study_table`'s ``table``; one panel per
    quantity in ``quantities`` present in it (e.g. downlink, uplink, round),
    one bar group per strategy. Raises ValueError when none is present.
    """
    present = [q for q in quantities if q in set(table["quantity"])]
    if not present:
        raise ValueError(
            f"cannot draw {path.name}: the study table has none of {quantities}"
        )
    networks = network_order(table["network"])
    colours = network_colours(networks)
    strategies = sorted(set(table["strategy"]))
    fig = Figure(figsize=(3.2 * len(present) + 1.5, 3.8))
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    width = 0.8 / max(len(networks), 1)
    for ax, quantity in zip(axes, present, strict=True):
        rows = table[table["quantity"] == quantity]
        for i, network in enumerate(networks):
            sel = rows[rows["network"] == network].set_index("strategy")
            sel = sel.reindex(strategies)
            x = np.arange(len(strategies)) + (i - (len(networks) - 1) / 2) * width
            median = sel["median"].to_numpy(dtype=float)
            errors = np.vstack(
                [
                    median - sel["median_low"].to_numpy(dtype=float),
                    sel["median_high"].to_numpy(dtype=float) - median,
                ]
            )
            ax.bar(
                x,
                median,
                width,
                yerr=np.clip(np.nan_to_num(errors), 0, None),
                capsize=3,
                color=colours[network],
                label=network,
            )
        ax.set_xticks(np.arange(len(strategies)), strategies)
        ax.set_xlabel("strategy")
        unit = "share of the round" if quantity == "uplink_share" else "s"
        ax.set_ylabel(f"median {quantity} ({unit})")
        ax.set_title(quantity)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle("Median per network with bootstrap confidence interval")
    return _save(fig, path)


def straggler_heatmap(
    leads: pd.DataFrame, stragglers: pd.DataFrame, title: str, path: Path
) -> tuple[Path, Path]:
    """Node x round heatmap of each node's lead over its round's median node (s).

    ``leads`` is :func:`analysis.stragglers.node_leads` of one network and
    strategy; columns are its (run, round) pairs in order, rows its nodes in
    natural name order; each round's straggler (``stragglers``' rows) carries a
    white dot. Colour-blind safe sequential map (cividis). Raises ValueError
    when ``leads`` is empty.
    """
    if leads.empty:
        raise ValueError(f"cannot draw {path.name}: no node rounds")
    columns = leads[["repetition", "run_id", "round"]].drop_duplicates()
    columns = columns.sort_values(["repetition", "run_id", "round"])
    position = {
        (r, n): i
        for i, (r, n) in enumerate(
            zip(columns["run_id"], columns["round"], strict=True)
        )
    }
    nodes = sorted(leads["node"].unique(), key=_natural_key)
    row = {node: i for i, node in enumerate(nodes)}
    grid = np.full((len(nodes), len(columns)), np.nan)
    x = [position[(r, n)] for r, n in zip(leads["run_id"], leads["round"], strict=True)]
    grid[leads["node"].map(row).to_numpy(), np.asarray(x, dtype=int)] = leads["lead_s"]
    fig = Figure(
        figsize=(min(2.5 + 0.35 * len(columns), 14.0), 1.6 + 0.35 * len(nodes))
    )
    ax = fig.add_subplot()
    image = ax.imshow(grid, aspect="auto", cmap="cividis", interpolation="nearest")
    marks = stragglers[stragglers["run_id"].isin(set(columns["run_id"]))]
    if len(marks) <= 2000:
        ax.scatter(
            [
                position[(r, n)]
                for r, n in zip(marks["run_id"], marks["round"], strict=True)
            ],
            marks["straggler"].map(row).to_numpy(dtype=float),
            s=12,
            color="#FFFFFF",
            edgecolors="#000000",
            linewidths=0.5,
            label="the round's straggler",
        )
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.3), frameon=False)
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_ylabel("node")
    ticks = _column_ticks(columns)
    ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks])
    ax.set_xlabel("round (r<k>: repetition k)")
    ax.set_title(title)
    colourbar = fig.colorbar(image, ax=ax)
    colourbar.set_label("busy time over the round's median node (s)")
    return _save(fig, path)


def _column_ticks(columns: pd.DataFrame, most: int = 16) -> list[tuple[int, str]]:
    labels = [
        f"r{rep}:{rnd}"
        for rep, rnd in zip(columns["repetition"], columns["round"], strict=True)
    ]
    step = max(1, int(np.ceil(len(labels) / most)))
    return [(i, labels[i]) for i in range(0, len(labels), step)]


def convergence_figure(
    metrics: pd.DataFrame, target: float | None, path: Path
) -> tuple[Path, Path]:
    """Accuracy and loss against round and against wall-clock time, 2 x 2 panels.

    ``metrics`` is :func:`analysis.convergence.read_metrics`'s table: thin lines
    per run, a thick line per (network, strategy) median (colour per network,
    line style per strategy); ``target`` draws a dotted line on the accuracy
    panels. Raises ValueError when ``metrics`` has no accuracy and no loss.
    """
    if metrics.empty or metrics[["accuracy", "loss"]].isna().all().all():
        raise ValueError(f"cannot draw {path.name}: no accuracy or loss recorded")
    networks = network_order(metrics["network"])
    colours = network_colours(networks)
    styles = strategy_linestyles(list(metrics["strategy"]))
    fig = Figure(figsize=(11.0, 7.0))
    axes = fig.subplots(2, 2)
    panels = (
        (axes[0][0], "round", "accuracy"),
        (axes[0][1], "elapsed_s", "accuracy"),
        (axes[1][0], "round", "loss"),
        (axes[1][1], "elapsed_s", "loss"),
    )
    grouped = metrics.groupby(["network", "strategy", "round"], sort=True)
    medians = grouped[["accuracy", "loss", "elapsed_s"]].median().reset_index()
    for ax, x, y in panels:
        for (network, strategy, _), run in metrics.groupby(
            ["network", "strategy", "run_id"]
        ):
            run = run.sort_values("round")
            ax.plot(
                run[x],
                run[y],
                color=colours[str(network)],
                linestyle=styles[str(strategy)],
                alpha=0.3,
                linewidth=0.8,
            )
        for (network, strategy), curve in medians.groupby(["network", "strategy"]):
            ax.plot(
                curve[x],
                curve[y],
                color=colours[str(network)],
                linestyle=styles[str(strategy)],
                linewidth=2.2,
                marker="o" if len(curve) <= 30 else None,
                markersize=3,
                label=f"{network}, {strategy} (median)",
            )
        if y == "accuracy" and target is not None:
            ax.axhline(
                target,
                color="#666666",
                linestyle=":",
                linewidth=1.0,
                label=f"target {target:.3f}",
            )
        ax.set_xlabel(
            "round" if x == "round" else "wall-clock time since the first dispatch (s)"
        )
        ax.set_ylabel(
            "accuracy (fraction correct)"
            if y == "accuracy"
            else "loss (model's loss value)"
        )
        ax.grid(alpha=0.3)
    axes[0][1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle(
        "Convergence: per run (thin) and median per network and strategy (thick)"
    )
    return _save(fig, path)


def _curve_points(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ECDF step points, thinned to quantiles when there are many values."""
    if len(values) <= _MAX_CURVE_POINTS:
        return _ecdf(values)
    fractions = np.linspace(0.0, 1.0, _MAX_CURVE_POINTS)
    return np.quantile(values, fractions), fractions


def phase_ecdfs(
    samples: pd.DataFrame, phases: list[str], path: Path
) -> tuple[Path, Path]:
    """ECDF of a node's seconds per round in each phase: one panel per phase.

    ``samples`` has ``network``, ``quantity`` (phase) and ``value`` (seconds)
    columns (:func:`analysis.study.study_samples`); one colour per network.
    Above :data:`_MAX_CURVE_POINTS` samples a curve is drawn through that many
    quantiles. Raises ValueError when no phase of ``phases`` has samples.
    """
    quantities = set(samples["quantity"].unique())
    present = [p for p in phases if p in quantities]
    if not present:
        raise ValueError(f"cannot draw {path.name}: no samples of {phases}")
    networks = network_order(samples["network"].unique())
    colours = network_colours(networks)
    columns = 3
    rows_n = int(np.ceil(len(present) / columns))
    fig = Figure(figsize=(4.0 * columns + 1.8, 2.9 * rows_n))
    axes = fig.subplots(rows_n, columns, squeeze=False).ravel()
    wanted = samples[samples["quantity"].isin(present)]
    groups = {
        (str(q), str(n)): v.dropna().to_numpy(dtype=float)
        for (q, n), v in wanted.groupby(["quantity", "network"], observed=True)["value"]
    }
    for ax, phase in zip(axes, present, strict=False):
        for network in networks:
            values = groups.get((phase, network), np.empty(0))
            if len(values) == 0:
                continue
            xs, ys = _curve_points(values)
            ax.step(xs, ys, where="post", color=colours[network], label=network)
        ax.set_title(phase)
        ax.set_xlabel(f"{phase} per node and round (s)")
        ax.set_ylabel("fraction of node rounds")
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[len(present) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colours[n], label=n) for n in networks]
    fig.legend(handles=handles, loc="upper right", frameon=False, title="network")
    fig.suptitle("ECDF per phase")
    # Fixed spacing: a layout engine would measure every label of ten panels again.
    fig.subplots_adjust(
        left=0.06, right=0.88, bottom=0.08, top=0.9, wspace=0.3, hspace=0.6
    )
    return _save(fig, path)


def bytes_over_time(nic: pd.DataFrame, path: Path) -> tuple[Path, Path]:
    """Cumulative bytes and throughput of the server's busiest NIC per network.

    ``nic`` has ``network, direction, start_s, end_s, mbit_s`` (one run per
    network, seconds since its first sample); sent solid, received dashed, one
    colour per network. Raises ValueError when ``nic`` is empty.
    """
    if nic.empty:
        raise ValueError(f"cannot draw {path.name}: no NIC samples")
    networks = network_order(nic["network"])
    colours = network_colours(networks)
    fig = Figure(figsize=(9.0, 5.6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    for (network, direction), sel in nic.groupby(["network", "direction"], sort=True):
        sel = _thinned_rates(sel.sort_values("start_s"))
        duration = (sel["end_s"] - sel["start_s"]).to_numpy(dtype=float)
        megabytes = np.cumsum(sel["mbit_s"].to_numpy(dtype=float) * duration / 8.0)
        style = DIRECTION_LINESTYLES.get(str(direction), ":")
        label = f"{network} {direction}"
        top.plot(
            sel["end_s"],
            megabytes,
            color=colours[str(network)],
            linestyle=style,
            label=label,
        )
        xs = np.append(sel["start_s"].to_numpy(dtype=float), sel["end_s"].iloc[-1])
        ys = np.append(sel["mbit_s"].to_numpy(dtype=float), sel["mbit_s"].iloc[-1])
        bottom.step(
            xs,
            ys,
            where="post",
            color=colours[str(network)],
            linestyle=style,
            label=label,
        )
    top.set_ylabel("cumulative bytes (MB)")
    top.set_title(
        "Server NIC: bytes and throughput over time (solid sent, dashed received)"
    )
    bottom.set_ylabel("throughput (Mbit/s)")
    bottom.set_xlabel("seconds since the run's first sample")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _save(fig, path)
