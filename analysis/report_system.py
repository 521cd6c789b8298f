"""Report sections on hosts and faults: CPU and NIC, failures, asynchronous runs."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from analysis.asynchrony import asynchronous_timeline, staleness_summary, update_table
from analysis.damage import SYSTEM, Damage, DataGap
from analysis.figures import choose_gantt_rounds, save_figure
from analysis.figures_system import system_timeline
from analysis.html import MAX_LISTED, details, folded
from analysis.html import esc as _esc
from analysis.html import figure as _figure
from analysis.html import fmt as _fmt
from analysis.html import note as _note
from analysis.html import safe_name as _safe_name
from analysis.html import table as _table
from analysis.report_setup import EventLogs
from analysis.report_study import bytes_section
from analysis.report_wire import read_csv
from analysis.results_files import record
from analysis.summary import SERVER_NODE, network_order
from analysis.system import nic_rates, read_system
from instrumentation.schema import EventKind


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


def system_section(
    results_dir: Path, df: pd.DataFrame, figures: Path, damage: Damage | None = None
) -> str:
    path = results_dir / "system.parquet"
    if not path.exists():
        return _note("No system.parquet in the results folder.")
    try:
        system = _read_chosen_runs(path, df)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        gap = DataGap(path, f"could not be read ({exc})", "not read", affects=(SYSTEM,))
        record(damage, gap)
        return _note(f"{gap.sentence()} Nothing is shown from it.")
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
    return details(
        f"CPU and NIC throughput per host, one run per network ({len(parts)} figures)",
        "".join(parts),
    )


FAILURE_COLUMNS = ("run_id", "round", "node", "phase", "kind", "cause")


def failures_section(results_dir: Path, damage: Damage | None = None) -> str:
    """Every failure, degraded round and injected fault (failures.csv)."""
    path = results_dir / "failures.csv"
    if not path.is_file():
        return "<p>No failures: every node answered every round.</p>"
    table, problem = read_csv(path, FAILURE_COLUMNS, damage, ("failures table",))
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
    shown = table.head(MAX_LISTED).fillna("")
    rows = [[str(v) for v in record] for record in shown[list(FAILURE_COLUMNS)]
            .to_numpy().tolist()]  # fmt: skip
    more = len(table) - len(shown)
    return (
        summary
        + folded(
            "Every failure",
            _table(list(FAILURE_COLUMNS), rows, numeric=lambda j: j == 1),
            len(rows),
        )
        + (_note(f"{more} more rows in failures.csv.") if more else "")
    )


def asynchrony_section(logs: EventLogs, figures: Path) -> str:
    """FedBuff runs: who trained on which model version when, and how stale."""
    parts = []
    for run_id, events in sorted(logs.events.items()):
        if not any(e.get("event") == EventKind.FEDBUFF_UPDATE for e in events):
            continue
        updates = update_table(list(events))
        if updates.empty:
            continue
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
