"""Campaigns side by side: several results folders' study tables and differences.

:func:`compare_campaigns` computes each folder's study table
(:mod:`analysis.study`), straggler summary and time to target, and lines them up
by (network, strategy, quantity). Each later campaign is compared with the
first: the difference of medians and whether it *exceeds the run-to-run
spread*, i.e. whether the two medians' bootstrap confidence intervals (over
rounds and repetitions) do not overlap. :func:`write_comparison` writes the
tables as CSV, an HTML page and a Markdown summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.convergence import default_target, read_metrics, time_to_target
from analysis.damage import Damage
from analysis.html import esc, fmt, note, section, table
from analysis.results_files import read_manifest, read_phase_table
from analysis.stragglers import straggler_rounds, straggler_summary
from analysis.study import BootstrapConfig, quantity_order, study_table
from analysis.summary import GAP_PHASES, network_order

KEYS = ["network", "strategy", "quantity"]
# Below this many rounds per network a bootstrap interval says little.
FEW_ROUNDS = 5
RATIO_KEYS = ["strategy", "quantity", "numerator", "denominator"]
_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:90rem;"
    "padding:0 1rem;color:#222}table{border-collapse:collapse;font-size:.9rem}"
    "th,td{border:1px solid #ccc;padding:.2rem .5rem}td.num{text-align:right}"
    "th{background:#f2f2f2}.note{color:#555;font-style:italic}"
    "tr.exceeds td{background:#fff4e5}"
)


@dataclass(frozen=True)
class Comparison:
    """The side-by-side tables of several campaigns (``labels`` in input order)."""

    labels: list[str]
    study: pd.DataFrame
    ratios: pd.DataFrame
    stragglers: pd.DataFrame
    targets: pd.DataFrame
    target: float | None
    notes: list[str]


def _labels(dirs: Sequence[Path]) -> list[str]:
    labels: list[str] = []
    for path in dirs:
        label = Path(path).resolve().name or str(path)
        while label in labels:
            label = f"{label}'"
        labels.append(label)
    return labels


def _manifest(path: Path) -> dict[str, Any]:
    """A folder's manifest ({} when it has none); a damaged one names the file."""
    manifest, _ = read_manifest(path)
    return manifest


def _side_by_side(
    frames: list[pd.DataFrame],
    labels: list[str],
    keys: list[str],
    value: str,
    low: str,
    high: str,
) -> pd.DataFrame:
    """One row per key; per campaign value/low/high; per later campaign diff/exceeds."""
    merged: pd.DataFrame | None = None
    for label, frame in zip(labels, frames, strict=True):
        part = frame[[*keys, value, low, high]].rename(
            columns={
                value: f"{label}:{value}",
                low: f"{label}:{low}",
                high: f"{label}:{high}",
            }
        )
        merged = part if merged is None else merged.merge(part, on=keys, how="outer")
    assert merged is not None
    first = labels[0]
    for label in labels[1:]:
        a, b = merged[f"{first}:{value}"], merged[f"{label}:{value}"]
        merged[f"{label}:diff"] = b - a
        merged[f"{label}:diff_pct"] = (b - a) / a.where(a != 0) * 100
        apart = (merged[f"{label}:{low}"] > merged[f"{first}:{high}"]) | (
            merged[f"{label}:{high}"] < merged[f"{first}:{low}"]
        )
        known = merged[f"{label}:{value}"].notna() & a.notna()
        merged[f"{label}:exceeds_spread"] = apart.where(known, other=False).astype(bool)
    return merged


def _sort(frame: pd.DataFrame, network_column: str) -> pd.DataFrame:
    if frame.empty:
        return frame
    networks = {n: i for i, n in enumerate(network_order(frame[network_column]))}
    quantities = {q: i for i, q in enumerate(quantity_order(list(frame["quantity"])))}
    return (
        frame.assign(
            _n=frame[network_column].map(networks), _q=frame["quantity"].map(quantities)
        )
        .sort_values(["_n", "strategy", "_q"])
        .drop(columns=["_n", "_q"])
        .reset_index(drop=True)
    )


def compare_campaigns(
    dirs: Sequence[Path],
    warmup_rounds: int = 0,
    target_accuracy: float | None = None,
    bootstrap: BootstrapConfig | None = None,
) -> Comparison:
    """Side-by-side study, ratio, straggler and time-to-target tables of ``dirs``.

    Raises FileNotFoundError naming a folder without ``phases.parquet`` and
    ValueError for fewer than two folders.
    """
    if len(dirs) < 2:
        raise ValueError(
            f"report compare needs at least two results folders, got {len(dirs)}"
        )
    labels = _labels(dirs)
    studies, ratios, stragglers, metrics = [], [], [], []
    tiled, notes = [], []
    for label, path in zip(labels, dirs, strict=True):
        df = read_phase_table(Path(path) / "phases.parquet")
        tiled.append(bool(df["phase"].isin(GAP_PHASES).any()))
        study = study_table(df, warmup_rounds, bootstrap)
        studies.append(study.table)
        fewest = int(study.table["rounds"].min()) if len(study.table) else 0
        if fewest < FEW_ROUNDS:
            notes.append(
                f"{label}: as few as {fewest} rounds per network; with fewer than "
                f"{FEW_ROUNDS} the intervals, and so 'exceeds spread', are unreliable."
            )
        ratios.append(study.ratios)
        summary = straggler_summary(straggler_rounds(df, warmup_rounds))
        stragglers.append(summary.assign(campaign=label))
        damage = Damage()
        metrics.append(read_metrics(Path(path), _manifest(Path(path)), df, damage))
        notes += [
            f"{label}: partial data, time to target computed without it: {s}"
            for s in damage.sentences()
        ]
    target = target_accuracy
    if target is None and len(metrics[0]):
        target = default_target(metrics[0])
    targets = pd.concat(
        [
            time_to_target(m, target).assign(campaign=label)
            for label, m in zip(labels, metrics, strict=True)
            if target is not None and len(m)
        ]
        or [pd.DataFrame()],
        ignore_index=True,
    )
    study_side = _side_by_side(
        studies, labels, KEYS, "median", "median_low", "median_high"
    )
    ratio_side = _side_by_side(
        ratios, labels, RATIO_KEYS, "ratio", "ratio_low", "ratio_high"
    )
    if len(set(tiled)) > 1:
        with_anatomy = [lab for lab, t in zip(labels, tiled, strict=True) if t]
        notes.append(
            "Only " + ", ".join(with_anatomy) + " has the round anatomy: the others' "
            "round time leaves out waiting at the SuperLink and client start-up "
            "(docs/report.md), so their round times are not comparable."
        )
    return Comparison(
        labels=labels,
        notes=notes,
        study=_sort(study_side, "network"),
        ratios=_sort(ratio_side, "numerator"),
        stragglers=pd.concat(stragglers, ignore_index=True),
        targets=targets,
        target=target,
    )


def _cells(
    frame: pd.DataFrame, labels: list[str], keys: list[str], value: str
) -> tuple[list[str], list[list[object]], list[str]]:
    headers = [*keys]
    for i, label in enumerate(labels):
        headers += [f"{label}", f"{label} CI"]
        if i:
            headers += [f"{label} − {labels[0]}", "exceeds spread"]
    rows, classes = [], []
    low, high = (
        ("median_low", "median_high")
        if value == "median"
        else (
            "ratio_low",
            "ratio_high",
        )
    )
    for record in frame.to_dict("records"):
        row: list[object] = [record[k] for k in keys]
        exceeds = False
        for i, label in enumerate(labels):
            row += [
                fmt(record[f"{label}:{value}"]),
                f"[{fmt(record[f'{label}:{low}'])}, {fmt(record[f'{label}:{high}'])}]",
            ]
            if i:
                flag = bool(record[f"{label}:exceeds_spread"])
                exceeds = exceeds or flag
                pct = record[f"{label}:diff_pct"]
                row += [
                    f"{fmt(record[f'{label}:diff'])} ({fmt(pct, 1)}%)",
                    "yes" if flag else "no",
                ]
        rows.append(row)
        classes.append("exceeds" if exceeds else "")
    return headers, rows, classes


def comparison_html(comparison: Comparison) -> str:
    """The comparison as one self-contained HTML page."""
    labels = comparison.labels
    headers, rows, classes = _cells(comparison.study, labels, KEYS, "median")
    parts = [
        f"<h1>flowerbed comparison: {esc(' vs '.join(labels))}</h1>",
        note(
            "Medians with 95% bootstrap confidence intervals over rounds and "
            f"repetitions; differences against {labels[0]}. exceeds spread: the "
            "two intervals do not overlap (highlighted rows)."
        ),
        *(f'<p class="notice">{esc(n)}</p>' for n in comparison.notes),
        section(
            "Study table",
            table(
                headers,
                rows,
                classes,
                numeric=lambda j: j > 2,
                table_id="compare-study",
            ),
        ),
    ]
    headers, rows, classes = _cells(comparison.ratios, labels, RATIO_KEYS, "ratio")
    parts.append(
        section(
            "Ratios between networks",
            table(headers, rows, classes, numeric=lambda j: j > 3),
        )
    )
    strag = comparison.stragglers
    if len(strag):
        columns = ["campaign", "network", "strategy", "rounds", "top_straggler"]
        columns += ["top_share", "verdict", "median_lead_s", "usual_cause"]
        parts.append(
            section(
                "Stragglers",
                table(
                    columns,
                    [[fmt(v) for v in r] for r in strag[columns].to_numpy().tolist()],
                ),
            )
        )
    targets = comparison.targets
    if len(targets):
        columns = ["campaign", "network", "strategy", "runs_reaching", "runs"]
        columns += ["median_time_to_target_s", "median_final_accuracy"]
        parts.append(
            section(
                f"Time to accuracy {fmt(comparison.target)}",
                table(
                    columns,
                    [[fmt(v) for v in r] for r in targets[columns].to_numpy().tolist()],
                ),
            )
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>flowerbed comparison</title><style>{_CSS}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )


def comparison_markdown(comparison: Comparison) -> str:
    """A Markdown table of every study row whose difference exceeds the spread."""
    labels = comparison.labels
    lines = [f"# flowerbed comparison: {' vs '.join(labels)}", ""]
    lines += [*(f"Note: {n}" for n in comparison.notes), ""] if comparison.notes else []
    study = comparison.study
    for label in labels[1:]:
        flagged = study[study[f"{label}:exceeds_spread"]]
        lines += [
            f"{label} vs {labels[0]}: {len(flagged)} of {len(study)} medians differ "
            "by more than the run-to-run spread (95% intervals apart).",
            "",
        ]
        if len(flagged):
            lines += [
                f"| network | strategy | quantity | {labels[0]} | {label} | diff |",
                "|---|---|---|---|---|---|",
            ]
            for r in flagged.to_dict("records"):
                lines.append(
                    f"| {r['network']} | {r['strategy']} | {r['quantity']} | "
                    f"{fmt(r[f'{labels[0]}:median'])} | {fmt(r[f'{label}:median'])} "
                    f"| {fmt(r[f'{label}:diff'])} ({fmt(r[f'{label}:diff_pct'], 1)}%) |"
                )
            lines.append("")
    return "\n".join(lines)


def write_comparison(comparison: Comparison, out: Path) -> Path:
    """Write ``compare.html``, ``compare.md`` and the tables as CSV; return the HTML."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    comparison.study.to_csv(out / "compare_study.csv", index=False)
    comparison.ratios.to_csv(out / "compare_ratios.csv", index=False)
    comparison.stragglers.to_csv(out / "compare_stragglers.csv", index=False)
    comparison.targets.to_csv(out / "compare_time_to_target.csv", index=False)
    (out / "compare.md").write_text(comparison_markdown(comparison), encoding="utf-8")
    page = out / "compare.html"
    page.write_text(comparison_html(comparison), encoding="utf-8")
    return page
