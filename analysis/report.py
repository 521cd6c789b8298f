"""The campaign report: one self-contained HTML file, its figures and summary CSVs.

:func:`build_report` reads ``phases.parquet`` and ``manifest.json`` from a results
folder, plus ``transfers.csv``, ``bytes.csv`` and ``system.parquet`` when they
exist, and writes ``report.html`` (figures embedded as data URIs, inline CSS, no
external resource), ``figures/*.png|pdf`` and the summary tables as CSV.
Anything missing (a network, a phase, a manifest key, an optional file) becomes a
note in the report, never a crash; docs/report.md says what each number means.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.figures import (
    phase_bar,
)
from analysis.figures_ecdf import transfer_ecdf
from analysis.html import esc as _esc
from analysis.html import figure as _figure
from analysis.html import note as _note
from analysis.html import section as _section
from analysis.phases import read_phases
from analysis.report_study import (
    convergence_section,
    ecdf_section,
    markdown_summary,
    straggler_section,
    study_results,
    study_section,
)
from analysis.report_anatomy import (
    anatomy_section,
    coverage_notes,
    median_section,
    ratios_section,
    round_time_part,
    timelines_section,
)
from analysis.report_setup import (
    clocks_section,
    emulation_notices,
    emulation_section,
    profiles_section,
    provenance_section,
    quality_section,
    runs_section,
)
from analysis.report_system import (
    asynchrony_section,
    failures_section,
    system_section,
    system_series,
)
from analysis.report_wire import TRANSFER_COLUMNS, bytes_csv_section, transfers_section
from analysis.rollup import Rollup, rollup
from analysis.study import BootstrapConfig
from analysis.summary import (
    network_order,
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:70rem;padding:0 1rem;color:#222;line-height:1.45}
h1{margin-bottom:.2rem}
h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.92rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f2f2f2}tr.failed td{background:#fde2e1}
.notice{border-left:6px solid #D55E00;background:#fff4e5;
padding:.6rem 1rem;margin:.8rem 0}
.ok{border-left:6px solid #009E73;background:#eaf7f1;padding:.6rem 1rem}
.note{color:#555;font-style:italic}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9rem}
dt{font-weight:600;font-family:ui-monospace,monospace}dd{margin:0 0 .3rem 1.5rem}
"""


def _read_manifest(results_dir: Path) -> tuple[dict[str, Any], list[str]]:
    path = results_dir / "manifest.json"
    if not path.is_file():
        return {}, [
            f"No manifest at {path}: campaign, link profiles and runs are unknown."
        ]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path} line {exc.lineno}: not valid JSON ({exc.msg}); "
            "re-run `flowerbed campaign run` or fix the file"
        ) from exc
    if not isinstance(manifest, dict):
        raise ValueError(
            f"{path}: expected a JSON object, got {type(manifest).__name__}"
        )
    return manifest, []


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


def _write_tables(results_dir: Path, rolled: Rollup) -> dict[str, pd.DataFrame]:
    """analysis.summary's tables (computed by its vectorised twin), as CSV too."""
    tables = {
        "median_phases": rolled.median_phase_table(),
        "phase_stats": rolled.phase_stats(),
        "ratios": rolled.study_ratios(),
        "round_times": rolled.round_times(),
        "round_time_table": rolled.round_time_table(),
        "anatomy": rolled.anatomy_table(),
    }
    for name, table in tables.items():
        index = name in ("median_phases", "round_time_table")
        table.to_csv(results_dir / f"{name}.csv", index=index)
    return tables


def build_report(
    results_dir: Path,
    *,
    warmup_rounds: int = 0,
    target_accuracy: float | None = None,
    bootstrap: BootstrapConfig | None = None,
    timeline_round: int = 2,
) -> Path:
    """Write ``results_dir/report.html`` (plus figures and CSVs) and return its path.

    Also writes ``summary.md``. ``warmup_rounds`` leaves rounds 1 to that many out
    of the study and straggler tables; ``target_accuracy`` is the accuracy the
    time-to-target table counts to (default: 90% of the best reached);
    ``bootstrap`` sets the confidence intervals (:class:`BootstrapConfig`);
    ``timeline_round`` is the round the per-node timelines show (the first when
    a run has fewer).
    """
    results_dir = Path(results_dir)
    phases_path = results_dir / "phases.parquet"
    if not phases_path.is_file():
        raise FileNotFoundError(
            f"no phase table at {phases_path}: run `flowerbed campaign run` first "
            "(it writes phases.parquet and manifest.json into the results folder)"
        )
    df = read_phases(phases_path)
    manifest, manifest_notes = _read_manifest(results_dir)
    rolled = rollup(df)
    tables = _write_tables(results_dir, rolled)
    figures = results_dir / "figures"
    study = study_results(
        results_dir, df, manifest, warmup_rounds, target_accuracy, bootstrap, rolled
    )
    name = _campaign_name(manifest, df)
    bar = _figure(
        partial(phase_bar, tables["median_phases"], figures / "phase_bar"),
        "Median seconds per phase and round (downlink, training, evaluation, "
        "uplink, server aggregation), stacked per network. Each segment is a "
        "median on its own: the bar's height is not the median round time.",
    )
    ecdfs = "".join(
        _figure(
            partial(transfer_ecdf, df, phase, figures / f"{phase}_ecdf"),
            f"ECDF of {phase} seconds per message (solid: train, dashed: evaluate).",
        )
        for phase in ("downlink", "uplink")
    )
    coverage = coverage_notes(df, manifest)
    body = "".join(
        [
            f"<h1>flowerbed report: {_esc(name)}</h1>",
            _overview(df),
            "".join(_note(n) for n in manifest_notes),
            _section("Emulation", emulation_section(manifest)),
            _section("Link profiles", profiles_section(manifest)),
            _section("Study", study_section(study, figures), "study"),
            _section("Stragglers", straggler_section(study, figures), "stragglers"),
            _section("Convergence", convergence_section(study, figures), "convergence"),
            _section("Time per phase", bar),
            _section("Downlink and uplink times", ecdfs),
            _section("Time per phase: ECDFs", ecdf_section(study, figures)),
            _section(
                "Median phase times",
                median_section(tables["median_phases"], coverage)
                + round_time_part(tables["round_time_table"], tables["round_times"]),
            ),
            _section("Study ratios", ratios_section(tables["ratios"])),
            _guarded(
                "Round anatomy",
                partial(anatomy_section, df, tables["anatomy"], figures),
            ),
            _guarded(
                "Round timelines",
                partial(timelines_section, df, figures, timeline_round),
            ),
            _guarded(
                "Transfers: wire vs SuperNode",
                partial(transfers_section, results_dir),
            ),
            _guarded("Bytes", partial(bytes_csv_section, results_dir)),
            _guarded("System", partial(system_section, results_dir, df, figures)),
            _guarded("Clock offsets", partial(clocks_section, manifest)),
            _section("Runs", runs_section(manifest, df)),
            _guarded("Failures", partial(failures_section, results_dir)),
            _guarded(
                "Asynchronous timeline",
                partial(asynchrony_section, results_dir, figures),
            ),
            _section("Data quality", quality_section(df)),
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
        markdown_summary(name, study, files), encoding="utf-8"
    )
    return out


__all__ = ["TRANSFER_COLUMNS", "build_report", "emulation_notices", "system_series"]
