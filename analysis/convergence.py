"""Convergence: accuracy and loss per round and over wall-clock time, time to target.

The ServerApp writes a ``metrics`` event per round and scope into each run's
``events.jsonl`` (docs/events.md): ``server`` (centralised evaluation of the
global model, round 0 = the initial model), ``evaluate`` (the clients' aggregated
evaluation) and ``train``. :func:`read_metrics` collects them into one tidy
table; accuracy and loss are taken from the ``server`` scope when a run has it,
else from ``evaluate`` (keys containing ``accuracy`` / ``loss``). Wall-clock time
counts from the run's first round dispatch (its earliest phase-table instant);
round 0 is the initial model, at 0 s. A default target lies above chance and every
run's first round (:func:`default_target`); :func:`learning_table` says which runs
learned at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.damage import CONVERGENCE, Damage, DataGap
from analysis.results_files import (
    check_log_complete,
    manifest_runs,
    missing_run_logs,
    scan_event_log,
)
from analysis.results_files import (
    record as record_gap,
)
from analysis.summary import sort_by_network
from instrumentation.schema import EventKind

# The events convergence reads: accuracy/loss per round, and each run's start.
_PARSED = (EventKind.METRICS, EventKind.RUN_START)

METRIC_COLUMNS = [
    "run_id",
    "network",
    "strategy",
    "repetition",
    "round",
    "scope",
    "accuracy",
    "loss",
    "t_ns",
    "elapsed_s",
]
TARGET_COLUMNS = [
    "network",
    "strategy",
    "runs",
    "runs_reaching",
    "target_accuracy",
    "median_time_to_target_s",
    "min_time_to_target_s",
    "max_time_to_target_s",
    "median_rounds_to_target",
    "median_final_accuracy",
    "median_final_loss",
]
# Which scope a run's curve comes from, best first.
SCOPES = ("server", "evaluate")
# The default target: this share of the best accuracy any run reached.
DEFAULT_TARGET_SHARE = 0.9
# Chance accuracy when the campaign does not give its number of classes: digits.
CHANCE_ACCURACY = 0.1
# A run learned when it ends this far (absolute accuracy) above chance and above
# its initial model.
LEARNING_MARGIN = 0.05
# A default target needs the best accuracy this far above its floor.
TARGET_MIN_GAIN = 0.01
LEARNING_COLUMNS = [
    "network",
    "strategy",
    "runs",
    "runs_learned",
    "chance_accuracy",
    "median_first_accuracy",
    "median_final_accuracy",
]


def _pick(values: Mapping[str, Any], word: str) -> float | None:
    """The value keyed ``word`` or, failing that, whose key contains it (eval-loss)."""
    if isinstance(values.get(word), int | float):
        return float(values[word])
    for key in sorted(values):
        value = values[key]
        if word in key.lower() and isinstance(value, int | float):
            return float(value)
    return None


def metric_records(lines: Iterable[bytes | str], run_id: str) -> list[dict[str, Any]]:
    """``metrics`` and ``run_start`` records of one run's event-log lines.

    Only lines naming those events are parsed; a line that is not JSON (a run
    cut short) is skipped.
    """
    records: list[dict[str, Any]] = []
    for line in lines:
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        if not any(f'"{kind}"' in text for kind in _PARSED):
            continue
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict) or event.get("event") not in _PARSED:
            continue
        event.setdefault("run_id", run_id)
        records.append(event)
    return records


def metrics_frame(
    records: Iterable[Mapping[str, Any]],
    runs: Mapping[str, Mapping[str, Any]],
    origins: Mapping[str, int],
) -> pd.DataFrame:
    """The tidy metrics table of :data:`METRIC_COLUMNS` from ``metrics`` records.

    ``runs`` gives each run id's ``network``, ``strategy`` and ``repetition``
    (``run_start`` events or the manifest); ``origins`` each run's wall-clock
    origin (ns). A run's rows come from its best scope in :data:`SCOPES`.
    """
    rows = []
    for record in records:
        if (
            record.get("event") != EventKind.METRICS
            or record.get("scope") not in SCOPES
        ):
            continue
        values = record.get("values")
        if not isinstance(values, Mapping):
            continue
        run_id = str(record.get("run_id", ""))
        info = runs.get(run_id, {})
        t_ns = int(record.get("t_ns", 0))
        round_ = int(record.get("round", 0))
        origin = origins.get(run_id)
        elapsed = 0.0 if round_ == 0 or origin is None else (t_ns - origin) / 1e9
        rows.append(
            {
                "run_id": run_id,
                "network": str(info.get("network", "unknown")),
                "strategy": str(info.get("strategy", "unknown")),
                "repetition": int(info.get("repetition", 1)),
                "round": round_,
                "scope": str(record["scope"]),
                "accuracy": _pick(values, "accuracy"),
                "loss": _pick(values, "loss"),
                "t_ns": t_ns,
                "elapsed_s": max(elapsed, 0.0),
            }
        )
    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    if frame.empty:
        return frame.astype({"accuracy": float, "loss": float, "elapsed_s": float})
    rank = {s: i for i, s in enumerate(SCOPES)}
    rank_of = frame["scope"].map(rank)
    best = rank_of == rank_of.groupby(frame["run_id"]).transform("min")
    frame = frame[best]
    frame = frame.astype({"accuracy": float, "loss": float})
    return frame.sort_values(["run_id", "round"]).reset_index(drop=True)


def _run_info(
    manifest: Mapping[str, Any], records: Iterable[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    info: dict[str, dict[str, Any]] = {}
    campaign = manifest.get("campaign")
    default_strategy = (
        campaign.get("strategy") if isinstance(campaign, Mapping) else None
    )
    runs = manifest.get("runs")
    for run in runs if isinstance(runs, list) else []:
        if isinstance(run, Mapping) and run.get("run_id"):
            info[str(run["run_id"])] = {
                "network": run.get("network", "unknown"),
                "strategy": run.get("strategy") or default_strategy or "unknown",
                "repetition": run.get("repetition", 1),
            }
    for record in records:
        if record.get("event") == EventKind.RUN_START:
            known = info.setdefault(str(record.get("run_id")), {})
            for key in ("network", "strategy", "repetition"):
                if record.get(key) is not None:
                    known.setdefault(key, record[key])
    return info


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid(event: Mapping[str, Any]) -> bool:
    """Whether a metrics/run_start event has the fields convergence reads, typed."""
    if not _is_int(event.get("t_ns")):
        return False
    if event.get("event") == EventKind.RUN_START:
        return _is_int(event.get("repetition", 1))
    if event.get("event") != EventKind.METRICS:
        return True
    return _is_int(event.get("round")) and isinstance(event.get("values"), Mapping)


def read_metrics(
    results_dir: Path,
    manifest: Mapping[str, Any],
    phases: pd.DataFrame | None = None,
    damage: Damage | None = None,
) -> pd.DataFrame:
    """The metrics table of every ``runs/*/events.jsonl`` in a results folder.

    The wall-clock origin of a run is its earliest ``start_ns`` in ``phases``
    (the first dispatch of round 1), else its ``run_start`` event, else its
    first metrics event. Damaged lines, logs cut before their ``run_end`` and
    finished runs without a log are recorded in ``damage`` (and logged).
    """
    records: list[dict[str, Any]] = []
    known = manifest_runs(manifest)
    missing_run_logs(results_dir, manifest, damage, (CONVERGENCE,))
    for path in sorted(Path(results_dir).glob("runs/*/events.jsonl")):
        events = scan_event_log(
            path, (*_PARSED, EventKind.RUN_END), damage, (CONVERGENCE,), _valid
        )
        run_id = path.parent.name
        check_log_complete(path, events, known.get(run_id), damage, (CONVERGENCE,))
        for event in events:
            if event.get("event") in _PARSED:
                event.setdefault("run_id", run_id)
                records.append(event)
    origins: dict[str, int] = {}
    if phases is not None and len(phases):
        firsts = phases.groupby("run_id", observed=True)["start_ns"].min()
        origins = {str(k): int(v) for k, v in firsts.items()}
    for record in sorted(records, key=lambda r: int(r.get("t_ns", 0))):
        run_id = str(record.get("run_id"))
        if record.get("event") == EventKind.RUN_START or run_id not in origins:
            origins.setdefault(run_id, int(record.get("t_ns", 0)))
    frame = metrics_frame(records, _run_info(manifest, records), origins)
    _missing_rounds(Path(results_dir), frame, known, damage)
    return frame


def _missing_rounds(
    results_dir: Path,
    frame: pd.DataFrame,
    known: Mapping[str, Mapping[str, Any]],
    damage: Damage | None,
) -> None:
    """Record a gap for each run whose curve lacks a round it should have.

    A run's rounds run from 0 (server scope: the initial model) or its first
    metrics round to its last, or to the rounds the manifest says it completed:
    a hole is a line lost from the log.
    """
    for (run_id, scope), rounds in frame.groupby(["run_id", "scope"])["round"]:
        seen = {int(r) for r in rounds}
        # The server scope evaluates the initial model as round 0.
        first = 0 if scope == "server" else min(seen)
        completed = known.get(str(run_id), {}).get("rounds_completed")
        last = max(seen)
        if isinstance(completed, int) and not isinstance(completed, bool):
            last = max(last, min(completed, max(seen) + 10_000))
        missing = sorted(set(range(first, last + 1)) - seen)
        if missing:
            record_gap(
                damage,
                DataGap(
                    results_dir / "runs" / str(run_id) / "events.jsonl",
                    "has no metrics event for rounds the run went through "
                    "(lines lost from the log)",
                    "those rounds are missing from the curves",
                    runs=(str(run_id),),
                    rounds=tuple(missing),
                    affects=(CONVERGENCE,),
                ),
            )


def chance_accuracy(manifest: Mapping[str, Any]) -> float:
    """Accuracy of guessing: 1 / the workload's ``num-classes``, else 1/10 (digits)."""
    campaign = manifest.get("campaign")
    workload = campaign.get("workload") if isinstance(campaign, Mapping) else None
    if isinstance(workload, Mapping):
        for key in ("num-classes", "num_classes"):
            classes = workload.get(key)
            if (
                isinstance(classes, int)
                and not isinstance(classes, bool)
                and classes > 1
            ):
                return 1.0 / classes
    return CHANCE_ACCURACY


def _first_trained(run: pd.DataFrame) -> float | None:
    """A run's accuracy after its first trained round, when it has a later one."""
    trained = run[(run["round"] > 0) & run["accuracy"].notna()].sort_values("round")
    if len(trained) < 2:
        return None
    return float(trained["accuracy"].iloc[0])


def target_floor(metrics: pd.DataFrame, chance: float = CHANCE_ACCURACY) -> float:
    """The accuracy a target must exceed: chance, and every run's first round.

    A run with a single trained round contributes its initial model's
    (round 0) accuracy instead, when recorded.
    """
    floor = chance
    runs = metrics.groupby("run_id") if "run_id" in metrics else [("", metrics)]
    for _, run in runs:
        first = _first_trained(run)
        if first is None:
            initial = run.loc[run["round"] == 0, "accuracy"].dropna()
            first = float(initial.iloc[0]) if len(initial) else None
        if first is not None:
            floor = max(floor, first)
    return floor


def default_target(
    metrics: pd.DataFrame, chance: float = CHANCE_ACCURACY
) -> float | None:
    """The target accuracy of the time-to-target table, or None when there is none.

    :data:`DEFAULT_TARGET_SHARE` of the best accuracy reached after round 0,
    unless that is at or below :func:`target_floor` (chance, or a run's first
    round): then halfway between the floor and the best. None when the best is
    not :data:`TARGET_MIN_GAIN` above the floor (nothing was learned to time).
    """
    trained = metrics[metrics["round"] > 0]
    best = trained["accuracy"].max() if len(trained) else float("nan")
    if not best == best:
        return None
    floor = target_floor(metrics, chance)
    if best < floor + TARGET_MIN_GAIN:
        return None
    target = DEFAULT_TARGET_SHARE * float(best)
    return target if target > floor else (floor + float(best)) / 2


def learning_table(
    metrics: pd.DataFrame, chance: float = CHANCE_ACCURACY
) -> pd.DataFrame:
    """Per network and strategy: how many runs learned, first and final accuracy.

    A run *learned* when its final accuracy is at least :data:`LEARNING_MARGIN`
    above both chance and its initial model's accuracy (round 0, when recorded).
    """
    rows = []
    for (network, strategy), group in metrics.groupby(["network", "strategy"]):
        learned, initials, finals = 0, [], []
        for _, run in group.groupby("run_id"):
            run = run[run["accuracy"].notna()].sort_values("round")
            if run.empty:
                continue
            initial = run.loc[run["round"] == 0, "accuracy"]
            baseline = max(chance, float(initial.iloc[0]) if len(initial) else chance)
            final = float(run["accuracy"].iloc[-1])
            learned += int(final >= baseline + LEARNING_MARGIN)
            initials.append(float(run["accuracy"].iloc[0]))
            finals.append(final)
        rows.append(
            {
                "network": network,
                "strategy": strategy,
                "runs": len(finals),
                "runs_learned": learned,
                "chance_accuracy": chance,
                "median_first_accuracy": float(np.median(initials))
                if initials
                else np.nan,
                "median_final_accuracy": float(np.median(finals)) if finals else np.nan,
            }
        )
    out = pd.DataFrame(rows, columns=LEARNING_COLUMNS)
    return sort_by_network(out) if len(out) else out


def time_to_target(metrics: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per network and strategy: how long runs took to reach ``target`` accuracy.

    A run reaches the target at its first trained round (round 1 or later)
    whose accuracy is at least ``target``; its time is that round's
    ``elapsed_s``. Medians are over the runs
    that reached it (NaN when none did); ``median_final_*`` are over all runs'
    last rounds.
    """
    rows = []
    for (network, strategy), group in metrics.groupby(["network", "strategy"]):
        reached: list[tuple[float, int]] = []
        finals = group.sort_values("round").groupby("run_id").last()
        for _, run in group.groupby("run_id"):
            hits = run[(run["accuracy"] >= target) & (run["round"] > 0)]
            hits = hits.sort_values("round")
            if len(hits):
                reached.append(
                    (float(hits["elapsed_s"].iloc[0]), int(hits["round"].iloc[0]))
                )
        times = np.array([t for t, _ in reached], dtype=float)
        rows.append(
            {
                "network": network,
                "strategy": strategy,
                "runs": group["run_id"].nunique(),
                "runs_reaching": len(reached),
                "target_accuracy": target,
                "median_time_to_target_s": float(np.median(times))
                if len(times)
                else np.nan,
                "min_time_to_target_s": float(times.min()) if len(times) else np.nan,
                "max_time_to_target_s": float(times.max()) if len(times) else np.nan,
                "median_rounds_to_target": float(np.median([r for _, r in reached]))
                if reached
                else np.nan,
                "median_final_accuracy": float(finals["accuracy"].median()),
                "median_final_loss": float(finals["loss"].median()),
            }
        )
    out = pd.DataFrame(rows, columns=TARGET_COLUMNS)
    return sort_by_network(out)


def median_curves(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per network, strategy and round: median accuracy, loss and elapsed seconds."""
    grouped = metrics.groupby(["network", "strategy", "round"], sort=True)
    return grouped.agg(
        accuracy=("accuracy", "median"),
        loss=("loss", "median"),
        elapsed_s=("elapsed_s", "median"),
        runs=("run_id", "nunique"),
    ).reset_index()
