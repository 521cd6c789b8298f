"""The campaign report: one self-contained HTML file, its figures and summary CSVs.

:func:`build_report` reads ``phases.parquet`` and ``manifest.json`` from a results
folder, plus ``transfers.csv``, ``bytes.csv`` and ``system.parquet`` when they
exist, and writes ``report.html`` (figures embedded as data URIs, inline CSS, no
external resource), ``figures/*.png|pdf`` and the summary tables as CSV.
Anything missing (a network, a phase, a manifest key, an optional file) becomes a
note in the report, never a crash; docs/report.md says what each number means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.damage import Damage
from analysis.figures_ecdf import transfer_ecdf
from analysis.floor import floor_table, launch_of
from analysis.html import details
from analysis.html import esc as _esc
from analysis.html import figure as _figure
from analysis.html import note as _note
from analysis.html import section as _section
from analysis.report_anatomy import anatomy_section, coverage_notes, timelines_section
from analysis.report_convergence import convergence_section
from analysis.report_findings import FindingsData, findings, findings_section
from analysis.report_linkbound import (
    link_bounds,
    linkbound_section,
    read_transfers,
    reference_section,
)
from analysis.report_quality import (
    damage_notice,
    damage_section,
    partial_groups,
    write_gaps,
)
from analysis.report_setup import (
    clocks_section,
    emulation_notices,
    emulation_section,
    nodes_section,
    profiles_section,
    provenance_section,
    quality_section,
    read_event_logs,
    runs_section,
)
from analysis.report_stragglers import straggler_section
from analysis.report_study import (
    ecdf_section,
    markdown_summary,
    study_results,
    study_section,
)
from analysis.report_system import (
    asynchrony_section,
    failures_section,
    system_section,
    system_series,
)
from analysis.report_wire import TRANSFER_COLUMNS, bytes_csv_section, transfers_section
from analysis.results_files import read_manifest, read_phase_table
from analysis.rollup import Rollup, rollup
from analysis.stragglers import straggler_rounds
from analysis.study import BootstrapConfig
from analysis.summary import network_order, phase_shares

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:70rem;padding:0 1rem;color:#222;line-height:1.45}
h1{margin-bottom:.2rem}
h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
.wide{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.5rem 0;font-size:.92rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th{background:#f2f2f2}tr.failed td{background:#fde2e1}
.notice{border-left:6px solid #D55E00;background:#fff4e5;
padding:.6rem 1rem;margin:.8rem 0}
.ok{border-left:6px solid #009E73;background:#eaf7f1;padding:.6rem 1rem}
.note{color:#555;font-style:italic}
ul.findings{font-size:1.05rem;padding-left:1.2rem}ul.findings li{margin:.35rem 0}
details{margin:.6rem 0}summary{cursor:pointer;color:#0b5394}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9rem}
dt{font-weight:600;font-family:ui-monospace,monospace}dd{margin:0 0 .3rem 1.5rem}
"""


def _campaign_name(manifest: Mapping[str, Any], df: pd.DataFrame) -> str:
    campaign = manifest.get("campaign")
    if isinstance(campaign, Mapping) and campaign.get("name"):
        return str(campaign["name"])
    names = sorted(df["campaign"].unique())
    return ", ".join(names) if names else "unnamed campaign"


def _overview(df: pd.DataFrame) -> str:
    networks = ", ".join(network_order(df["network"].unique())) or "none"
    strategies = ", ".join(sorted(df["strategy"].unique())) or "none"
    return (
        f"<p>Networks: {_esc(networks)}. Strategies: {_esc(strategies)}. "
        f"Runs with data: {df['run_id'].nunique()}. Phase rows: {len(df)}.</p>"
    )


# What malformed optional inputs (a CSV another tool wrote, a manifest key) raise.
_INPUT_ERRORS = (ValueError, KeyError, TypeError, IndexError, OSError)


def _guarded(title: str, build: Callable[[], str]) -> str:
    """A section whose inputs are optional: a failure becomes a note, not a crash."""
    try:
        body = build()
    except _INPUT_ERRORS as exc:
        body = _note(f"{title} could not be shown: {type(exc).__name__}: {exc}.")
    return _section(title, body)


def _write_tables(
    results_dir: Path, df: pd.DataFrame, rolled: Rollup
) -> dict[str, pd.DataFrame]:
    """analysis.summary's tables (computed by its vectorised twin), as CSV too."""
    tables = {
        "median_phases": rolled.median_phase_table(),
        "phase_stats": rolled.phase_stats(),
        "ratios": rolled.study_ratios(),
        "round_times": rolled.round_times(),
        # The slowest node is the straggler (busiest node), as on the page.
        "round_time_table": rolled.round_time_table(straggler_rounds(df, 0, rolled)),
        "anatomy": rolled.anatomy_table(),
    }
    for name, table in tables.items():
        index = name in ("median_phases", "round_time_table")
        table.to_csv(results_dir / f"{name}.csv", index=index)
    return tables


def _notice(sentences: Sequence[str], title: str) -> str:
    if not sentences:
        return ""
    items = "".join(f"<li>{_esc(s)}</li>" for s in sentences)
    return f'<div class="notice"><strong>{_esc(title)}</strong><ul>{items}</ul></div>'


def _transfer_ecdfs(df: pd.DataFrame, figures: Path) -> str:
    return "".join(
        _figure(
            partial(transfer_ecdf, df, phase, figures / f"{phase}_ecdf"),
            f"ECDF of {phase} seconds per message (solid: train, dashed: evaluate).",
        )
        for phase in ("downlink", "uplink")
    )


def _slowest_network(rounds: pd.DataFrame) -> str | None:
    medians = rounds["median_round_s"].dropna()
    return str(medians.idxmax()) if len(medians) else None


def build_report(
    results_dir: Path,
    *,
    warmup_rounds: int = 0,
    target_accuracy: float | None = None,
    bootstrap: BootstrapConfig | None = None,
    timeline_round: int = 2,
    damage: Damage | None = None,
) -> Path:
    """Write ``results_dir/report.html`` (plus figures and CSVs) and return its path.

    Also writes ``summary.md``. ``warmup_rounds`` leaves rounds 1 to that many out
    of the study and straggler tables; ``target_accuracy`` is the accuracy the
    time-to-target table counts to (default: 90% of the best reached, above
    chance and every run's first round); ``bootstrap`` sets the confidence
    intervals (:class:`BootstrapConfig`); ``timeline_round`` is the round the
    per-node timelines show (the first when a run has fewer).

    Whatever a reader of the folder skipped (a damaged event-log line, an
    unreadable optional file: analysis/results_files.py) is collected in
    ``damage`` (pass one to see it), shown in the report's data-quality section
    and, when a figure was computed without it, in Findings and beside the
    figure. A folder without a readable ``phases.parquet`` or with a damaged
    ``manifest.json`` raises :class:`analysis.damage.ResultsError`.
    """
    results_dir = Path(results_dir)
    damage = Damage() if damage is None else damage
    df = read_phase_table(results_dir / "phases.parquet")
    manifest, manifest_notes = read_manifest(results_dir)
    logs = read_event_logs(results_dir, damage)
    rolled = rollup(df)
    tables = _write_tables(results_dir, df, rolled)
    shares = phase_shares(df, tables["round_time_table"]["median_round_s"])
    shares.to_csv(results_dir / "phase_shares.csv", index=False)
    figures = results_dir / "figures"
    transfers = read_transfers(results_dir, damage)
    study = study_results(
        results_dir,
        df,
        manifest,
        warmup_rounds,
        target_accuracy,
        bootstrap,
        rolled,
        transfers,
        damage,
    )
    bounds = link_bounds(results_dir, transfers, manifest)
    floors = floor_table(df, launch_of(manifest), warmup_rounds, tables["round_times"])
    floors.to_csv(results_dir / "floor.csv", index=False)
    name = _campaign_name(manifest, df)
    data = FindingsData(
        study=study.study,
        samples=study.samples,
        shares=shares,
        straggler_summary=study.straggler_summary,
        learning=study.learning,
        targets=study.targets,
        target=study.target,
        chance=study.chance,
        floors=floors,
        bounds=bounds,
    )
    not_emulated = _notice(
        emulation_notices(manifest), "Not emulated: read the numbers with this in mind."
    )
    quality = "".join(_note(n) for n in coverage_notes(df, manifest))
    # The sections that read optional files come first, so that every gap is
    # known before the notice, Findings and the data-quality section are drawn.
    middle = [
        _guarded(
            "Where a round goes",
            partial(
                anatomy_section,
                df,
                shares,
                tables["median_phases"],
                tables["round_times"],
                figures,
            ),
        ),
        _guarded(
            "Round timeline",
            partial(
                timelines_section,
                df,
                figures,
                timeline_round,
                _slowest_network(tables["round_time_table"]),
            ),
        ),
        _section("Study", study_section(study, figures, shares, floors), "study"),
        _section("Link or host", linkbound_section(bounds), "link-or-host"),
        _section(
            "Against the seed study",
            reference_section(results_dir, study.study, bounds),
            "seed-study",
        ),
        _section("Stragglers", straggler_section(study, figures), "stragglers"),
        _section(
            "Convergence",
            convergence_section(
                study, figures, partial_groups(damage, study.metrics, manifest)
            ),
            "convergence",
        ),
        _section(
            "Distributions",
            details(
                "ECDF of every phase's seconds per node and round",
                ecdf_section(study, figures),
            )
            + details(
                "ECDF of downlink and uplink seconds per message",
                _transfer_ecdfs(df, figures),
            ),
        ),
        _guarded(
            "Transfers: wire vs SuperNode",
            partial(transfers_section, results_dir, damage),
        ),
        _guarded("Bytes", partial(bytes_csv_section, results_dir, damage)),
        _guarded("System", partial(system_section, results_dir, df, figures, damage)),
        _guarded("Failures", partial(failures_section, results_dir, damage)),
        _guarded("Asynchronous timeline", partial(asynchrony_section, logs, figures)),
        _section("Runs", runs_section(manifest, df)),
        _guarded("Clock offsets", partial(clocks_section, manifest)),
        _section("Emulation", emulation_section(manifest)),
        _section("Nodes", nodes_section(manifest)),
        _section("Link profiles", profiles_section(manifest)),
    ]
    write_gaps(damage, results_dir)
    body = "".join(
        [
            f"<h1>flowerbed report: {_esc(name)}</h1>",
            _overview(df),
            "".join(_note(n) for n in manifest_notes),
            damage_notice(damage),
            _section(
                "Findings",
                findings_section(data, [not_emulated, damage_notice(damage, True)]),
                "findings",
            ),
            *middle,
            _section(
                "Data quality",
                damage_section(damage) + quality + quality_section(df),
                "data-quality",
            ),
            _section("Provenance", provenance_section(manifest)),
        ]
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>flowerbed report: {_esc(name)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
    out = results_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    files = [
        "report.html",
        "figures/*.png|pdf",
        *sorted(p.name for p in results_dir.glob("*.csv")),
    ]
    (results_dir / "summary.md").write_text(
        markdown_summary(
            name,
            study,
            files,
            findings(data)
            + [f"Partial data: {g.sentence()}" for g in damage if g.affects],
            floors,
        ),
        encoding="utf-8",
    )
    return out


__all__ = ["TRANSFER_COLUMNS", "build_report", "emulation_notices", "system_series"]
