"""The report's straggler section: per network the busiest node, per round, heatmaps.

One definition of the slowest node runs through the report: the straggler, the
node with the most busy seconds in a round (:mod:`analysis.stragglers`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd

from analysis.figures_study import straggler_heatmap
from analysis.html import details, figure, fmt, note, safe_name, table
from analysis.report_study import StudyResults
from analysis.summary import network_order

# Straggler rounds listed in the HTML at most (the CSV has all).
MAX_LISTED_ROUNDS = 60
# Heatmaps drawn at most (one per network and strategy).
MAX_HEATMAPS = 12


def straggler_section(results: StudyResults, figures: Path) -> str:
    """Per network how consistent the straggler is, per round who and why, heatmaps."""
    summary = results.straggler_summary
    if summary.empty:
        return note("No straggler table: no node round has a round time.")
    rows = [
        [
            r["network"],
            r["strategy"],
            r["rounds"],
            r["top_straggler"],
            f"{r['top_rounds']} ({r['top_share']:.0%})",
            r["second_straggler"] or "–",
            f"{r['second_share']:.0%}" if r["second_straggler"] else "–",
            r["distinct_stragglers"],
            r["verdict"],
            fmt(r["median_lead_s"]),
            r["usual_cause"],
        ]
        for r in summary.to_dict("records")
    ]
    headers = [
        "network",
        "strategy",
        "rounds",
        "straggler (busiest node, most often)",
        "rounds slowest",
        "next",
        "next share",
        "distinct stragglers",
        "verdict",
        "median lead (s)",
        "usual cause",
    ]
    parts = [
        table(
            headers,
            rows,
            numeric=lambda j: j in (2, 4, 6, 7, 9),
            table_id="straggler-table",
        ),
        note(
            "The straggler of a round is its busiest node: the most seconds in "
            "downlink, client start-up, training, evaluation, reply hand-off and "
            "uplink (waiting for Flower's polls, the other nodes or the server "
            "is not busy; every node's round ends at about the same poll). Lead: "
            "its busy seconds minus the round's median node's. Cause: the phase "
            "in which it spent the most seconds more than the median node. "
            "consistent: one node was the straggler in more than half the rounds; "
            "competing: no node was."
        ),
        details(
            f"Per round: the straggler, its lead and cause ({len(results.stragglers)} "
            "rounds)",
            _rounds_table(results.stragglers),
        ),
        details(
            "Heatmaps: each node's busy seconds over its round's median node",
            "".join(_heatmaps(results, figures)),
        ),
    ]
    return "".join(parts)


def _rounds_table(rounds: pd.DataFrame) -> str:
    shown = rounds.head(MAX_LISTED_ROUNDS)
    rows = [
        [
            r["network"],
            r["strategy"],
            r["run_id"],
            r["round"],
            r["straggler"],
            fmt(r["straggler_busy_s"]),
            fmt(r["lead_s"]),
            f"{r['lead_share']:.1%}" if r["lead_share"] == r["lead_share"] else "–",
            r["runner_up"] if isinstance(r["runner_up"], str) else "–",
            r["cause_phase"],
            fmt(r["cause_excess_s"]),
        ]
        for r in shown.to_dict("records")
    ]
    headers = [
        "network",
        "strategy",
        "run",
        "round",
        "straggler",
        "its busy time (s)",
        "lead over median (s)",
        "lead",
        "runner-up",
        "cause",
        "cause: excess over median (s)",
    ]
    more = len(rounds) - len(shown)
    return table(headers, rows, numeric=lambda j: j in (3, 5, 6, 7, 10)) + (
        note(f"{more} more rounds in stragglers.csv.") if more else ""
    )


def _heatmaps(results: StudyResults, figures: Path) -> list[str]:
    parts = []
    leads = results.leads
    groups = list(leads.groupby(["network", "strategy"], sort=False))
    order = {n: i for i, n in enumerate(network_order(leads["network"].unique()))}
    groups.sort(key=lambda item: (order[str(item[0][0])], str(item[0][1])))
    for (network, strategy), group in groups[:MAX_HEATMAPS]:
        name = f"stragglers_{safe_name(str(network))}_{safe_name(str(strategy))}"
        marks = results.stragglers[
            (results.stragglers["network"] == network)
            & (results.stragglers["strategy"] == strategy)
        ]
        parts.append(
            figure(
                partial(
                    straggler_heatmap,
                    group,
                    marks,
                    f"{network}, {strategy}: lead over the median node",
                    figures / name,
                ),
                f"{network}, {strategy}: each node's busy seconds minus its round's "
                "median node's (node × round); dots mark each round's straggler.",
                f"straggler-heatmap-{safe_name(str(network))}",
            )
        )
    return parts
