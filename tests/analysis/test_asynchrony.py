"""Tests of analysis/asynchrony.py: the update table, versions and the timeline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Rectangle

from analysis.asynchrony import (
    asynchronous_timeline,
    staleness_summary,
    update_table,
    version_times,
)

S = 1_000_000_000


def _update(
    node_id: int,
    version: int,
    staleness: int | None,
    sent_s: float,
    arrival_s: float | None,
    outcome: str = "applied",
    version_after: int = 0,
    step: bool = False,
    run_id: str = "r1",
) -> dict[str, Any]:
    return {
        "event": "fedbuff_update",
        "run_id": run_id,
        "t_ns": 0,
        "node_id": node_id,
        "trained_on_version": version,
        "staleness": staleness,
        "sent_ns": int(100 * S + sent_s * S),
        "arrival_ns": None if arrival_s is None else int(100 * S + arrival_s * S),
        "outcome": outcome,
        "weight": 1.0,
        "version_after": version_after,
        "server_step": step,
        "num_examples": 8,
        "message_id": f"m{node_id}-{sent_s}",
        "reason": "",
    }


def _events() -> list[dict[str, Any]]:
    # K = 1: node 11 fast (1 s), node 12 slow (3.5 s), node 13 never answers.
    return [
        {"event": "dispatch", "run_id": "r1", "node_id": 11, "node": "node1"},
        {"event": "phase", "run_id": "r1", "node_id": 12, "node": "node2"},
        {"event": "phase", "run_id": "r2", "node_id": 13, "node": "other-run"},
        {"event": "app_start", "run_id": "r1"},
        _update(11, 0, 0, 0.0, 1.0, version_after=1, step=True),
        _update(11, 1, 0, 1.0, 2.0, version_after=2, step=True),
        _update(11, 2, 0, 2.0, 3.0, version_after=3, step=True),
        _update(12, 0, 3, 0.0, 3.5, "dropped", version_after=3),
        _update(13, 0, None, 0.5, None, "timed-out", version_after=3),
    ]


def test_update_table_is_tidy_with_times_from_the_first_dispatch() -> None:
    table = update_table(_events())

    assert len(table) == 5
    assert list(table["node"]) == ["node1", "node2", "13", "node1", "node1"]
    slow = table[table["node"] == "node2"].iloc[0]
    assert slow["start_s"] == 0.0 and slow["end_s"] == pytest.approx(3.5)
    assert slow["duration_s"] == pytest.approx(3.5) and slow["staleness"] == 3
    lost = table[table["node"] == "13"].iloc[0]
    assert lost["start_s"] == pytest.approx(0.5)
    assert np.isnan(lost["end_s"]) and np.isnan(lost["staleness"])


def test_update_table_without_updates_is_empty_with_columns() -> None:
    table = update_table([{"event": "app_start", "run_id": "r"}])
    assert table.empty and "staleness" in table.columns


def test_version_times_are_the_arrivals_that_filled_the_buffer() -> None:
    versions = version_times(update_table(_events()))
    assert list(versions["version"]) == [0, 1, 2, 3]
    assert list(versions["t_s"]) == pytest.approx([0.0, 1.0, 2.0, 3.0])


def test_staleness_summary_counts_per_node() -> None:
    summary = staleness_summary(update_table(_events())).set_index("node")
    assert summary.loc["node1", "applied"] == 3
    assert summary.loc["node1", "mean_staleness"] == 0.0
    assert summary.loc["node2", "dropped"] == 1
    assert summary.loc["node2", "max_staleness"] == 3.0
    assert summary.loc["13", "lost"] == 1


def test_timeline_draws_one_bar_per_update_on_its_node_row() -> None:
    fig = asynchronous_timeline(update_table(_events()))
    FigureCanvasAgg(fig).draw()  # type: ignore[no-untyped-call]
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 5
    spans = sorted((round(b.get_x(), 3), round(b.get_width(), 3)) for b in bars)
    # node2's dropped update spans 0..3.5 s; the lost one runs to the last arrival.
    assert (0.0, 3.5) in spans and (0.5, 3.0) in spans
    assert [t.get_text() for t in ax.get_yticklabels()] == ["13", "node1", "node2"]
    assert "(s)" in ax.get_xlabel()
    assert fig.axes[1].get_ylabel() == "staleness (versions)"
    labels = {t.get_text() for t in ax.texts}
    assert {"v0", "v1", "v2", "v3"} <= labels
    # Stale and fresh updates get different colours.
    fresh = [b for b in bars if b.get_x() == pytest.approx(1.0)][0]
    stale = [b for b in bars if b.get_width() == pytest.approx(3.5)][0]
    assert fresh.get_facecolor() != stale.get_facecolor()


def test_timeline_needs_one_run() -> None:
    events = _events() + [_update(11, 0, 0, 0.0, 1.0, run_id="r2")]
    table = update_table(events)
    with pytest.raises(ValueError, match="pick one run_id"):
        asynchronous_timeline(table)
    fig = asynchronous_timeline(table, run_id="r2")
    assert len(fig.axes[0].patches) >= 1
    with pytest.raises(ValueError, match="no fedbuff_update"):
        asynchronous_timeline(update_table([]))
