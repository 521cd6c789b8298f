"""Stock against low-latency launch: one campaign run in both modes, interleaved.

Runs the same campaign ``--pairs`` times in each mode, alternating (stock,
low-latency, stock, low-latency, ...), each as its own ``flowerbed campaign run``
into its own results folder (``OUT/pair<i>-<mode>``), from a copy of the
campaign file with ``launch:`` set (and ``networks``/``rounds`` when given).
Then it prints, per network and mode: runs, rounds, the median round, the
floor, round/floor, Flower's share, low-latency/stock (ratio of median rounds)
and the median final accuracy with its range over runs, and per mode the
5g/ethernet uplink ratio (analysis/floor.py, analysis/summary.py,
analysis/convergence.py; docs/report.md defines them). Rounds of one mode are
pooled over its pairs.

    sudo .venv/bin/python -m bench.launch [--pairs 2] [--networks ethernet,5g]
        [--rounds 3] [--campaign campaigns/demo.yaml]
        [--inventory inventory/examples/emulated.yaml] [--out results/launch-bench]
        [--levers reply-pull=0.3,wake-message] [--plan] [--analyse] [--no-cluster]

``--plan`` prints the runs without starting anything; ``--analyse`` only
reads the folders an earlier invocation left in ``--out``. The emulated
cluster of the inventory is brought up when it is not (and removed at the
end); ``--no-cluster`` leaves the cluster alone (a lab, or one you manage).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from analysis.convergence import read_metrics
from analysis.floor import Launch, floor_table, launch_of
from analysis.linkbound import MIN_BOUND_BYTES
from analysis.phases import read_phases
from analysis.summary import network_order, study_ratios

MODES = ("stock", "low-latency")
UPLINK_RATIO = "5G uplink / Ethernet uplink"
# The goal: low-latency round <= 1.3 x floor + 0.5 s per message exchange.
GOAL_FLOOR_FACTOR = 1.3
GOAL_PER_EXCHANGE_S = 0.5


@dataclass(frozen=True)
class PlannedRun:
    """One ``campaign run`` of the benchmark: its pair, mode and folders."""

    pair: int
    mode: str
    campaign: Path
    out: Path

    def argv(self, inventory: Path) -> list[str]:
        """The command line that runs it."""
        return [
            sys.executable,
            "-m",
            "testbed.cli",
            "campaign",
            "run",
            str(self.campaign),
            "--inventory",
            str(inventory),
            "--out",
            str(self.out),
            "--overwrite",
        ]


def plan_runs(pairs: int, out: Path) -> list[PlannedRun]:
    """``pairs`` x (stock, low-latency), interleaved; campaigns in ``out/campaigns``."""
    if pairs < 1:
        raise ValueError(f"--pairs must be at least 1, got {pairs}")
    return [
        PlannedRun(
            pair,
            mode,
            out / "campaigns" / f"{mode}.yaml",
            out / f"pair{pair}-{mode}",
        )
        for pair in range(1, pairs + 1)
        for mode in MODES
    ]


def campaign_copy(
    source: Path,
    mode: str,
    target: Path,
    networks: Sequence[str] = (),
    rounds: int | None = None,
    levers: Sequence[str] = (),
) -> Path:
    """Write ``source`` with ``launch: mode`` (and the overrides) to ``target``.

    ``levers`` become ``launch_levers`` of a low-latency copy (default: the
    file's, else the mode's default set); a stock copy has none. A relative
    ``app`` path is made absolute, since the copy lives elsewhere.
    """
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: a campaign file is a YAML mapping")
    raw["launch"] = mode
    if mode == "stock":
        raw.pop("launch_levers", None)
    elif levers:
        raw["launch_levers"] = list(levers)
    if networks:
        raw["networks"] = list(networks)
    if rounds is not None:
        raw["rounds"] = rounds
    app = raw.get("app")
    if isinstance(app, str) and app != "default" and not Path(app).is_absolute():
        raw["app"] = str((source.parent / app).resolve())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return target


@dataclass(frozen=True)
class Folder:
    """One results folder read back: its phase table, metrics and launch mode."""

    path: Path
    launch: Launch
    phases: pd.DataFrame
    metrics: pd.DataFrame
    transfers: pd.DataFrame = field(default_factory=pd.DataFrame)


def read_folder(path: Path) -> Folder:
    """Phases and metrics of ``path``, run ids prefixed by the folder's name.

    The prefix keeps the runs of different folders of one campaign apart when
    they are pooled (every folder has an ``ethernet-r1``).
    """
    manifest_path = path / "manifest.json"
    manifest: dict[str, Any] = (
        json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest_path.is_file()
        else {}
    )
    phases = read_phases(path / "phases.parquet")
    metrics = read_metrics(path, manifest, phases)
    prefix = f"{path.name}/"
    phases = phases.assign(run_id=prefix + phases["run_id"].astype(str))
    if len(metrics):
        metrics = metrics.assign(run_id=prefix + metrics["run_id"].astype(str))
    transfers_path = path / "transfers.csv"
    transfers = (
        pd.read_csv(transfers_path) if transfers_path.is_file() else pd.DataFrame()
    )
    return Folder(path, launch_of(manifest), phases, metrics, transfers)


def _final_accuracy(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per network: median, min and max of the runs' last accuracy."""
    columns = ["network", "final_accuracy", "final_accuracy_min", "final_accuracy_max"]
    if metrics.empty or "accuracy" not in metrics.columns:
        return pd.DataFrame(columns=columns)
    done = metrics[metrics["accuracy"].notna()].sort_values(["run_id", "round"])
    last = done.groupby("run_id").tail(1)
    grouped = last.groupby("network")["accuracy"]
    out = pd.DataFrame(
        {
            "final_accuracy": grouped.median(),
            "final_accuracy_min": grouped.min(),
            "final_accuracy_max": grouped.max(),
        }
    ).reset_index()
    return out[columns]


def _exchanges(phases: pd.DataFrame) -> pd.Series:
    """Per network: median message exchanges (train, evaluate) of a node round."""
    compute = phases[phases["phase"].isin(["training", "evaluation"])]
    per_node = compute.groupby(["network", "run_id", "round", "node"]).size()
    return per_node.groupby("network").median()


def _uplink_ratio(phases: pd.DataFrame) -> float:
    ratios = study_ratios(phases)
    row = ratios[ratios["metric"] == UPLINK_RATIO]
    return float(row["value"].iloc[0]) if len(row) else float("nan")


def _busy_uplink_ratio(transfers: pd.DataFrame) -> float:
    """5g over ethernet median link-busy seconds of a model upload (>= 100 kB):
    the levers must leave it alone, whatever they do to the rest of the round."""
    if transfers.empty or "busy_s" not in transfers.columns:
        return float("nan")
    up = transfers[
        (transfers["direction"] == "up") & (transfers["wire_bytes"] >= MIN_BOUND_BYTES)
    ]
    medians = up.groupby(up["network"].str.lower())["busy_s"].median()
    if not {"5g", "ethernet"} <= set(medians.index) or not medians["ethernet"] > 0:
        return float("nan")
    return float(medians["5g"] / medians["ethernet"])


def mode_table(folders: Sequence[Folder]) -> pd.DataFrame:
    """Per network and mode: the floor table of the mode's pooled runs, and more.

    Columns: ``network``, ``mode``, ``runs``, ``rounds``, ``median_round_s``,
    ``median_floor_s``, ``round_over_floor``, ``flower_share``,
    ``low_latency_over_stock`` (this mode's median round over stock's on the
    network; 1 for stock), ``goal_s`` (1.3 x floor + 0.5 s per message
    exchange), ``uplink_5g_over_ethernet`` (the mode's, on every row),
    ``final_accuracy`` (median over runs) and its ``_min``/``_max``.
    """
    parts = []
    for mode in [*MODES, *sorted({f.launch.mode for f in folders} - set(MODES))]:
        chosen = [f for f in folders if f.launch.mode == mode]
        if not chosen:
            continue
        phases = pd.concat([f.phases for f in chosen], ignore_index=True)
        metrics = pd.concat([f.metrics for f in chosen], ignore_index=True)
        floors = floor_table(phases, chosen[0].launch)
        floors["runs"] = floors["network"].map(
            phases.groupby("network")["run_id"].nunique()
        )
        floors["goal_s"] = GOAL_FLOOR_FACTOR * floors[
            "median_floor_s"
        ] + GOAL_PER_EXCHANGE_S * floors["network"].map(_exchanges(phases))
        floors["uplink_5g_over_ethernet"] = _uplink_ratio(phases)
        transfers = [f.transfers for f in chosen if len(f.transfers)]
        floors["busy_uplink_5g_over_ethernet"] = _busy_uplink_ratio(
            pd.concat(transfers, ignore_index=True) if transfers else pd.DataFrame()
        )
        parts.append(floors.merge(_final_accuracy(metrics), on="network", how="left"))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    stock = out[out["mode"] == "stock"].set_index("network")["median_round_s"]
    out["low_latency_over_stock"] = out["median_round_s"] / out["network"].map(stock)
    networks = {n: i for i, n in enumerate(network_order(out["network"]))}
    modes = {m: i for i, m in enumerate(MODES)}
    return (
        out.assign(
            _n=out["network"].map(networks),
            _m=out["mode"].map(modes).fillna(len(MODES)),
        )
        .sort_values(["_n", "_m", "mode"])
        .drop(columns=["_n", "_m"])
        .reset_index(drop=True)
    )


def _cell(value: Any, kind: str) -> str:
    if not isinstance(value, int | float) or value != value:
        return "–" if not isinstance(value, str) else value
    return {
        "s": f"{value:.3f}",
        "x": f"{value:.2f}×",
        "%": f"{value:.1%}",
        "acc": f"{value:.3f}",
    }.get(kind, str(value))


def markdown(table: pd.DataFrame) -> str:
    """The benchmark's table per network and mode, and one uplink line per mode."""
    headers = [
        "network",
        "mode",
        "runs",
        "rounds",
        "round (s)",
        "floor (s)",
        "round / floor",
        "Flower's share",
        "low-latency / stock",
        "goal ≤ (s)",
        "final accuracy (range)",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in table.to_dict("records"):
        low, high = r["final_accuracy_min"], r["final_accuracy_max"]
        accuracy = (
            f"{_cell(r['final_accuracy'], 'acc')} "
            f"({_cell(low, 'acc')}–{_cell(high, 'acc')})"
        )
        cells = [
            r["network"],
            r["mode"],
            str(r["runs"]),
            str(r["rounds"]),
            _cell(r["median_round_s"], "s"),
            _cell(r["median_floor_s"], "s"),
            _cell(r["round_over_floor"], "x"),
            _cell(r["flower_share"], "%"),
            _cell(r["low_latency_over_stock"], "x"),
            _cell(r["goal_s"], "s") if r["mode"] != "stock" else "",
            accuracy,
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    for mode, rows in table.groupby("mode", sort=False):
        ratio = _cell(rows["uplink_5g_over_ethernet"].iloc[0], "x")
        busy = _cell(rows["busy_uplink_5g_over_ethernet"].iloc[0], "x")
        lines.append(
            f"- 5g / ethernet uplink ({mode}): {ratio}; link-busy uplink: {busy}"
        )
    return "\n".join(lines)


def _machine() -> str:
    import flwr

    return (
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {platform.node()}, "
        f"kernel {platform.release()}, flwr {flwr.__version__}"
    )


def run_all(runs: Sequence[PlannedRun], inventory: Path) -> list[tuple[Path, int]]:
    """Each planned run in order; a failed run is reported and the next one runs."""
    codes = []
    for run in runs:
        print(
            f"pair {run.pair}, {run.mode}: {' '.join(run.argv(inventory))}", flush=True
        )
        started = time.monotonic()
        code = subprocess.run(run.argv(inventory), check=False).returncode  # noqa: S603
        print(f"  exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        codes.append((run.out, code))
    return codes


def _cluster(inventory: Path, verb: str) -> None:
    argv = [sys.executable, "-m", "testbed.cli", "cluster", verb, str(inventory)]
    subprocess.run(argv, check=True)  # noqa: S603 - fixed argv


def _cluster_is_up(inventory: Path) -> bool:
    from inventory.loader import load_inventory
    from testbed.emulation.status import cluster_status, is_up

    return is_up(cluster_status(load_inventory(inventory)))


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", type=Path, default=Path("campaigns/demo.yaml"))
    parser.add_argument(
        "--inventory", type=Path, default=Path("inventory/examples/emulated.yaml")
    )
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument(
        "--networks", default="", help="comma-separated (default: the campaign's)"
    )
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--levers",
        default="",
        help="comma-separated launch_levers of the low-latency runs, e.g. "
        "reply-pull=0.3 (default: the campaign's, else all)",
    )
    parser.add_argument("--out", type=Path, default=Path("results/launch-bench"))
    parser.add_argument("--plan", action="store_true", help="print the runs only")
    parser.add_argument(
        "--analyse", action="store_true", help="only read the folders in --out"
    )
    parser.add_argument(
        "--no-cluster", action="store_true", help="leave the cluster alone"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or plan, or only analyse) the benchmark; print its table."""
    args = _arguments(argv)
    networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    levers = [v.strip() for v in args.levers.split(",") if v.strip()]
    runs = plan_runs(args.pairs, args.out)
    if args.plan:
        for run in runs:
            print(f"pair {run.pair}, {run.mode}: {' '.join(run.argv(args.inventory))}")
        print(
            f"campaign copies: {args.campaign} with launch: <mode>"
            + (f", networks: {networks}" if networks else "")
            + (f", rounds: {args.rounds}" if args.rounds is not None else "")
            + (f", low-latency launch_levers: {levers}" if levers else "")
        )
        return 0
    failed = 0
    if not args.analyse:
        for mode in MODES:
            campaign_copy(
                args.campaign, mode, args.out / "campaigns" / f"{mode}.yaml",
                networks, args.rounds, levers,
            )  # fmt: skip
        bring_up = not args.no_cluster and not _cluster_is_up(args.inventory)
        if bring_up:
            _cluster(args.inventory, "up")
        try:
            failed = sum(code != 0 for _, code in run_all(runs, args.inventory))
        finally:
            if bring_up:
                _cluster(args.inventory, "down")
    folders = []
    for run in runs:
        if not (run.out / "phases.parquet").is_file():
            continue
        folders.append(read_folder(run.out))
        if folders[-1].launch.mode != run.mode:
            print(
                f"note: {run.out} ran as {folders[-1].launch.mode}, not {run.mode} "
                "(its manifest says so: a fallback, or a build without launch modes)"
            )
    if not folders:
        print(f"no results folder with a phases.parquet under {args.out}")
        return 1
    print()
    print(
        f"{_machine()}; {args.campaign}, {args.pairs} pair(s), {failed} failed run(s)"
    )
    print()
    print(markdown(mode_table(folders)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
