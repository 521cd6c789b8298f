"""The campaign report: one self-contained HTML file, its figures and summary CSVs.

:func:`build_report` reads ``phases.parquet`` and ``manifest.json`` from a results
folder and writes ``report.html`` (figures embedded as data URIs, inline CSS, no
external resource), ``figures/*.png|pdf`` and the summary tables as CSV.
Anything missing (a network, a phase, a manifest key) becomes a note in the
report, never a crash; docs/report.md says what each number means.
"""

from __future__ import annotations

import base64
import html
import json
from functools import partial
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.figures import phase_bar, transfer_ecdf
from analysis.phases import PHASES, read_phases, unmatched_frame
from analysis.summary import (
    median_phase_table,
    network_order,
    phase_stats,
    round_time_table,
    round_times,
    study_ratios,
)

_FEATURE_LABELS = {
    "rate": ("Rate limits", "were"),
    "loss": ("Packet loss", "was"),
    "delay": ("Delay and jitter", "were"),
    "jitter": ("Jitter", "was"),
}
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
"""


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _fmt(value: object, digits: int = 3) -> str:
    """Numbers for tables: fixed decimals for floats, ``–`` for missing values."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if value is pd.NA:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    row_classes: Sequence[str] | None = None,
    numeric: Callable[[int], bool] = lambda _: False,
) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(
            f'<td class="num">{_esc(v)}</td>' if numeric(j) else f"<td>{_esc(v)}</td>"
            for j, v in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


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
    names = sorted(set(df["campaign"]))
    return ", ".join(names) if names else "unnamed campaign"


def _feature(value: object) -> tuple[bool, str]:
    if isinstance(value, Mapping):
        return bool(value.get("active")), str(value.get("detail") or "")
    return bool(value), ""


def emulation_notices(manifest: Mapping[str, Any]) -> list[str]:
    """One sentence per link-emulation feature the manifest reports as NOT active."""
    emulation = manifest.get("emulation")
    if not isinstance(emulation, Mapping):
        return []
    notices = []
    for key, value in emulation.items():
        active, detail = _feature(value)
        if active:
            continue
        label, verb = _FEATURE_LABELS.get(key, (key.capitalize(), "was"))
        notices.append(
            f"{label} {verb} not emulated" + (f": {detail}" if detail else ".")
        )
    return notices


def _emulation_section(manifest: Mapping[str, Any]) -> str:
    emulation = manifest.get("emulation")
    if not isinstance(emulation, Mapping):
        return _note("The manifest does not say which link features were emulated.")
    notices = emulation_notices(manifest)
    active = [k for k, v in emulation.items() if _feature(v)[0]]
    parts = []
    if notices:
        items = "".join(f"<li>{_esc(n)}</li>" for n in notices)
        parts.append(
            '<div class="notice"><strong>Not emulated — read the numbers with this in '
            f"mind:</strong><ul>{items}</ul></div>"
        )
    else:
        parts.append(
            '<p class="ok">Every link feature in the manifest was emulated.</p>'
        )
    if active:
        parts.append(_note("Emulated: " + ", ".join(sorted(active)) + "."))
    return "".join(parts)


def _profiles_section(manifest: Mapping[str, Any]) -> str:
    profiles = manifest.get("link_profiles")
    if not isinstance(profiles, Mapping) or not profiles:
        return _note("The manifest lists no link profiles.")
    keys: list[str] = []
    for profile in profiles.values():
        if isinstance(profile, Mapping):
            keys.extend(k for k in profile if k not in keys)
    networks = network_order(profiles)
    rows = [[n, *(_fmt(_get(profiles[n], k), 2) for k in keys)] for n in networks]
    return _table(["network", *keys], rows, numeric=lambda j: j > 0)


def _get(mapping: object, key: str) -> object:
    return mapping.get(key) if isinstance(mapping, Mapping) else None


def _embed(png: Path, caption: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _figure(draw: Callable[[], tuple[Path, Path]], caption: str) -> str:
    try:
        png, _ = draw()
    except ValueError as exc:
        return _note(f"No figure: {exc}.")
    return _embed(png, caption)


def _coverage_notes(df: pd.DataFrame, manifest: Mapping[str, Any]) -> list[str]:
    """Networks without data and phases never recorded on a network."""
    notes = []
    present = set(df["network"])
    expected: set[str] = set()
    profiles = manifest.get("link_profiles")
    if isinstance(profiles, Mapping):
        expected |= set(profiles)
    runs = manifest.get("runs")
    if isinstance(runs, list):
        expected |= {
            str(r["network"]) for r in runs if isinstance(r, Mapping) and "network" in r
        }
    for network in network_order(expected - present):
        notes.append(f"No phase data for network {network}.")
    for network in network_order(present):
        seen = set(df.loc[df["network"] == network, "phase"])
        missing = [p for p in PHASES if p not in seen]
        if missing:
            notes.append(f"On {network}, no {', '.join(missing)} was recorded.")
    return notes


def _round_time_part(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    rows = [
        [network, rounds, complete, _fmt(median), _fmt(p95)]
        for network, rounds, complete, median, p95 in zip(
            table.index,
            table["rounds"].tolist(),
            table["complete_rounds"].tolist(),
            table["median_round_s"].tolist(),
            table["p95_round_s"].tolist(),
            strict=True,
        )
    ]
    headers = ["network", "rounds", "complete rounds", "median round (s)", "p95 (s)"]
    return "<h3>Round time</h3>" + _table(headers, rows, numeric=lambda j: j > 0)


def _median_section(table: pd.DataFrame, notes: list[str]) -> str:
    if table.empty:
        return _note("The phase table has no rows.")
    records = table.to_dict("index")
    rows = [
        [network, *(_fmt(record[p]) for p in PHASES), record["n"]]
        for network, record in records.items()
    ]
    headers = ["network", *(f"{p} (s)" for p in PHASES), "n rounds"]
    out = _table(headers, rows, numeric=lambda j: j > 0)
    return out + "".join(_note(n) for n in notes)


def _ratio_value(metric: str, value: float) -> str:
    return f"{value:.1%}" if "share" in metric else f"{value:.1f}×"


def _ratios_section(ratios: pd.DataFrame) -> str:
    parts = []
    if ratios.empty:
        parts.append(_note("No study ratio could be computed from this data."))
    else:
        rows = [
            [metric, network, _ratio_value(metric, value), definition]
            for metric, network, value, definition in zip(
                ratios["metric"].tolist(),
                ratios["network"].tolist(),
                ratios["value"].tolist(),
                ratios["definition"].tolist(),
                strict=True,
            )
        ]
        parts.append(
            _table(
                ["metric", "network", "value", "definition"],
                rows,
                numeric=lambda j: j == 2,
            )
        )
    metrics = set(ratios["metric"]) if not ratios.empty else set()
    for wanted in ("5G uplink / Ethernet uplink", "5G uplink / WiFi uplink"):
        if wanted not in metrics:
            parts.append(
                _note(f"{wanted}: not computed (needs uplink data on both networks).")
            )
    return "".join(parts)


def _runs_section(manifest: Mapping[str, Any], df: pd.DataFrame) -> str:
    runs = manifest.get("runs")
    if not isinstance(runs, list) or not runs:
        return _note("The manifest lists no runs.")
    rows_per_run = df.groupby("run_id").size().to_dict()
    headers = ["run", "network", "repetition", "status", "reason", "phase rows"]
    rows, classes = [], []
    for run in runs:
        if not isinstance(run, Mapping):
            continue
        status = str(run.get("status", "unknown"))
        run_id = str(run.get("run_id", ""))
        rows.append(
            [
                run_id,
                run.get("network", ""),
                run.get("repetition", ""),
                status,
                run.get("reason") or "",
                rows_per_run.get(run_id, 0),
            ]
        )
        classes.append("" if status == "ok" else "failed")
    failed = sum(1 for c in classes if c)
    summary = _note(f"{len(rows)} runs, {failed} not ok (highlighted).")
    return summary + _table(headers, rows, classes, numeric=lambda j: j in (2, 5))


def _quality_section(df: pd.DataFrame) -> str:
    unmatched = unmatched_frame(df.attrs.get("unmatched", []))
    if unmatched.empty:
        return _note("Every client message was matched to its captured transfers.")
    counts = unmatched.groupby(["run_id", "direction", "reason"]).size().reset_index()
    rows = [list(r) for r in counts.itertuples(index=False)]
    return (
        f'<p class="notice">{len(unmatched)} message transfers had no matching capture '
        "and have no downlink/uplink row (nothing was estimated in their place).</p>"
        + _table(
            ["run", "direction", "reason", "messages"], rows, numeric=lambda j: j == 3
        )
    )


def _provenance_section(manifest: Mapping[str, Any]) -> str:
    rows: list[list[object]] = []
    for key in ("git_commit", "kernel"):
        rows.append([key, manifest.get(key, "not recorded")])
    versions = manifest.get("versions")
    if isinstance(versions, Mapping):
        rows.extend([f"version: {k}", v] for k, v in sorted(versions.items()))
    else:
        rows.append(["versions", "not recorded"])
    return _table(["item", "value"], rows)


def _overview(df: pd.DataFrame) -> str:
    networks = ", ".join(network_order(df["network"])) or "none"
    strategies = ", ".join(sorted(set(df["strategy"]))) or "none"
    return (
        f"<p>Networks: {_esc(networks)}. Strategies: {_esc(strategies)}. "
        f"Runs with data: {df['run_id'].nunique()}. Phase rows: {len(df)}.</p>"
    )


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_esc(title)}</h2>{body}</section>"


def _write_tables(results_dir: Path, df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    tables = {
        "median_phases": median_phase_table(df),
        "phase_stats": phase_stats(df),
        "ratios": study_ratios(df),
        "round_times": round_times(df),
        "round_time_table": round_time_table(df),
    }
    for name, table in tables.items():
        index = name in ("median_phases", "round_time_table")
        table.to_csv(results_dir / f"{name}.csv", index=index)
    return tables


def build_report(results_dir: Path) -> Path:
    """Write ``results_dir/report.html`` (plus figures and CSVs) and return its path."""
    results_dir = Path(results_dir)
    phases_path = results_dir / "phases.parquet"
    if not phases_path.is_file():
        raise FileNotFoundError(
            f"no phase table at {phases_path}: run `flowerbed campaign run` first "
            "(it writes phases.parquet and manifest.json into the results folder)"
        )
    df = read_phases(phases_path)
    manifest, manifest_notes = _read_manifest(results_dir)
    tables = _write_tables(results_dir, df)
    figures = results_dir / "figures"
    name = _campaign_name(manifest, df)
    bar = _figure(
        partial(phase_bar, tables["median_phases"], figures / "phase_bar"),
        "Median seconds per phase and round, stacked per network. Each segment "
        "is a median on its own: the bar's height is not the median round time.",
    )
    ecdfs = "".join(
        _figure(
            partial(transfer_ecdf, df, phase, figures / f"{phase}_ecdf"),
            f"ECDF of {phase} seconds per message (solid: train, dashed: evaluate).",
        )
        for phase in ("downlink", "uplink")
    )
    coverage = _coverage_notes(df, manifest)
    body = "".join(
        [
            f"<h1>flowerbed report: {_esc(name)}</h1>",
            _overview(df),
            "".join(_note(n) for n in manifest_notes),
            _section("Emulation", _emulation_section(manifest)),
            _section("Link profiles", _profiles_section(manifest)),
            _section("Time per phase", bar),
            _section("Downlink and uplink times", ecdfs),
            _section(
                "Median phase times",
                _median_section(tables["median_phases"], coverage)
                + _round_time_part(tables["round_time_table"]),
            ),
            _section("Study ratios", _ratios_section(tables["ratios"])),
            _section("Runs", _runs_section(manifest, df)),
            _section("Data quality", _quality_section(df)),
            _section("Provenance", _provenance_section(manifest)),
        ]
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>flowerbed report: {_esc(name)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
    out = results_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out
