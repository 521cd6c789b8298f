"""Report sections on the round: anatomy bars, timelines, phase and round tables."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.figures import anatomy_bar, choose_gantt_rounds, gantt
from analysis.html import esc as _esc
from analysis.html import figure as _figure
from analysis.html import fmt as _fmt
from analysis.html import note as _note
from analysis.html import safe_name as _safe_name
from analysis.html import table as _table
from analysis.summary import (
    LEGACY_PHASES,
    PHASE_DEFINITIONS,
    PHASE_ORDER,
    GAP_PHASES,
    network_order,
)


def coverage_notes(df: pd.DataFrame, manifest: Mapping[str, Any]) -> list[str]:
    """Networks without data and phases never recorded on a network."""
    notes = []
    present = set(df["network"].unique())
    expected: set[str] = set()
    profiles = manifest.get("link_profiles")
    if isinstance(profiles, Mapping):
        expected |= set(profiles)
    runs = manifest.get("runs")
    if isinstance(runs, list):
        expected |= {
            str(r["network"]) for r in runs if isinstance(r, Mapping) and "network" in r
        }
    for network in network_order(expected - present):
        notes.append(f"No phase data for network {network}.")
    tiled = tiled_run_ids(df)
    # Distinct (network, run, phase) first: a million rows reduce to a few hundred.
    seen_by = df[["network", "run_id", "phase"]].drop_duplicates()
    for network in network_order(present):
        rows = seen_by[seen_by["network"] == network]
        anatomy = [p for p in PHASE_ORDER if p != "unresolved"]
        wanted = anatomy if rows["run_id"].isin(tiled).any() else LEGACY_PHASES
        seen = set(rows["phase"].unique())
        missing = [p for p in wanted if p not in seen]
        if missing:
            notes.append(f"On {network}, no {', '.join(missing)} was recorded.")
    return notes


def _round_definition(rounds: pd.DataFrame) -> str:
    kinds = set(rounds["tiled"]) if not rounds.empty else set()
    parts = []
    if True in kinds:
        parts.append(
            "Round time (rounds with the round anatomy): the slowest node's time from "
            "the round's first dispatch to its last reply's pickup, i.e. the sum of "
            "its phases, server aggregation and waiting included."
        )
    if False in kinds:
        parts.append(
            "Round time (rounds without the round anatomy): the slowest node's "
            "downlink + training + evaluation + uplink, plus the server's "
            "aggregation; time messages wait in the SuperLink is in no phase."
        )
    return "".join(_note(p) for p in parts)


def round_time_part(table: pd.DataFrame, rounds: pd.DataFrame) -> str:
    if table.empty:
        return ""
    rows = [
        [network, n_rounds, complete, _fmt(median), _fmt(p95), _fmt(slowest)]
        for network, n_rounds, complete, median, p95, slowest in zip(
            table.index,
            table["rounds"].tolist(),
            table["complete_rounds"].tolist(),
            table["median_round_s"].tolist(),
            table["p95_round_s"].tolist(),
            table["most_often_slowest"].tolist(),
            strict=True,
        )
    ]
    headers = [
        "network",
        "rounds",
        "complete rounds",
        "median round (s)",
        "p95 (s)",
        "slowest node (most often)",
    ]
    return (
        "<h3>Round time</h3>"
        + _table(headers, rows, numeric=lambda j: 0 < j < 5)
        + _round_definition(rounds)
    )


def median_section(table: pd.DataFrame, notes: list[str]) -> str:
    if table.empty:
        return _note("The phase table has no rows.")
    phases = [c for c in table.columns if c != "n"]
    records = table.to_dict("index")
    rows = [
        [network, *(_fmt(record[p]) for p in phases), record["n"]]
        for network, record in records.items()
    ]
    headers = ["network", *(f"{p} (s)" for p in phases), "n rounds"]
    out = _table(headers, rows, numeric=lambda j: j > 0)
    return out + "".join(_note(n) for n in notes)


def _definitions() -> str:
    items = "".join(
        f"<dt>{_esc(phase)}</dt><dd>{_esc(PHASE_DEFINITIONS[phase])}</dd>"
        for phase in PHASE_ORDER
    )
    return f"<dl>{items}</dl>"


def anatomy_section(df: pd.DataFrame, table: pd.DataFrame, figures: Path) -> str:
    if not tiled_run_ids(df):
        return _note(
            "This phase table has no round anatomy (no dispatch_wait, "
            "client_startup, reply_handoff, pickup_wait or server_other rows): it "
            "was built by an older analysis.phases. Rebuild phases.parquet from the "
            "runs' events to see where a round's time goes."
        )
    bar = _figure(
        partial(anatomy_bar, table, figures / "anatomy_bar"),
        "Median seconds per phase per (round, node), stacked per network; hatched "
        "phases wait (on Flower's polling or on other nodes) rather than work. The "
        "black tick is the median round time: each segment is a median on its own, "
        "so the stack need not reach it.",
    )
    rows = [
        [network, phase, _fmt(median), _fmt(bound), _share(share), _fmt(round_s), n]
        for network, phase, median, bound, share, round_s, n in zip(
            table["network"].tolist(),
            table["phase"].tolist(),
            table["median_s"].tolist(),
            table["median_uncertainty_s"].tolist(),
            table["share"].tolist(),
            table["median_round_s"].tolist(),
            table["n"].tolist(),
            strict=True,
        )
    ]
    headers = [
        "network",
        "phase",
        "median (s)",
        "± clock (s)",
        "share of median round",
        "median round (s)",
        "samples",
    ]
    return (
        bar
        + _table(headers, rows, numeric=lambda j: j > 1)
        + _note(
            "Samples are (run, round, node): a node's seconds in the phase during "
            "the round, summed over its train and evaluate messages; a fully tiled "
            "node round without the phase counts 0 s. ± clock: median clock "
            "uncertainty of those seconds (phases bounded by a node and a server "
            "instant). Node rounds the tiling could not resolve are left out (see "
            "Data quality)."
        )
        + "<h3>Phases</h3>"
        + _definitions()
        + _note("docs/anatomy.md gives each phase's bounds and uncertainty.")
    )


def _share(value: object) -> str:
    if isinstance(value, float) and value == value:
        return f"{value:.1%}"
    return "–"


def tiled_run_ids(df: pd.DataFrame) -> set[str]:
    """summary.tiled_runs without iterating a million strings in Python."""
    return set(df.loc[df["phase"].isin(GAP_PHASES), "run_id"].unique())


def timelines_section(df: pd.DataFrame, figures: Path, timeline_round: int = 2) -> str:
    tiled_ids = tiled_run_ids(df)
    every_run = tiled_ids >= set(df["run_id"].unique())
    tiled = df if every_run else df[df["run_id"].isin(tiled_ids)]
    if tiled.empty:
        return _note(
            "No timeline: this phase table has no round anatomy, so a round's "
            "phases leave gaps (see Round anatomy)."
        )
    parts = []
    for network, run_id, round_ in choose_gantt_rounds(tiled, timeline_round):
        name = f"timeline_{_safe_name(network)}"
        parts.append(
            _figure(
                partial(gantt, tiled, run_id, round_, figures / name),
                f"{network}: run {run_id}, round {round_}. One row per node (top: "
                "the server's aggregation timer); each bar is one phase from its "
                f"start to its end, hatched bars wait. Round {timeline_round} is "
                "shown when it exists, else the first (round 1 includes start-up "
                "effects).",
            )
        )
    return "".join(parts)


def _ratio_value(metric: str, value: float) -> str:
    return f"{value:.1%}" if "share" in metric else f"{value:.1f}×"


def ratios_section(ratios: pd.DataFrame) -> str:
    parts = []
    if ratios.empty:
        parts.append(_note("No study ratio could be computed from this data."))
    else:
        rows = [
            [metric, network, _ratio_value(metric, value), definition]
            for metric, network, value, definition in zip(
                ratios["metric"].tolist(),
                ratios["network"].tolist(),
                ratios["value"].tolist(),
                ratios["definition"].tolist(),
                strict=True,
            )
        ]
        parts.append(
            _table(
                ["metric", "network", "value", "definition"],
                rows,
                numeric=lambda j: j == 2,
            )
        )
    metrics = set(ratios["metric"]) if not ratios.empty else set()
    for wanted in ("5G uplink / Ethernet uplink", "5G uplink / WiFi uplink"):
        if wanted not in metrics:
            parts.append(
                _note(f"{wanted}: not computed (needs uplink data on both networks).")
            )
    return "".join(parts)
