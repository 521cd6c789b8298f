"""Asynchronous runs (FedBuff): the update table and the asynchronous timeline figure.

FedBuff writes one ``fedbuff_update`` event per client update
(strategies/fedbuff.py ``UpdateRecord``): the node, the model version it trained
on, its staleness on arrival, when it was sent and arrived (integer ns, server
clock) and its outcome (``applied``, ``dropped``, ``failed``, ``timed-out``,
``abandoned``). :func:`update_table` turns a run's events into one tidy row per
update, :func:`version_times` gives when each server model version appeared,
:func:`staleness_summary` sums up per node, and :func:`asynchronous_timeline`
draws who trained on which version when: one row per node, one bar per update
from dispatch to arrival, coloured by staleness, with a marker per new version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from instrumentation.schema import EventKind

UPDATE_COLUMNS = [
    "run_id",
    "node",
    "node_id",
    "message_id",
    "trained_on_version",
    "staleness",
    "outcome",
    "weight",
    "version_after",
    "server_step",
    "num_examples",
    "sent_ns",
    "arrival_ns",
    "start_s",
    "end_s",
    "duration_s",
]
VERSION_COLUMNS = ["run_id", "version", "t_ns", "t_s"]
SUMMARY_COLUMNS = [
    "run_id",
    "node",
    "updates",
    "applied",
    "dropped",
    "lost",
    "mean_staleness",
    "max_staleness",
    "median_duration_s",
]
# Outcomes that never reached the buffer although a reply (or nothing) came back.
LOST_OUTCOMES = ("failed", "timed-out", "abandoned")


def _optional_int(value: Any) -> float:
    """An integer field that may be absent or None, as float (NaN when missing)."""
    return float("nan") if value is None else float(int(value))


def _node_names(events: list[Mapping[str, Any]]) -> dict[tuple[str, int], str]:
    """(run_id, node_id) -> inventory name, from any event naming both (phases)."""
    names: dict[tuple[str, int], str] = {}
    for event in events:
        if isinstance(event.get("node"), str) and event["node"] and "node_id" in event:
            key = (str(event.get("run_id", "")), int(event["node_id"]))
            names[key] = str(event["node"])
    return names


def update_table(events: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per FedBuff update, with times relative to each run's first dispatch.

    Parameters
    ----------
    events
        Event-log records (``instrumentation.events.read_events``), any kinds;
        only ``fedbuff_update`` rows (and, for node names, any event with
        both ``node`` and ``node_id``, such as the client mod's phases) are
        used.

    Returns
    -------
    pandas.DataFrame
        :data:`UPDATE_COLUMNS`; ``start_s`` / ``end_s`` are seconds from the
        run's earliest ``sent_ns``; ``end_s``, ``duration_s`` and ``staleness``
        are NaN for updates that never came back. Sorted by run and send time.
    """
    records = list(events)
    names = _node_names(records)
    rows: list[dict[str, Any]] = []
    for event in records:
        if event.get("event") != EventKind.FEDBUFF_UPDATE:
            continue
        run_id = str(event.get("run_id", ""))
        node_id = int(event["node_id"])
        rows.append(
            {
                "run_id": run_id,
                "node": names.get((run_id, node_id), str(node_id)),
                "node_id": node_id,
                "message_id": str(event.get("message_id", "")),
                "trained_on_version": int(event["trained_on_version"]),
                "staleness": _optional_int(event.get("staleness")),
                "outcome": str(event["outcome"]),
                "weight": float(event.get("weight", 0.0)),
                "version_after": int(event["version_after"]),
                "server_step": bool(event.get("server_step", False)),
                "num_examples": int(event.get("num_examples", 0)),
                "sent_ns": _optional_int(event.get("sent_ns")),
                "arrival_ns": _optional_int(event.get("arrival_ns")),
            }
        )
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in UPDATE_COLUMNS})
    table = pd.DataFrame(rows)
    origin = table.groupby("run_id")["sent_ns"].transform("min")
    table["start_s"] = (table["sent_ns"] - origin) / 1e9
    table["end_s"] = (table["arrival_ns"] - origin) / 1e9
    table["duration_s"] = table["end_s"] - table["start_s"]
    table = table.sort_values(["run_id", "sent_ns", "node"], kind="stable")
    return table[UPDATE_COLUMNS].reset_index(drop=True)


def version_times(updates: pd.DataFrame) -> pd.DataFrame:
    """When each server model version appeared (version 0 at the first dispatch).

    A version ``v > 0`` appears at the arrival of the update that filled the
    buffer (``server_step`` with ``version_after == v``).
    """
    frames = []
    for run_id, run in updates.groupby("run_id", sort=True):
        origin = run["sent_ns"].min()
        steps = run[run["server_step"].astype(bool)]
        frame = pd.DataFrame(
            {
                "run_id": run_id,
                "version": [0, *steps["version_after"].astype(int)],
                "t_ns": [origin, *steps["arrival_ns"]],
            }
        )
        frames.append(frame)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in VERSION_COLUMNS})
    table = pd.concat(frames, ignore_index=True)
    origins = table.groupby("run_id")["t_ns"].transform("min")
    table["t_s"] = (table["t_ns"] - origins) / 1e9
    return table.sort_values(["run_id", "version"]).reset_index(drop=True)[
        VERSION_COLUMNS
    ]


def staleness_summary(updates: pd.DataFrame) -> pd.DataFrame:
    """Per run and node: updates, applied, dropped, lost, staleness and duration."""
    rows = []
    for (run_id, node), group in updates.groupby(["run_id", "node"], sort=True):
        applied = group[group["outcome"] == "applied"]
        rows.append(
            {
                "run_id": run_id,
                "node": node,
                "updates": len(group),
                "applied": len(applied),
                "dropped": int((group["outcome"] == "dropped").sum()),
                "lost": int(group["outcome"].isin(LOST_OUTCOMES).sum()),
                "mean_staleness": float(applied["staleness"].mean())
                if len(applied)
                else float("nan"),
                "max_staleness": float(group["staleness"].max()),
                "median_duration_s": float(group["duration_s"].median()),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def asynchronous_timeline(updates: pd.DataFrame, run_id: str | None = None) -> Figure:
    """Who trained on which version when: one row per node, one bar per update.

    Each bar spans dispatch to arrival (s since the run's first dispatch) and is
    coloured by the update's staleness in versions; dropped updates are
    hatched, lost ones (failed, timed out, abandoned) drawn as outlines up to
    the last arrival. Bars are labelled ``v<version trained on>``; dotted
    vertical lines mark each new server model version.

    Parameters
    ----------
    updates
        :func:`update_table` output.
    run_id
        The run to draw; required when ``updates`` holds several.
    """
    runs = sorted(updates["run_id"].unique())
    if not runs:
        raise ValueError(
            "asynchronous_timeline: no fedbuff_update events; was the run a"
            " FedBuff run with flowerbed's event log?"
        )
    if run_id is None:
        if len(runs) > 1:
            raise ValueError(f"asynchronous_timeline: pick one run_id of {runs}")
        run_id = runs[0]
    run = updates[updates["run_id"] == run_id]
    if run.empty:
        raise ValueError(f"asynchronous_timeline: no updates of run {run_id!r}")
    nodes = sorted(run["node"].unique(), key=_natural_key)
    row = {node: i for i, node in enumerate(nodes)}
    finite = run["staleness"].dropna()
    top = int(finite.max()) if len(finite) else 0
    bounds = np.arange(-0.5, top + 1.5, 1.0)
    cmap = colormaps["viridis"].resampled(max(len(bounds) - 1, 1))
    norm = BoundaryNorm(bounds, cmap.N)
    last_s = float(np.nanmax(run["end_s"])) if run["end_s"].notna().any() else 0.0
    fig = Figure(figsize=(10.0, 1.6 + 0.55 * len(nodes)), layout="constrained")
    ax = fig.add_subplot()
    for item in run.to_dict("records"):
        y = row[item["node"]]
        start = float(item["start_s"])
        end = float(item["end_s"])
        end = max(last_s, start) if np.isnan(end) else end
        staleness = float(item["staleness"])
        lost = item["outcome"] in LOST_OUTCOMES or np.isnan(staleness)
        colour = "none" if lost else cmap(norm(staleness))
        ax.barh(
            y,
            end - start,
            left=start,
            height=0.6,
            color=colour,
            edgecolor="black" if not lost else "grey",
            linewidth=0.6,
            linestyle="--" if lost else "-",
            hatch="///" if item["outcome"] == "dropped" else None,
        )
        ax.text(
            (start + end) / 2,
            y,
            f"v{item['trained_on_version']}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if not lost and staleness < top / 2 + 0.5 else "black",
            clip_on=True,
        )
    for version in version_times(run).to_dict("records"):
        if int(version["version"]) == 0:
            continue
        t_s = float(version["t_s"])
        ax.axvline(t_s, color="grey", linestyle=":", linewidth=0.8)
        ax.text(
            t_s,
            1.0,
            f"v{version['version']}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=7,
            color="dimgrey",
        )
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_ylim(-0.6, len(nodes) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("time since the first dispatch (s)")
    ax.set_ylabel("node")
    ax.set_title(
        f"Asynchronous timeline, run {run_id}: bar = one update (v = trained on)"
    )
    mappable = ScalarMappable(norm=norm, cmap=cmap)
    bar = fig.colorbar(mappable, ax=ax, ticks=range(top + 1), pad=0.01)
    bar.set_label("staleness (versions)")
    handles = [
        Patch(facecolor="white", edgecolor="black", hatch="///", label="dropped"),
        Patch(facecolor="none", edgecolor="grey", linestyle="--", label="lost"),
    ]
    ax.legend(handles=handles, loc="lower right", fontsize=7)
    return fig


def _natural_key(name: str) -> list[object]:
    """Sort node2 before node10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
