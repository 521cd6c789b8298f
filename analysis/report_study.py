"""The report's study sections: study table, stragglers, convergence, Markdown summary.

:func:`study_results` computes the tables once (:mod:`analysis.study`,
:mod:`analysis.stragglers`, :mod:`analysis.convergence`) and writes them as CSV;
the ``*_section`` functions turn them into HTML with their figures, and
:func:`markdown_summary` into the short ``summary.md``. docs/report.md defines
every number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.convergence import (
    default_target,
    read_metrics,
    time_to_target,
)
from analysis.figures_ecdf import phase_ecdfs
from analysis.figures_study import convergence_figure, straggler_heatmap, study_bars
from analysis.figures_system import bytes_over_time
from analysis.html import figure, fmt, note, safe_name, table
from analysis.rollup import Rollup, rollup
from analysis.stragglers import node_leads, straggler_rounds, straggler_summary
from analysis.study import (
    ROUND_QUANTITY,
    UPLINK_SHARE_QUANTITY,
    BootstrapConfig,
    Study,
    find_ratio,
    quantity_order,
    study_samples,
    study_table,
)
from analysis.summary import network_order

# Straggler rounds listed in the HTML at most (the CSV has all).
MAX_LISTED_ROUNDS = 60
# Heatmaps drawn at most (one per network and strategy).
MAX_HEATMAPS = 12
HEADLINE_QUANTITIES = ["downlink", "uplink", ROUND_QUANTITY]


@dataclass(frozen=True)
class StudyResults:
    """Every table of the study sections, computed once per report."""

    study: Study
    samples: pd.DataFrame
    stragglers: pd.DataFrame
    straggler_summary: pd.DataFrame
    leads: pd.DataFrame
    metrics: pd.DataFrame
    target: float | None
    targets: pd.DataFrame


def study_results(
    results_dir: Path,
    df: pd.DataFrame,
    manifest: Mapping[str, Any],
    warmup_rounds: int = 0,
    target_accuracy: float | None = None,
    bootstrap: BootstrapConfig | None = None,
    rolled: Rollup | None = None,
) -> StudyResults:
    """Compute the study, straggler and convergence tables and write their CSVs.

    ``rolled`` is ``rollup(df)`` when the caller has it already.
    """
    if rolled is None or warmup_rounds:
        rolled = rollup(df[df["round"] > warmup_rounds])
    samples = study_samples(df, 0, rolled)
    study = study_table(df, warmup_rounds, bootstrap, samples)
    rounds = straggler_rounds(df, 0, rolled)
    metrics = read_metrics(results_dir, manifest, df)
    target = target_accuracy if target_accuracy is not None else default_target(metrics)
    targets = (
        time_to_target(metrics, target)
        if target is not None and len(metrics)
        else pd.DataFrame()
    )
    results = StudyResults(
        study=study,
        samples=samples,
        stragglers=rounds,
        straggler_summary=straggler_summary(rounds),
        leads=node_leads(df, 0, rolled),
        metrics=metrics,
        target=target,
        targets=targets,
    )
    for name, frame in (
        ("study", study.table),
        ("study_ratios", study.ratios),
        ("stragglers", rounds),
        ("straggler_summary", results.straggler_summary),
        ("convergence", metrics),
        ("time_to_target", targets),
    ):
        frame.to_csv(results_dir / f"{name}.csv", index=False)
    return results


def _interval(low: object, high: object, digits: int = 3) -> str:
    return f"[{fmt(low, digits)}, {fmt(high, digits)}]"


def _value(quantity: str, value: object) -> str:
    if quantity == UPLINK_SHARE_QUANTITY and isinstance(value, float):
        return f"{value:.1%}" if value == value else "–"
    return fmt(value)


def study_section(results: StudyResults, figures: Path) -> str:
    """The study table (every phase, round time, uplink share) and the ratio table."""
    study = results.study
    if study.table.empty:
        return note("No study table: the phase table has no complete node rounds.")
    level = f"{study.confidence:.0%}"
    rows = [
        [
            r["network"],
            r["strategy"],
            r["quantity"],
            _value(r["quantity"], r["median"]),
            _interval(r["median_low"], r["median_high"])
            if r["quantity"] != UPLINK_SHARE_QUANTITY
            else f"[{_value(r['quantity'], r['median_low'])}, "
            f"{_value(r['quantity'], r['median_high'])}]",
            _value(r["quantity"], r["p95"]),
            _interval(r["p95_low"], r["p95_high"])
            if r["quantity"] != UPLINK_SHARE_QUANTITY
            else f"[{_value(r['quantity'], r['p95_low'])}, "
            f"{_value(r['quantity'], r['p95_high'])}]",
            r["n"],
            r["rounds"],
            r["runs"],
        ]
        for r in study.table.to_dict("records")
    ]
    headers = [
        "network",
        "strategy",
        "quantity",
        "median (s)",
        f"{level} CI",
        "p95 (s)",
        f"{level} CI",
        "samples",
        "rounds",
        "runs",
    ]
    warmup = (
        f" Rounds 1 to {study.warmup_rounds} are left out as warm-up."
        if study.warmup_rounds
        else " No round is left out as warm-up (see --warmup-rounds)."
    )
    return (
        figure(
            partial(study_bars, study.table, HEADLINE_QUANTITIES, figures / "study"),
            f"Median downlink, uplink and round time per network, with {level} "
            "bootstrap confidence intervals over rounds and repetitions.",
            "study-figure",
        )
        + table(headers, rows, numeric=lambda j: j > 2, table_id="study-table")
        + note(
            "Phases: a node's seconds in the phase per round (train and evaluate "
            "messages summed; aggregation: the server's timer). round: the slowest "
            "node's round time, complete rounds only. uplink_share: the slowest "
            "node's uplink over the round time (a share, not seconds). CI: "
            "percentile bootstrap, resampling repetitions and then rounds within "
            "them." + warmup
        )
        + "<h3>Ratios between networks</h3>"
        + _ratios_table(study)
    )


def _ratios_table(study: Study) -> str:
    ratios = study.ratios
    if ratios.empty:
        return note("No ratio: the study has fewer than two networks.")
    rows = [
        [
            r["strategy"],
            r["quantity"],
            f"{r['numerator']} / {r['denominator']}",
            f"{r['ratio']:.2f}×",
            f"[{r['ratio_low']:.2f}, {r['ratio_high']:.2f}]",
        ]
        for r in ratios.to_dict("records")
    ]
    headers = ["strategy", "quantity", "networks", "ratio of medians", "CI"]
    return table(headers, rows, numeric=lambda j: j > 2, table_id="ratio-table")


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
        "most often slowest",
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
            "consistent: one node was the straggler in at least half the rounds; "
            "competing: no node was."
        ),
        "<h3>Per round</h3>",
        _rounds_table(results.stragglers),
    ]
    parts.extend(_heatmaps(results, figures))
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
                    f"{network}, {strategy}: busy seconds over the median node",
                    figures / name,
                ),
                f"{network}, {strategy}: each node's busy seconds minus its round's "
                "median node's (node × round); dots mark each round's straggler.",
                f"straggler-heatmap-{safe_name(str(network))}",
            )
        )
    return parts


def convergence_section(results: StudyResults, figures: Path) -> str:
    """Accuracy and loss against round and wall-clock time; time to target."""
    metrics = results.metrics
    if metrics.empty:
        return note(
            "No convergence data: no run's events.jsonl has metrics events "
            "(the ServerApp writes them, docs/events.md)."
        )
    parts = [
        figure(
            partial(
                convergence_figure, metrics, results.target, figures / "convergence"
            ),
            "Accuracy and loss per round (left) and over wall-clock time since the "
            "run's first dispatch (right); thin: each run, thick: median per "
            "network and strategy. Dotted: the target accuracy.",
            "convergence-figure",
        )
    ]
    targets = results.targets
    if results.target is not None and len(targets):
        rows = [
            [
                r["network"],
                r["strategy"],
                f"{r['runs_reaching']} of {r['runs']}",
                fmt(r["median_time_to_target_s"], 1),
                f"[{fmt(r['min_time_to_target_s'], 1)}, "
                f"{fmt(r['max_time_to_target_s'], 1)}]",
                fmt(r["median_rounds_to_target"], 1),
                fmt(r["median_final_accuracy"]),
                fmt(r["median_final_loss"]),
            ]
            for r in targets.to_dict("records")
        ]
        headers = [
            "network",
            "strategy",
            "runs reaching target",
            "median time to target (s)",
            "range (s)",
            "median rounds to target",
            "final accuracy (median)",
            "final loss (median)",
        ]
        parts.append(
            note(
                f"Target accuracy {results.target:.3f}"
                + (
                    " (90% of the best accuracy any run reached; set it with "
                    "--target-accuracy)."
                    if results.target is not None
                    else "."
                )
            )
        )
        parts.append(
            table(headers, rows, numeric=lambda j: j > 1, table_id="target-table")
        )
    scopes = ", ".join(sorted(set(metrics["scope"])))
    parts.append(note(f"Metrics from the {scopes} scope (docs/events.md)."))
    return "".join(parts)


def ecdf_section(results: StudyResults, figures: Path) -> str:
    """ECDFs of every phase's seconds per node and round, one panel per phase."""
    quantities = set(results.samples["quantity"].unique())
    phases = quantity_order(list(quantities - {ROUND_QUANTITY, UPLINK_SHARE_QUANTITY}))
    return figure(
        partial(phase_ecdfs, results.samples, phases, figures / "phase_ecdfs"),
        "ECDF of each phase's seconds per node and round, one colour per network "
        "(drawn through 400 quantiles when there are more samples).",
        "phase-ecdfs",
    )


def bytes_section(nic: pd.DataFrame, figures: Path) -> str:
    """Cumulative bytes and throughput of the server's NIC over time, per network."""
    return figure(
        partial(bytes_over_time, nic, figures / "bytes_over_time"),
        "Server: cumulative bytes (top) and throughput (bottom) of its busiest NIC "
        "over one run per network, from the system sampler (headers included).",
        "bytes-over-time",
    )


def markdown_summary(name: str, results: StudyResults, files: list[str]) -> str:
    """The short ``summary.md``: headline numbers with intervals, and what is where."""
    study = results.study
    level = f"{study.confidence:.0%}"
    lines = [f"# flowerbed report: {name}", ""]
    table_ = study.table
    if len(table_):
        lines += [
            f"Medians per network with {level} bootstrap intervals over rounds and "
            "repetitions"
            + (
                f" (rounds 1-{study.warmup_rounds} left out)."
                if study.warmup_rounds
                else "."
            ),
            "",
            "| network | strategy | round (s) | downlink (s) | uplink (s) "
            "| uplink share |",
            "|---|---|---|---|---|---|",
        ]
        for (network, strategy), group in table_.groupby(
            ["network", "strategy"], sort=False
        ):
            cells = []
            for quantity in (
                ROUND_QUANTITY,
                "downlink",
                "uplink",
                UPLINK_SHARE_QUANTITY,
            ):
                row = group[group["quantity"] == quantity]
                if row.empty:
                    cells.append("–")
                    continue
                r = row.iloc[0]
                cells.append(
                    f"{_value(quantity, r['median'])} "
                    f"[{_value(quantity, r['median_low'])}, "
                    f"{_value(quantity, r['median_high'])}]"
                )
            lines.append(f"| {network} | {strategy} | " + " | ".join(cells) + " |")
        lines.append("")
    for numerator, denominator in (
        ("5g", "ethernet"),
        ("5g", "wifi"),
        ("wifi", "ethernet"),
    ):
        ratio = find_ratio(study.ratios, "uplink", numerator, denominator)
        if ratio is not None:
            lines.append(
                f"- Uplink {ratio['numerator']} / {ratio['denominator']}: "
                f"{ratio['ratio']:.2f}× [{ratio['ratio_low']:.2f}, "
                f"{ratio['ratio_high']:.2f}]"
            )
    for s in results.straggler_summary.to_dict("records"):
        lines.append(
            f"- Stragglers on {s['network']} ({s['strategy']}): {s['verdict']}; "
            f"{s['top_straggler']} slowest in {s['top_rounds']} of {s['rounds']} "
            f"rounds, usually in {s['usual_cause'] or 'no single phase'}."
        )
    if results.target is not None:
        for t in results.targets.to_dict("records"):
            lines.append(
                f"- Time to accuracy {results.target:.3f} on {t['network']} "
                f"({t['strategy']}): {fmt(t['median_time_to_target_s'], 1)} s median "
                f"({t['runs_reaching']} of {t['runs']} runs); final accuracy "
                f"{fmt(t['median_final_accuracy'])}."
            )
    lines += ["", "Files: " + ", ".join(files), ""]
    return "\n".join(lines)
