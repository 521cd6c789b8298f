"""The report's study sections: study table, stragglers, convergence, Markdown summary.

:func:`study_results` computes the tables once (:mod:`analysis.study`,
:mod:`analysis.stragglers`, :mod:`analysis.convergence`) and writes them as CSV;
the ``*_section`` functions turn them into HTML with their figures, and
:func:`markdown_summary` into the short ``summary.md``. docs/report.md defines
every number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.convergence import (
    chance_accuracy,
    default_target,
    learning_table,
    read_metrics,
    time_to_target,
)
from analysis.damage import Damage
from analysis.figures_ecdf import phase_ecdfs
from analysis.figures_study import study_bars
from analysis.figures_system import bytes_over_time
from analysis.html import details, figure, fmt, note, table
from analysis.linkbound import busy_samples
from analysis.rollup import Rollup, rollup
from analysis.stragglers import node_leads, straggler_rounds, straggler_summary
from analysis.study import (
    MIN_INTERVAL_ROUNDS,
    ROUND_QUANTITY,
    UPLINK_SHARE_QUANTITY,
    BootstrapConfig,
    Study,
    find_ratio,
    has_interval,
    quantity_order,
    sample_ranges,
    study_samples,
    study_table,
)

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
    learning: pd.DataFrame
    chance: float


def study_results(
    results_dir: Path,
    df: pd.DataFrame,
    manifest: Mapping[str, Any],
    warmup_rounds: int = 0,
    target_accuracy: float | None = None,
    bootstrap: BootstrapConfig | None = None,
    rolled: Rollup | None = None,
    transfers: pd.DataFrame | None = None,
    damage: Damage | None = None,
) -> StudyResults:
    """Compute the study, straggler and convergence tables and write their CSVs.

    ``rolled`` is ``rollup(df)`` when the caller has it already; ``transfers``
    (``transfers.csv``) adds each node round's link-busy seconds
    (``uplink_busy``, ``downlink_busy``: :func:`analysis.linkbound.busy_samples`).
    """
    if rolled is None or warmup_rounds:
        rolled = rollup(df[df["round"] > warmup_rounds])
    samples = study_samples(df, 0, rolled)
    if transfers is not None and len(transfers):
        busy = busy_samples(transfers, df, warmup_rounds)
        if len(busy):
            samples = pd.concat([samples, busy], ignore_index=True).astype(
                {"network": str, "strategy": str, "quantity": str}
            )
    study = study_table(df, warmup_rounds, bootstrap, samples)
    rounds = straggler_rounds(df, 0, rolled)
    metrics = read_metrics(results_dir, manifest, df, damage)
    chance = chance_accuracy(manifest)
    target = (
        target_accuracy
        if target_accuracy is not None
        else default_target(metrics, chance)
    )
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
        learning=learning_table(metrics, chance) if len(metrics) else pd.DataFrame(),
        chance=chance,
    )
    for name, frame in (
        ("study", study.table),
        ("study_ratios", study.ratios),
        ("stragglers", rounds),
        ("straggler_summary", results.straggler_summary),
        ("convergence", metrics),
        ("time_to_target", targets),
        ("learning", results.learning),
    ):
        frame.to_csv(results_dir / f"{name}.csv", index=False)
    return results


def _value(quantity: str, value: object) -> str:
    """Seconds at 3 decimals, the uplink share as a percentage."""
    if quantity == UPLINK_SHARE_QUANTITY and isinstance(value, float):
        return f"{value:.1%}" if value == value else "–"
    return fmt(value)


def _spread(
    row: Mapping[Any, Any], ranges: Mapping[tuple[str, str, str], tuple[Any, Any]]
) -> str:
    """The CI with enough rounds for one, else the samples' range (``min–max``)."""
    quantity = str(row["quantity"])
    if has_interval(row["rounds"]):
        low, high = row["median_low"], row["median_high"]
        return f"CI {_value(quantity, low)}–{_value(quantity, high)}"
    low, high = ranges.get((row["network"], row["strategy"], quantity), (None, None))
    return f"range {_value(quantity, low)}–{_value(quantity, high)}"


def _study_rows(results: StudyResults, shares: pd.DataFrame) -> list[list[object]]:
    ranges = {
        (r["network"], r["strategy"], r["quantity"]): (r["min"], r["max"])
        for r in sample_ranges(results.samples).to_dict("records")
    }
    share_of = {
        (r["network"], r["phase"]): r["share"] for r in shares.to_dict("records")
    }
    rows = []
    for r in results.study.table.to_dict("records"):
        share = share_of.get((r["network"], r["quantity"]))
        rows.append(
            [
                r["network"],
                r["strategy"],
                r["quantity"],
                _value(r["quantity"], r["median"]),
                _spread(r, ranges),
                _value(r["quantity"], r["p95"]),
                f"{share:.1%}" if isinstance(share, float) and share == share else "",
                r["n"],
                r["rounds"],
                r["runs"],
            ]
        )
    return rows


FLOOR_HEADERS = [
    "network",
    "strategy",
    "launch",
    "round (s)",
    "floor (s)",
    "round / floor",
    "Flower's share",
    "rounds",
]


def _floor_rows(floors: pd.DataFrame) -> list[list[object]]:
    return [
        [
            r["network"],
            r["strategy"],
            r["mode"],
            fmt(r["median_round_s"]),
            fmt(r["median_floor_s"]),
            f"{r['round_over_floor']:.2f}×",
            f"{r['flower_share']:.1%}"
            if r["flower_share"] == r["flower_share"]
            else "–",
            r["rounds"],
        ]
        for r in floors.to_dict("records")
    ]


def floor_section(floors: pd.DataFrame) -> str:
    """The round-vs-floor table (:func:`analysis.floor.floor_table`) and its key."""
    if floors.empty:
        return note("No floor: the phase table has no complete round.")
    levers = sorted({str(v) for v in floors["levers"] if isinstance(v, str) and v})
    mode = ", ".join(sorted(set(floors["mode"])))
    return (
        "<h3>Round vs floor</h3>"
        + table(
            FLOOR_HEADERS,
            _floor_rows(floors),
            numeric=lambda j: j > 2,
            table_id="floor-table",
        )
        + note(
            f"Launch: {mode}"
            + (f" (levers: {'; '.join(levers)})" if levers else "")
            + ". Round: the median round time (the study's round row). Floor: per "
            "round, the node with the most downlink + training + evaluation + "
            "uplink seconds (on the wire where captured), plus the server's "
            "aggregation; median over the same complete rounds. Flower's share: "
            "dispatch_wait, client_startup, reply_handoff, pickup_wait and "
            "server_other over all node-round seconds."
        )
    )


def study_section(
    results: StudyResults,
    figures: Path,
    shares: pd.DataFrame | None = None,
    floors: pd.DataFrame | None = None,
) -> str:
    """The study: median bars, the per-phase table (folded) and the ratio table.

    The per-phase table is the one place each phase's median is shown: with
    its CI where there are :data:`MIN_INTERVAL_ROUNDS` rounds, else the range
    of its samples, and the phase's share of the node rounds (``shares``,
    :func:`analysis.summary.phase_shares`).
    """
    study = results.study
    if study.table.empty:
        return note("No study table: the phase table has no complete node rounds.")
    level = f"{study.confidence:.0%}"
    enough = all(has_interval(r) for r in study.table["rounds"])
    interval = f"{level} bootstrap CI" if enough else "range (min–max)"
    bars = study.table.copy()
    if not enough:
        ranges = sample_ranges(results.samples)
        bars = bars.merge(ranges, on=["network", "strategy", "quantity"], how="left")
        bars["median_low"], bars["median_high"] = bars["min"], bars["max"]
    headers = [
        "network",
        "strategy",
        "quantity",
        "median (s)",
        f"{level} CI (≥{MIN_INTERVAL_ROUNDS} rounds) or range",
        "p95 (s)",
        "share of node rounds",
        "samples",
        "rounds",
        "runs",
    ]
    rows = _study_rows(
        results,
        shares
        if shares is not None
        else pd.DataFrame(columns=["network", "phase", "share"]),
    )
    warmup = (
        f" Rounds 1 to {study.warmup_rounds} are left out as warm-up."
        if study.warmup_rounds
        else " No round is left out as warm-up (see --warmup-rounds)."
    )
    table_html = table(headers, rows, numeric=lambda j: j > 2, table_id="study-table")
    return (
        figure(
            partial(
                study_bars,
                bars,
                HEADLINE_QUANTITIES,
                figures / "study",
                interval,
            ),
            f"Median downlink, uplink and round time per network; error bars: "
            f"{interval}"
            + (
                "."
                if enough
                else f" of the samples (fewer than {MIN_INTERVAL_ROUNDS} rounds per "
                "network: too few for a confidence interval)."
            ),
            "study-figure",
        )
        + "<h3>Ratios between networks</h3>"
        + _ratios_table(study)
        + (floor_section(floors) if floors is not None else "")
        + details(
            f"Every phase, round time and uplink share per network ({len(rows)} rows)",
            table_html
            + note(
                "Phases: a node's seconds in the phase per round (train and "
                "evaluate messages summed; aggregation: the server's timer). "
                "round: the round time (the longest node round), complete rounds "
                "only. uplink_share: that node round's uplink over the round time. CI: "
                "percentile bootstrap, resampling repetitions and then rounds "
                f"within them, given with {MIN_INTERVAL_ROUNDS} or more rounds; "
                "with fewer, the range of the samples. Share: the phase's part of "
                "all node-round seconds (the anatomy bar's segments)." + warmup
            ),
        )
    )


def _ratios_table(study: Study) -> str:
    ratios = study.ratios
    if ratios.empty:
        return note("No ratio: the study has fewer than two networks.")
    units = {
        (r["network"], r["strategy"], r["quantity"]): r["rounds"]
        for r in study.table.to_dict("records")
    }
    rows = []
    for r in ratios.to_dict("records"):
        both = [
            units.get((r[side], r["strategy"], r["quantity"]))
            for side in ("numerator", "denominator")
        ]
        interval = (
            f"{r['ratio_low']:.2f}–{r['ratio_high']:.2f}×"
            if all(has_interval(u) for u in both)
            else f"– ({min(int(u or 0) for u in both)} rounds)"
        )
        rows.append(
            [
                r["strategy"],
                r["quantity"],
                f"{r['numerator']} / {r['denominator']}",
                f"{r['ratio']:.2f}×",
                interval,
            ]
        )
    headers = [
        "strategy",
        "quantity",
        "networks",
        "ratio of medians",
        f"{study.confidence:.0%} CI (≥{MIN_INTERVAL_ROUNDS} rounds)",
    ]
    main = [r for r in rows if r[1] in HEADLINE_QUANTITIES]
    rest = [r for r in rows if r[1] not in HEADLINE_QUANTITIES]
    return (
        table(headers, main, numeric=lambda j: j > 2, table_id="ratio-table")
        + details(
            f"Ratios of every other phase ({len(rest)} rows)",
            table(headers, rest, numeric=lambda j: j > 2),
        )
        if rest
        else table(headers, main, numeric=lambda j: j > 2, table_id="ratio-table")
    )


def ecdf_section(results: StudyResults, figures: Path) -> str:
    """ECDFs of every phase's seconds per node and round, one panel per phase."""
    quantities = set(results.samples["quantity"].unique())
    phases = quantity_order(list(quantities - {ROUND_QUANTITY, UPLINK_SHARE_QUANTITY}))
    return figure(
        partial(phase_ecdfs, results.samples, phases, figures / "phase_ecdfs"),
        "ECDF of each phase's seconds per node and round (x axis), one colour per "
        "network (drawn through 400 quantiles when there are more samples).",
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


def markdown_summary(
    name: str,
    results: StudyResults,
    files: list[str],
    findings: Sequence[str] = (),
    floors: pd.DataFrame | None = None,
) -> str:
    """The short ``summary.md``: the findings, headline numbers, and what is where.

    A median's interval is its CI with :data:`MIN_INTERVAL_ROUNDS` rounds or
    more, else the range of its samples, as in the report.
    """
    study = results.study
    level = f"{study.confidence:.0%}"
    lines = [f"# flowerbed report: {name}", ""]
    if findings:
        lines += ["## Findings", "", *(f"- {s}" for s in findings), ""]
    table_ = study.table
    ranges = {
        (r["network"], r["strategy"], r["quantity"]): (r["min"], r["max"])
        for r in sample_ranges(results.samples).to_dict("records")
    }
    if len(table_):
        lines += [
            f"Medians per network; in brackets the {level} bootstrap CI over rounds "
            f"and repetitions ({MIN_INTERVAL_ROUNDS} or more rounds), else range of "
            "the samples"
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
                low, high = (
                    (r["median_low"], r["median_high"])
                    if has_interval(r["rounds"])
                    else ranges.get((network, strategy, quantity), (None, None))
                )
                cells.append(
                    f"{_value(quantity, r['median'])} "
                    f"[{_value(quantity, low)}, {_value(quantity, high)}]"
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
            rounds = [
                r["rounds"]
                for r in table_.to_dict("records")
                if r["quantity"] == "uplink"
                and r["strategy"] == ratio["strategy"]
                and r["network"] in (ratio["numerator"], ratio["denominator"])
            ]
            interval = (
                f"[{ratio['ratio_low']:.2f}, {ratio['ratio_high']:.2f}]"
                if rounds and all(has_interval(n) for n in rounds)
                else f"(no CI: {min(rounds, default=0)} rounds, "
                f"{MIN_INTERVAL_ROUNDS} needed)"
            )
            lines.append(
                f"- Uplink {ratio['numerator']} / {ratio['denominator']}: "
                f"{ratio['ratio']:.2f}× {interval}"
            )
    for s in results.straggler_summary.to_dict("records"):
        lines.append(
            f"- Stragglers on {s['network']} ({s['strategy']}): {s['verdict']}; "
            f"{s['top_straggler']} busiest in {s['top_rounds']} of {s['rounds']} "
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
    lines += _floor_markdown(floors)
    lines += ["", "Files: " + ", ".join(files), ""]
    return "\n".join(lines)


def _floor_markdown(floors: pd.DataFrame | None) -> list[str]:
    """The round-vs-floor table as Markdown (nothing without a floor)."""
    if floors is None or floors.empty:
        return []
    lines = [
        "",
        "Round vs floor (floor: the node with the most downlink + training + "
        "evaluation + uplink seconds, plus aggregation; medians over complete rounds):",
        "",
        "| " + " | ".join(FLOOR_HEADERS) + " |",
        "|" + "---|" * len(FLOOR_HEADERS),
    ]
    for row in _floor_rows(floors):
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return lines
