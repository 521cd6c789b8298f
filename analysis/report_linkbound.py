"""The report's "Link or host" section: what limited each network's transfers,
and the seed study's figures beside this campaign's.

:func:`link_bounds` reads ``transfers.csv``, marks each transfer against its
link's rate (:mod:`analysis.linkbound`; the manifest's calibration when there is
one, else the inventory's profiles) and writes ``link_bound.csv``;
:func:`linkbound_section` shows that table with what it means, and
:func:`reference_section` the published figures of :mod:`analysis.reference`
beside this campaign's (``reference.csv``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.damage import LINK_VERDICTS, TRANSFERS, Damage
from analysis.html import fmt, note, table
from analysis.linkbound import (
    BOUND_TABLE_COLUMNS,
    HOST_BOUND_FACTOR,
    MIN_BOUND_BYTES,
    bound_table,
    calibration_rates,
    mark_bound,
    physics_flags,
    profile_rates,
)
from analysis.reference import CITATION, reference_table
from analysis.results_files import read_csv_table
from analysis.study import Study


def manifest_rates(
    manifest: Mapping[str, Any],
) -> dict[tuple[str, ...], tuple[float, str]]:
    """The rates the report judges transfers by: the manifest's link profiles, and
    each node's calibrated rate where the campaign had a current calibration."""
    profiles = manifest.get("link_profiles")
    rates = profile_rates(profiles) if isinstance(profiles, Mapping) else {}
    return {**rates, **calibration_rates(manifest.get("calibration"))}


def read_transfers(results_dir: Path, damage: Damage | None = None) -> pd.DataFrame:
    """``transfers.csv``, or an empty frame when there is none or it is unreadable
    (recorded in ``damage``: the link-busy quantities and verdicts lack it)."""
    table, _ = read_csv_table(
        results_dir / "transfers.csv", (), damage, (TRANSFERS, LINK_VERDICTS)
    )
    return pd.DataFrame() if table is None else table


def link_bounds(
    results_dir: Path, transfers: pd.DataFrame, manifest: Mapping[str, Any]
) -> pd.DataFrame:
    """The per-network verdicts, written to ``link_bound.csv`` (may be empty)."""
    needed = {"network", "direction", "node", "wire_s", "wire_bytes"}
    if transfers.empty or not needed <= set(transfers.columns):
        bounds = pd.DataFrame(columns=BOUND_TABLE_COLUMNS)
    else:
        bounds = bound_table(mark_bound(transfers, manifest_rates(manifest)))
    bounds.to_csv(results_dir / "link_bound.csv", index=False)
    return bounds


def linkbound_section(bounds: pd.DataFrame) -> str:
    """The table of :func:`link_bounds`, with the rule it applies."""
    if bounds.empty:
        return note(
            "No model-sized transfer was captured with a known link rate, so this "
            "report cannot say whether the links or the hosts set the transfer times."
        )
    columns = [
        "network",
        "direction",
        "transfers",
        "rate (Mbit/s)",
        "wire (s)",
        "link busy (s)",
        "gaps (s)",
        "floor (s)",
        "wire / floor",
        "host-bound",
        "verdict",
    ]
    rows = [
        [
            r.network,
            r.direction,
            str(r.transfers),
            f"{fmt(r.rate_mbit)} ({r.rate_source})",
            fmt(r.median_wire_s),
            fmt(r.median_busy_s),
            fmt(r.median_gaps_s),
            fmt(r.median_floor_s),
            f"{r.median_over_floor:.1f}×",
            f"{r.host_bound_share:.0%}",
            r.verdict,
        ]
        for r in bounds.itertuples()
    ]
    intro = (
        "<p>Per network and direction, medians over transfers of at least "
        f"{MIN_BOUND_BYTES // 1000} kB. <em>Wire</em> runs from a transfer's first "
        "to its last payload byte; the link was <em>busy</em> for the part where "
        "packets followed each other as the link's rate and round trip allow, and "
        "the rest are <em>gaps</em> (the host or Flower's protocol: per-object "
        "requests, back-offs, serialisation, a busy CPU). The <em>floor</em> is "
        "wire bytes ÷ the link's rate. A transfer over "
        f"{HOST_BOUND_FACTOR:g}× its floor is <strong>host-bound</strong>: its time "
        "measures the host and Flower, not the link. Per transfer in "
        "transfers.csv (busy_s, gaps_s, floor_s, over_floor, bound); this table "
        "is link_bound.csv.</p>"
    )
    flags = physics_flags(bounds, "up") + physics_flags(bounds, "down")
    return (
        intro
        + table(columns, rows, numeric=lambda j: 2 <= j <= 9)
        + "".join(note(f) for f in flags)
    )


def reference_section(results_dir: Path, study: Study, bounds: pd.DataFrame) -> str:
    """The seed study's headline figures beside this campaign's; ``reference.csv``."""
    ref = reference_table(study, bounds)
    ref.to_csv(results_dir / "reference.csv", index=False)
    measured = ref[ref["campaign"].notna()]
    if measured.empty:
        return note(
            f"This campaign measured none of the networks the seed study compares "
            f"({CITATION}: 5G, WiFi and Ethernet uplinks)."
        )
    rows = []
    for r in measured.to_dict("records"):
        share = "share" in str(r["figure"])
        pattern = "{:.0%}" if share else "{:.2f}×"
        busy = float(r["campaign_link_busy"])
        rows.append(
            [
                str(r["figure"]),
                f"{r['study']:.0%}" if share else f"{r['study']:g}×",
                pattern.format(r["campaign"]),
                pattern.format(r["campaign_low"])
                + "–"
                + pattern.format(r["campaign_high"]),
                "–" if busy != busy else f"{busy:.2f}×",
                str(r["basis"]),
            ]
        )
    headers = [
        "figure",
        "seed study",
        "this campaign",
        "interval",
        "link-busy only",
        "what this campaign's figure measures",
    ]
    return (
        f"<p>The headline figures of {CITATION} (Raspberry Pis, a real 5G SA "
        "network with about a quarter of TDD symbols for the uplink) beside this "
        "campaign's. <em>Link-busy only</em> is the same ratio of the uplinks' "
        "link-busy seconds (Link or host). An emulated campaign differs from the "
        "study for reasons docs/emulation.md lists (The seed study, emulated: "
        "`make study` runs the study's setup emulated); the last column says whether "
        "this campaign's figure is the links' or the hosts'.</p>"
        + table(headers, rows, numeric=lambda j: 1 <= j <= 4)
    )
