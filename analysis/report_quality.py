"""The report's account of damaged results: notices, the data-quality list, CSV.

The gaps come from analysis/results_files.py (one :class:`analysis.damage.DataGap`
per damaged file); docs/report.md ("Data quality") says what each means.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.damage import CONVERGENCE, Damage
from analysis.html import esc, note
from analysis.results_files import manifest_runs

GAPS_CSV = "data_gaps.csv"


def damage_notice(damage: Damage, findings: bool = False) -> str:
    """The notice above Findings (every gap), or in Findings (figures it touched)."""
    if findings:
        affected = dict.fromkeys(a for gap in damage for a in gap.affects)
        items = [
            f"{what.capitalize()} are computed from partial data: "
            + " ".join(gap.sentence() for gap in damage.affecting(what))
            for what in affected
        ]
        title = "Partial data: these figures miss what the damaged files held."
    else:
        items = damage.sentences()
        title = "Damaged results files: what the report skipped (see Data quality)."
    if not items:
        return ""
    listed = "".join(f"<li>{esc(item)}</li>" for item in items)
    return (
        f'<div class="notice partial"><strong>{esc(title)}</strong>'
        f"<ul>{listed}</ul></div>"
    )


def damage_section(damage: Damage) -> str:
    """The data-quality section's part on damaged files."""
    if not damage:
        return note(
            "Every results file the report reads was read whole (no damaged or "
            "unreadable line or file)."
        )
    listed = "".join(f"<li>{esc(s)}</li>" for s in damage.sentences())
    return (
        f"<p>{len(damage)} damaged or unreadable results file(s); what was "
        f"skipped, and what it touches (also in {GAPS_CSV}):</p><ul>{listed}</ul>"
    )


def write_gaps(damage: Damage, results_dir: Path) -> None:
    """``data_gaps.csv`` (one row per gap); none, and no stale one, when whole."""
    path = Path(results_dir) / GAPS_CSV
    if not damage:
        path.unlink(missing_ok=True)
        return
    pd.DataFrame([gap.to_record() for gap in damage]).to_csv(path, index=False)


def partial_groups(
    damage: Damage, metrics: pd.DataFrame, manifest: Mapping[str, Any]
) -> dict[tuple[str, str], tuple[str, ...]]:
    """(network, strategy) -> its runs whose convergence data has a gap."""
    runs = damage.partial_runs(CONVERGENCE)
    if not runs:
        return {}
    labels: dict[str, tuple[str, str]] = {}
    campaign = manifest.get("campaign")
    default = campaign.get("strategy") if isinstance(campaign, Mapping) else None
    for run_id, run in manifest_runs(manifest).items():
        labels[run_id] = (
            str(run.get("network", "unknown")),
            str(run.get("strategy") or default or "unknown"),
        )
    if len(metrics):
        for row in (
            metrics[["run_id", "network", "strategy"]]
            .drop_duplicates()
            .to_dict("records")
        ):
            labels.setdefault(str(row["run_id"]), (row["network"], row["strategy"]))
    groups: dict[tuple[str, str], tuple[str, ...]] = {}
    for run_id in sorted(runs):
        key = labels.get(run_id, ("unknown", "unknown"))
        groups[key] = (*groups.get(key, ()), run_id)
    return groups
