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
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from analysis.asynchrony import (
    asynchronous_timeline,
    staleness_summary,
    update_table,
)
from analysis.figures import (
    anatomy_bar,
    choose_gantt_rounds,
    gantt,
    phase_bar,
    save_figure,
)
from analysis.figures_ecdf import transfer_ecdf
from analysis.figures_system import system_timeline
from analysis.html import esc as _esc
from analysis.html import figure as _figure
from analysis.html import fmt as _fmt
from analysis.html import note as _note
from analysis.html import safe_name as _safe_name
from analysis.html import section as _section
from analysis.html import table as _table
from analysis.phases import read_phases, unmatched_frame
from analysis.report_study import (
    bytes_section,
    convergence_section,
    ecdf_section,
    markdown_summary,
    straggler_section,
    study_results,
    study_section,
)
from analysis.rollup import Rollup, rollup
from analysis.study import BootstrapConfig
from analysis.summary import (
    LEGACY_PHASES,
    PHASE_DEFINITIONS,
    PHASE_ORDER,
    GAP_PHASES,
    SERVER_NODE,
    network_order,
)
from analysis.system import nic_rates, read_system

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
dt{font-weight:600;font-family:ui-monospace,monospace}dd{margin:0 0 .3rem 1.5rem}
"""
TRANSFER_COLUMNS = (
    "node",
    "round",
    "message_type",
    "direction",
    "wire_s",
    "log_s",
    "diff_s",
    "diff_pct",
    "disagrees",
    "retransmissions",
    "goodput_mbit",
)
# Shown beside wire_s when transfers.csv has them (a capture on the node's side).
NODE_SIDE_TRANSFER_COLUMNS = ("node_wire_s", "side_diff_s")
BYTE_COLUMNS = ("flower_bytes", "wire_bytes", "nic_bytes", "overhead")
# At most this many disagreeing transfers are listed; the count is always complete.
_MAX_LISTED = 200


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


def _coverage_notes(df: pd.DataFrame, manifest: Mapping[str, Any]) -> list[str]:
    """Networks without data and phases never recorded on a network."""
    notes = []
    present = set(df["network"].unique())
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
    tiled = _tiled_runs(df)
    # Distinct (network, run, phase) first: a million rows reduce to a few hundred.
    seen_by = df[["network", "run_id", "phase"]].drop_duplicates()
    for network in network_order(present):
        rows = seen_by[seen_by["network"] == network]
        anatomy = [p for p in PHASE_ORDER if p != "unresolved"]
        wanted = anatomy if rows["run_id"].isin(tiled).any() else LEGACY_PHASES
        seen = set(rows["phase"].unique())
        missing = [p for p in wanted if p not in seen]
        if missing:
            notes.append(f"On {network}, no {', '.join(missing)} was recorded.")
    return notes


def _round_definition(rounds: pd.DataFrame) -> str:
    kinds = set(rounds["tiled"]) if not rounds.empty else set()
    parts = []
    if True in kinds:
        parts.append(
            "Round time (rounds with the round anatomy): the slowest node's time from "
            "the round's first dispatch to its last reply's pickup, i.e. the sum of "
            "its phases, server aggregation and waiting included."
        )
    if False in kinds:
        parts.append(
            "Round time (rounds without the round anatomy): the slowest node's "
            "downlink + training + evaluation + uplink, plus the server's "
            "aggregation; time messages wait in the SuperLink is in no phase."
        )
    return "".join(_note(p) for p in parts)


def _round_time_part(table: pd.DataFrame, rounds: pd.DataFrame) -> str:
    if table.empty:
        return ""
    rows = [
        [network, n_rounds, complete, _fmt(median), _fmt(p95), _fmt(slowest)]
        for network, n_rounds, complete, median, p95, slowest in zip(
            table.index,
            table["rounds"].tolist(),
            table["complete_rounds"].tolist(),
            table["median_round_s"].tolist(),
            table["p95_round_s"].tolist(),
            table["most_often_slowest"].tolist(),
            strict=True,
        )
    ]
    headers = [
        "network",
        "rounds",
        "complete rounds",
        "median round (s)",
        "p95 (s)",
        "slowest node (most often)",
    ]
    return (
        "<h3>Round time</h3>"
        + _table(headers, rows, numeric=lambda j: 0 < j < 5)
        + _round_definition(rounds)
    )


def _median_section(table: pd.DataFrame, notes: list[str]) -> str:
    if table.empty:
        return _note("The phase table has no rows.")
    phases = [c for c in table.columns if c != "n"]
    records = table.to_dict("index")
    rows = [
        [network, *(_fmt(record[p]) for p in phases), record["n"]]
        for network, record in records.items()
    ]
    headers = ["network", *(f"{p} (s)" for p in phases), "n rounds"]
    out = _table(headers, rows, numeric=lambda j: j > 0)
    return out + "".join(_note(n) for n in notes)


def _definitions() -> str:
    items = "".join(
        f"<dt>{_esc(phase)}</dt><dd>{_esc(PHASE_DEFINITIONS[phase])}</dd>"
        for phase in PHASE_ORDER
    )
    return f"<dl>{items}</dl>"


def _anatomy_section(df: pd.DataFrame, table: pd.DataFrame, figures: Path) -> str:
    if not _tiled_runs(df):
        return _note(
            "This phase table has no round anatomy (no dispatch_wait, "
            "client_startup, reply_handoff, pickup_wait or server_other rows): it "
            "was built by an older analysis.phases. Rebuild phases.parquet from the "
            "runs' events to see where a round's time goes."
        )
    bar = _figure(
        partial(anatomy_bar, table, figures / "anatomy_bar"),
        "Median seconds per phase per (round, node), stacked per network; hatched "
        "phases wait (on Flower's polling or on other nodes) rather than work. The "
        "black tick is the median round time: each segment is a median on its own, "
        "so the stack need not reach it.",
    )
    rows = [
        [network, phase, _fmt(median), _fmt(bound), _share(share), _fmt(round_s), n]
        for network, phase, median, bound, share, round_s, n in zip(
            table["network"].tolist(),
            table["phase"].tolist(),
            table["median_s"].tolist(),
            table["median_uncertainty_s"].tolist(),
            table["share"].tolist(),
            table["median_round_s"].tolist(),
            table["n"].tolist(),
            strict=True,
        )
    ]
    headers = [
        "network",
        "phase",
        "median (s)",
        "± clock (s)",
        "share of median round",
        "median round (s)",
        "samples",
    ]
    return (
        bar
        + _table(headers, rows, numeric=lambda j: j > 1)
        + _note(
            "Samples are (run, round, node): a node's seconds in the phase during "
            "the round, summed over its train and evaluate messages; a fully tiled "
            "node round without the phase counts 0 s. ± clock: median clock "
            "uncertainty of those seconds (phases bounded by a node and a server "
            "instant). Node rounds the tiling could not resolve are left out (see "
            "Data quality)."
        )
        + "<h3>Phases</h3>"
        + _definitions()
        + _note("docs/anatomy.md gives each phase's bounds and uncertainty.")
    )


def _share(value: object) -> str:
    if isinstance(value, float) and value == value:
        return f"{value:.1%}"
    return "–"


def _tiled_runs(df: pd.DataFrame) -> set[str]:
    """summary.tiled_runs without iterating a million strings in Python."""
    return set(df.loc[df["phase"].isin(GAP_PHASES), "run_id"].unique())


def _timelines_section(df: pd.DataFrame, figures: Path, timeline_round: int = 2) -> str:
    tiled_ids = _tiled_runs(df)
    every_run = tiled_ids >= set(df["run_id"].unique())
    tiled = df if every_run else df[df["run_id"].isin(tiled_ids)]
    if tiled.empty:
        return _note(
            "No timeline: this phase table has no round anatomy, so a round's "
            "phases leave gaps (see Round anatomy)."
        )
    parts = []
    for network, run_id, round_ in choose_gantt_rounds(tiled, timeline_round):
        name = f"timeline_{_safe_name(network)}"
        parts.append(
            _figure(
                partial(gantt, tiled, run_id, round_, figures / name),
                f"{network}: run {run_id}, round {round_}. One row per node (top: "
                "the server's aggregation timer); each bar is one phase from its "
                f"start to its end, hatched bars wait. Round {timeline_round} is "
                "shown when it exists, else the first (round 1 includes start-up "
                "effects).",
            )
        )
    return "".join(parts)


def _ms(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) / 1e6


def _clocks_section(manifest: Mapping[str, Any]) -> str:
    clocks = manifest.get("clocks")
    if not isinstance(clocks, list) or not clocks:
        return _note("The manifest records no clock offsets.")
    rows, classes = [], []
    injected_n = recovered = 0
    for clock in clocks:
        if not isinstance(clock, Mapping):
            continue
        offset = _ms(clock.get("offset_ns"))
        bound = _ms(clock.get("uncertainty_ns"))
        injected = _ms(clock.get("injected_offset_ns"))
        error = None if offset is None or injected is None else offset - injected
        within = None if error is None or bound is None else abs(error) <= bound
        if within is not None:
            injected_n += 1
            recovered += int(within)
        rows.append(
            [
                clock.get("run_id", ""),
                clock.get("node", ""),
                clock.get("path", ""),
                clock.get("when", ""),
                _fmt(offset),
                _fmt(bound),
                _fmt(injected),
                _fmt(error),
                {None: "–", True: "yes", False: "no"}[within],
            ]
        )
        classes.append("failed" if within is False else "")
    headers = [
        "run",
        "node",
        "path",
        "when",
        "offset (ms)",
        "± (ms)",
        "injected (ms)",
        "measured − injected (ms)",
        "within ±",
    ]
    summary = _note(
        f"{len(rows)} measurements of node clock minus server clock "
        "(docs/clocks.md); the true offset lies within offset ± uncertainty."
        + (
            f" {recovered} of {injected_n} recovered their injected offset within "
            "that bound (misses highlighted)."
            if injected_n
            else ""
        )
    )
    return summary + _table(headers, rows, classes, numeric=lambda j: 4 <= j <= 7)


def _read_csv(path: Path, required: Sequence[str]) -> tuple[pd.DataFrame | None, str]:
    """A CSV with ``required`` columns, or None and a note saying what is wrong."""
    if not path.is_file():
        return None, f"No {path.name} in the results folder."
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return None, f"{path} could not be read ({exc}); nothing shown from it."
    missing = [c for c in required if c not in table.columns]
    if missing:
        return None, f"{path} lacks columns {missing}; nothing shown from it."
    return table, ""


def _as_bool(values: pd.Series) -> pd.Series:
    if values.dtype == bool:
        return values
    text = values.astype(str).str.strip().str.lower()
    return text.isin(("true", "1", "yes"))


def _transfers_section(results_dir: Path) -> str:
    table, problem = _read_csv(results_dir / "transfers.csv", TRANSFER_COLUMNS)
    if table is None:
        return _note(problem)
    disagrees = table[_as_bool(table["disagrees"])]
    labels = [c for c in ("run_id", "network") if c in table.columns]
    columns = [*labels]
    for c in TRANSFER_COLUMNS:
        if c != "disagrees":
            columns.append(c)
        if c == "wire_s":
            columns += [n for n in NODE_SIDE_TRANSFER_COLUMNS if n in table.columns]
    diff = pd.to_numeric(table["diff_s"], errors="coerce").abs()
    summary = (
        f"<p>{len(disagrees)} of {len(table)} transfers disagree between the wire "
        "(captured payload bytes) and the SuperNode's log window; median "
        f"|wire − log| {_fmt(float(diff.median()))} s.</p>"
    ) + _node_side_summary(table)
    if disagrees.empty:
        return summary
    shown = disagrees.head(_MAX_LISTED)
    rows = [
        [_transfer_cell(c, v) for c, v in zip(columns, record, strict=True)]
        for record in shown[columns].to_numpy().tolist()
    ]
    more = len(disagrees) - len(shown)
    return (
        summary
        + _table(columns, rows, numeric=lambda j: j >= len(labels) + 4)
        + (_note(f"{more} more disagreeing transfers not listed.") if more else "")
    )


def _asynchrony_section(results_dir: Path, figures: Path) -> str:
    """FedBuff runs: who trained on which model version when, and how stale."""
    parts = []
    for log in sorted(results_dir.glob("runs/*/events.jsonl")):
        text = log.read_text(errors="replace")
        if '"fedbuff_update"' not in text:
            continue
        events = [json.loads(line) for line in text.splitlines() if line.strip()]
        updates = update_table(events)
        if updates.empty:
            continue
        run_id = log.parent.name
        summary = staleness_summary(updates)
        parts.append(f"<h3>{_esc(run_id)}</h3>")
        parts.append(
            _table(
                [str(c) for c in summary.columns],
                [
                    [_fmt(v) if isinstance(v, float) else str(v) for v in row]
                    for row in summary.to_numpy().tolist()
                ],  # fmt: skip
                numeric=lambda j: j > 0,
            )
        )

        def draw(updates: pd.DataFrame = updates, run_id: str = run_id) -> Any:
            return save_figure(
                asynchronous_timeline(updates, run_id),
                figures / f"async-timeline-{_safe_name(run_id)}",
            )

        parts.append(
            _figure(
                draw,
                f"{run_id}: each update from dispatch to arrival, coloured by "
                "staleness (model versions behind); dotted lines: new versions.",
            )
        )
    if not parts:
        return "<p>No asynchronous (FedBuff) run in this campaign.</p>"
    return "".join(parts)


FAILURE_COLUMNS = ("run_id", "round", "node", "phase", "kind", "cause")


def _failures_section(results_dir: Path) -> str:
    """Every failure, degraded round and injected fault (failures.csv)."""
    path = results_dir / "failures.csv"
    if not path.is_file():
        return "<p>No failures: every node answered every round.</p>"
    table, problem = _read_csv(path, FAILURE_COLUMNS)
    if table is None:
        return _note(problem)
    counts = table["kind"].value_counts()
    summary = (
        "<p>"
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + (
            ". A <code>no_reply</code> row's phase says where the message stopped, "
            "from the bytes on the wire (docs/reliability.md).</p>"
        )
    )
    shown = table.head(_MAX_LISTED).fillna("")
    rows = [[str(v) for v in record] for record in shown[list(FAILURE_COLUMNS)]
            .to_numpy().tolist()]  # fmt: skip
    more = len(table) - len(shown)
    return (
        summary
        + _table(list(FAILURE_COLUMNS), rows, numeric=lambda j: j == 1)
        + (_note(f"{more} more rows in failures.csv.") if more else "")
    )


def _node_side_summary(table: pd.DataFrame) -> str:
    """What the capture on the nodes' own interfaces saw, when there was one."""
    if not set(NODE_SIDE_TRANSFER_COLUMNS) <= set(table.columns):
        return ""
    seen = pd.to_numeric(table["node_wire_s"], errors="coerce").notna()
    if not seen.any():
        return _note(
            "No transfer was seen by a capture on the node's own interface "
            "(node_wire_s is empty): node-side capture off or lost."
        )
    side = pd.to_numeric(table.loc[seen, "side_diff_s"], errors="coerce").abs()
    return (
        f"<p>The nodes' own interfaces saw {int(seen.sum())} of {len(table)} "
        f"transfers; median |node − server| duration {_fmt(float(side.median()))} s, "
        f"largest {_fmt(float(side.max()))} s (side_diff_s = node_wire_s − wire_s; "
        "a queue growing between the two capture points during a transfer makes "
        "it positive for a downlink, negative for an uplink: docs/anatomy.md).</p>"
    )


def _transfer_cell(column: str, value: object) -> str:
    if column == "diff_pct" and isinstance(value, float):
        return _fmt(value, 1)
    return _fmt(value)


def _bytes_section(results_dir: Path) -> str:
    table, problem = _read_csv(results_dir / "bytes.csv", ())
    if table is None:
        return _note(problem)
    metrics = [c for c in BYTE_COLUMNS if c in table.columns]
    keys = [c for c in ("network", "message_type", "direction") if c in table.columns]
    if not metrics:
        return _note(f"bytes.csv has none of the columns {list(BYTE_COLUMNS)}.")
    notes = "" if "network" in keys else _note("bytes.csv has no network column.")
    values = table[metrics].apply(pd.to_numeric, errors="coerce")
    if keys:
        frame = pd.concat([table[keys].astype(str), values], axis=1)
        grouped = frame.groupby(keys, sort=True)
        medians = grouped[metrics].median()
        medians["n"] = grouped.size()
        medians = medians.reset_index()
    else:
        medians = values.median().to_frame().T
        medians["n"] = len(table)
    if "network" in keys:
        order = {n: i for i, n in enumerate(network_order(medians["network"]))}
        position = medians["network"].map(order)
        medians = medians.assign(_o=position).sort_values("_o", kind="stable")
    rows = [
        [*(r[k] for k in keys), *(_bytes_cell(m, r[m]) for m in metrics), r["n"]]
        for r in medians.to_dict("records")
    ]
    headers = [*keys, *(f"median {m}" for m in metrics), "n"]
    return (
        _table(headers, rows, numeric=lambda j: j >= len(keys))
        + notes
        + _note(
            "flower_bytes: Flower's count_bytes() of the message content; "
            "wire_bytes: TCP payload captured; nic_bytes: the NIC counters' bytes "
            "(headers and other traffic included); overhead as bytes.csv defines it."
        )
    )


def _bytes_cell(metric: str, value: object) -> str:
    if metric == "overhead":
        return _fmt(value)
    if isinstance(value, float) and value == value:
        return f"{value:,.0f}"
    return "–"


def system_series(
    system: pd.DataFrame, run_id: str
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """CPU % and NIC throughput per host of one run of a ``system.parquet`` table.

    Returns ``cpu`` (``host, t_s, cpu_percent``: mean over the host's cores),
    ``nic`` (``host, device, direction, start_s, end_s, mbit_s`` per sampling
    interval of each host's busiest NIC, loopback left out) and the instant
    ``t_s`` counts from: the run's first sample.
    """
    run = system[system["run_id"] == run_id]
    t0 = int(run["t_ns"].min())
    cores = run[run["metric"] == "cpu_percent"]
    cpu = cores.groupby(["host", "t_ns"])["value"].mean().reset_index()
    cpu = pd.DataFrame(
        {
            "host": cpu["host"].astype(str),
            "t_s": (cpu["t_ns"] - t0) / 1e9,
            "cpu_percent": cpu["value"],
        }
    )
    rates = nic_rates(run)
    rates = rates[rates["device"] != "lo"]
    # A host's NICs can carry the same bytes twice (a bridge and its ports): show
    # the one that moved the most, not a sum.
    totals = rates.groupby(["host", "device"])["bytes"].sum().reset_index()
    busiest = totals.sort_values(["host", "bytes"], ascending=[True, False])
    busiest = busiest.drop_duplicates("host")
    rates = rates.merge(busiest[["host", "device"]], on=["host", "device"])
    nic = pd.DataFrame(
        {
            "host": rates["host"].astype(str),
            "device": rates["device"].astype(str),
            "direction": rates["direction"],
            "start_s": (rates["start_ns"] - t0) / 1e9,
            "end_s": (rates["end_ns"] - t0) / 1e9,
            "mbit_s": rates["rate_bytes_per_s"] * 8 / 1e6,
        }
    )
    return cpu, nic, t0


def _read_chosen_runs(path: Path, df: pd.DataFrame) -> pd.DataFrame:
    """The samples of one run per network: the run the timelines show, else the first.

    Only those runs are read from the file (a long campaign's samples are large).
    """
    table = pq.read_table(path, columns=["network", "run_id"])
    pairs = table.group_by(["network", "run_id"]).aggregate([]).to_pandas()
    pairs = pairs.astype(str)
    preferred = {n: r for n, r, _ in choose_gantt_rounds(df)} if len(df) else {}
    chosen = []
    for network, runs in pairs.groupby("network")["run_id"]:
        ids = sorted(runs)
        wanted = preferred.get(str(network), ids[0])
        chosen.append(wanted if wanted in ids else ids[0])
    if not chosen:
        return read_system(path)
    return pd.read_parquet(path, engine="pyarrow", filters=[("run_id", "in", chosen)])


def _system_section(results_dir: Path, df: pd.DataFrame, figures: Path) -> str:
    path = results_dir / "system.parquet"
    if not path.is_file():
        return _note("No system.parquet in the results folder.")
    try:
        system = _read_chosen_runs(path, df)
    except (OSError, ValueError, KeyError) as exc:
        return _note(f"{path} could not be read ({exc}); nothing shown from it.")
    required = ("run_id", "network", "host", "t_ns", "metric", "device", "value")
    missing = [c for c in required if c not in system.columns]
    if missing or system.empty:
        return _note(f"{path} has no samples or lacks columns {missing}.")
    parts, server_nic = [], []
    for network in network_order(system["network"].astype(str).unique()):
        run_id = str(system.loc[system["network"] == network, "run_id"].iloc[0])
        cpu, nic, t0 = system_series(system, run_id)
        server = nic[nic["host"] == SERVER_NODE]
        if len(server):
            server_nic.append(server.assign(network=network))
        mine = df.loc[df["run_id"] == run_id, ["round", "start_ns"]]
        starts = mine.groupby("round")["start_ns"].min()
        marks = [(int(t) - t0) / 1e9 for t in starts]
        parts.append(
            _figure(
                partial(
                    system_timeline,
                    cpu,
                    nic,
                    f"{network}: run {run_id}",
                    figures / f"system_{_safe_name(network)}",
                    marks,
                ),
                f"{network}, run {run_id}: CPU per host (mean over its cores) and "
                "throughput of each host's busiest NIC (solid sent, dashed "
                "received, headers included); dotted lines: round starts.",
            )
        )
    if server_nic:
        parts.append(bytes_section(pd.concat(server_nic, ignore_index=True), figures))
    return "".join(parts)


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


def _unmatched_part(df: pd.DataFrame) -> str:
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


def _tiling_part(df: pd.DataFrame) -> str:
    """Node rounds the round anatomy could not tile, or tiled with doubts."""
    records = [r for r in df.attrs.get("anatomy", []) if isinstance(r, Mapping)]
    unresolved = df.loc[df["phase"] == "unresolved", ["run_id", "round", "node"]]
    if not records and unresolved.empty:
        return ""
    parts = []
    if records:
        tiled = sum(1 for r in records if r.get("tiled"))
        parts.append(
            _note(f"The round anatomy tiled {tiled} of {len(records)} node rounds.")
        )
    noted = [r for r in records if r.get("note")]
    if noted:
        counts: dict[tuple[str, str, str], int] = {}
        for r in noted:
            key = (str(r.get("run_id", "")), "yes" if r.get("tiled") else "no")
            counts[(*key, str(r["note"]))] = counts.get((*key, str(r["note"])), 0) + 1
        rows = [[*key, n] for key, n in sorted(counts.items())][:_MAX_LISTED]
        parts.append(
            _table(
                ["run", "tiled", "note", "node rounds"],
                rows,
                numeric=lambda j: j == 3,
            )
        )
    if not unresolved.empty:
        n = len(unresolved.drop_duplicates())
        parts.append(
            _note(
                f"{n} tiled node rounds have unresolved stretches (instants missing "
                "inside them): their rounds are incomplete and left out of medians."
            )
        )
    return "<h3>Round anatomy</h3>" + "".join(parts)


def _quality_section(df: pd.DataFrame) -> str:
    return _unmatched_part(df) + _tiling_part(df)


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
    coverage = _coverage_notes(df, manifest)
    body = "".join(
        [
            f"<h1>flowerbed report: {_esc(name)}</h1>",
            _overview(df),
            "".join(_note(n) for n in manifest_notes),
            _section("Emulation", _emulation_section(manifest)),
            _section("Link profiles", _profiles_section(manifest)),
            _section("Study", study_section(study, figures), "study"),
            _section("Stragglers", straggler_section(study, figures), "stragglers"),
            _section("Convergence", convergence_section(study, figures), "convergence"),
            _section("Time per phase", bar),
            _section("Downlink and uplink times", ecdfs),
            _section("Time per phase: ECDFs", ecdf_section(study, figures)),
            _section(
                "Median phase times",
                _median_section(tables["median_phases"], coverage)
                + _round_time_part(tables["round_time_table"], tables["round_times"]),
            ),
            _section("Study ratios", _ratios_section(tables["ratios"])),
            _guarded(
                "Round anatomy",
                partial(_anatomy_section, df, tables["anatomy"], figures),
            ),
            _guarded(
                "Round timelines",
                partial(_timelines_section, df, figures, timeline_round),
            ),
            _guarded(
                "Transfers: wire vs SuperNode",
                partial(_transfers_section, results_dir),
            ),
            _guarded("Bytes", partial(_bytes_section, results_dir)),
            _guarded("System", partial(_system_section, results_dir, df, figures)),
            _guarded("Clock offsets", partial(_clocks_section, manifest)),
            _section("Runs", _runs_section(manifest, df)),
            _guarded("Failures", partial(_failures_section, results_dir)),
            _guarded(
                "Asynchronous timeline",
                partial(_asynchrony_section, results_dir, figures),
            ),
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
    files = [
        "report.html",
        "figures/*.png|pdf",
        *sorted(p.name for p in results_dir.glob("*.csv")),
    ]
    (results_dir / "summary.md").write_text(
        markdown_summary(name, study, files), encoding="utf-8"
    )
    return out
