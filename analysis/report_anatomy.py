"""Report sections on the round: where its time goes (stacked bar) and timelines."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.figures import anatomy_bar, choose_gantt_rounds, gantt, phase_bar
from analysis.html import details
from analysis.html import esc as _esc
from analysis.html import figure as _figure
from analysis.html import note as _note
from analysis.html import safe_name as _safe_name
from analysis.summary import (
    GAP_PHASES,
    LEGACY_PHASES,
    PHASE_DEFINITIONS,
    PHASE_ORDER,
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
            "Round time (rounds with the round anatomy): the longest node round, from "
            "the round's first dispatch to its last reply's pickup, i.e. the sum of "
            "its phases, server aggregation and waiting included."
        )
    if False in kinds:
        parts.append(
            "Round time (rounds without the round anatomy): the longest node round "
            "(downlink + training + evaluation + uplink), plus the server's "
            "aggregation; time messages wait in the SuperLink is in no phase."
        )
    return "".join(_note(p) for p in parts)


def definitions() -> str:
    """The phases' one-line definitions, as a definition list."""
    items = "".join(
        f"<dt>{_esc(phase)}</dt><dd>{_esc(PHASE_DEFINITIONS[phase])}</dd>"
        for phase in PHASE_ORDER
    )
    return f"<dl>{items}</dl>"


def anatomy_section(
    df: pd.DataFrame,
    shares: pd.DataFrame,
    medians: pd.DataFrame,
    rounds: pd.DataFrame,
    figures: Path,
) -> str:
    """The stacked bar of every phase's share of the median round, per network.

    A phase table without the round anatomy (an older one) has no waits to
    share out: it gets the legacy bar of medians (``medians``) instead.
    """
    legacy = _figure(
        partial(phase_bar, medians, figures / "phase_bar"),
        "Median seconds per phase and round (downlink, training, evaluation, "
        "uplink, server aggregation), stacked per network. Each segment is a "
        "median on its own, and waits are in no phase: the bar's height is not "
        "the round time.",
    )
    if not tiled_run_ids(df):
        return (
            legacy
            + _round_definition(rounds)
            + _note(
                "This phase table has no round anatomy (no dispatch_wait, "
                "client_startup, reply_handoff, pickup_wait or server_other rows): "
                "it was built by an older analysis.phases. Rebuild phases.parquet "
                "from the runs' events to see where a round's time goes."
            )
        )
    bar = _figure(
        partial(anatomy_bar, shares, figures / "anatomy_bar"),
        "Each network's median round time, split by every phase's share of all "
        "node-round seconds (waits and start-up included, so the stack is the "
        "round). Hatched phases wait (on Flower's polling or on other nodes) "
        "rather than work. Per-phase medians and shares: the Study table.",
        "anatomy-figure",
    )
    return (
        bar
        + _round_definition(rounds)
        + details("What each phase is", definitions())
        + _note(
            "docs/anatomy.md gives each phase's bounds and uncertainty; "
            "anatomy.csv has per-phase medians with their clock uncertainty."
        )
    )


def tiled_run_ids(df: pd.DataFrame) -> set[str]:
    """summary.tiled_runs without iterating a million strings in Python."""
    return set(df.loc[df["phase"].isin(GAP_PHASES), "run_id"].unique())


def _timeline(df: pd.DataFrame, chosen: tuple[str, str, int], figures: Path) -> str:
    network, run_id, round_ = chosen
    return _figure(
        partial(gantt, df, run_id, round_, figures / f"timeline_{_safe_name(network)}"),
        f"{network}: run {run_id}, round {round_}. One row per node (top: the "
        "server's aggregation timer); each bar is one phase from its start to its "
        "end, hatched bars wait.",
        f"timeline-{_safe_name(network)}",
    )


def timelines_section(
    df: pd.DataFrame,
    figures: Path,
    timeline_round: int = 2,
    first: str | None = None,
) -> str:
    """One round's timeline of network ``first`` (else the first), others folded.

    Every network's timeline is drawn and written; round ``timeline_round`` is
    shown when it exists, else the first (round 1 includes start-up effects).
    """
    tiled_ids = tiled_run_ids(df)
    every_run = tiled_ids >= set(df["run_id"].unique())
    tiled = df if every_run else df[df["run_id"].isin(tiled_ids)]
    if tiled.empty:
        return _note(
            "No timeline: this phase table has no round anatomy, so a round's "
            "phases leave gaps (see Where a round goes)."
        )
    chosen = choose_gantt_rounds(tiled, timeline_round)
    chosen.sort(key=lambda c: c[0] != first)
    shown = _timeline(tiled, chosen[0], figures)
    others = "".join(_timeline(tiled, c, figures) for c in chosen[1:])
    names = ", ".join(c[0] for c in chosen[1:])
    return shown + details(f"Timelines of the other networks ({names})", others)
