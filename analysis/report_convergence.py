"""The report's convergence section: accuracy and loss curves, learning, time to target.

One table per network and strategy says whether the runs learned (their final
accuracy against chance and the initial model, :func:`analysis.convergence.
learning_table`) and, when there is a target, how long they took to reach it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from analysis.convergence import LEARNING_MARGIN
from analysis.figures_study import convergence_figure
from analysis.html import esc, figure, fmt, note, table
from analysis.report_study import StudyResults


def _target_cells(target: Mapping[Any, Any] | None) -> list[object]:
    if target is None:
        return ["–", "–", "–"]
    return [
        f"{target['runs_reaching']} of {target['runs']}",
        fmt(target["median_time_to_target_s"], 1),
        f"{fmt(target['min_time_to_target_s'], 1)}–"
        f"{fmt(target['max_time_to_target_s'], 1)}",
    ]


Partial = Mapping[tuple[str, str], tuple[str, ...]]


def _outcome_table(results: StudyResults, partial: Partial) -> str:
    """Per network and strategy: learned runs, accuracies, time to target."""
    targets = {
        (r["network"], r["strategy"]): r for r in results.targets.to_dict("records")
    }
    finals = {
        (r["network"], r["strategy"]): r["median_final_loss"]
        for r in results.targets.to_dict("records")
    }
    rows = []
    for r in results.learning.to_dict("records"):
        key = (r["network"], r["strategy"])
        rows.append(
            [
                f"{r['network']} (partial)" if key in partial else r["network"],
                r["strategy"],
                f"{r['runs_learned']} of {r['runs']}",
                fmt(r["median_first_accuracy"]),
                fmt(r["median_final_accuracy"]),
                fmt(finals.get(key)),
                *_target_cells(targets.get(key)),
            ]
        )
    headers = [
        "network",
        "strategy",
        "runs that learned",
        "first accuracy",
        "final accuracy",
        "final loss",
        "runs reaching target",
        "median time to target (s)",
        "range (s)",
    ]
    return table(headers, rows, numeric=lambda j: j > 1, table_id="target-table")


def _target_note(results: StudyResults) -> str:
    chance = f"chance {results.chance:.3f}"
    learned = (
        f"A run learned when its final accuracy is {LEARNING_MARGIN:.2f} or more "
        f"above {chance} and its initial model's (first accuracy: the first "
        "evaluation, round 0 when the initial model is evaluated). Medians over "
        "runs."
    )
    if results.target is None:
        return note(
            "No target accuracy: no run's best accuracy lies above its first "
            f"round's and {chance}, so there is nothing to time. " + learned
        )
    return note(
        f"Target accuracy {results.target:.3f}: 90% of the best accuracy any run "
        "reached, raised above every run's first round and chance when it was not "
        "(set it with --target-accuracy). " + learned
    )


def _partial_note(partial: Partial) -> str:
    if not partial:
        return ""
    groups = "; ".join(
        f"{network}/{strategy}: run{'s' if len(runs) > 1 else ''} {', '.join(runs)}"
        for (network, strategy), runs in sorted(partial.items())
    )
    return (
        '<div class="notice partial"><strong>Partial data.</strong> '
        f"Computed without lines or files of damaged event logs ({esc(groups)}); "
        "rows marked (partial); see Data quality for what was skipped.</div>"
    )


def convergence_section(
    results: StudyResults, figures: Path, partial_runs: Partial | None = None
) -> str:
    """Accuracy and loss against round and wall-clock time; learning and target.

    ``partial_runs`` names the (network, strategy) groups whose runs' event logs
    were damaged: they are marked in the table and above the figure.
    """
    damaged = partial_runs or {}
    metrics = results.metrics
    if metrics.empty:
        return _partial_note(damaged) + note(
            "No convergence data: no run's events.jsonl has metrics events "
            "(the ServerApp writes them, docs/events.md)."
        )
    parts = [
        _partial_note(damaged),
        figure(
            partial(
                convergence_figure, metrics, results.target, figures / "convergence"
            ),
            "Accuracy and loss per round (left) and over wall-clock time since the "
            "run's first dispatch (right); thin: each run, thick: median per "
            "network and strategy. Dotted: the target accuracy.",
            "convergence-figure",
        ),
    ]
    if len(results.learning):
        parts += [_outcome_table(results, damaged), _target_note(results)]
    scopes = ", ".join(sorted(set(metrics["scope"])))
    parts.append(note(f"Metrics from the {scopes} scope (docs/events.md)."))
    return "".join(parts)
