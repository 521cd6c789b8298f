"""The reliability table: each fault class injected into real runs on an emulated
cluster; rounds completed, data lost, time to detect and to recover.

Per fault class and repetition, one run of 4 rounds (3 nodes, ethernet) with the
fault in round 2, plus flowerbed itself SIGKILLed mid-campaign and resumed.

- rounds: rounds aggregated out of 4;
- lost: aggregated rounds without a phase row in the saved phases.parquet, plus
  (for the SIGKILL case) rows of the runs finished before the kill that differ
  after ``--resume``; must be 0;
- detect: from the fault to the first consequence the run recorded (a failure,
  a degraded round, or the run's end when it cannot go on); n/a when the fault
  was absorbed without one (a short freeze or cut that TCP and Flower ride out);
- recover: from the fault to the next round aggregated after it.

    sudo .venv/bin/python -m bench.reliability [REPETITIONS] [FAULT ...]
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench._cluster import bench_cluster, campaign_yaml
from instrumentation.events import read_events
from instrumentation.schema import EventKind
from testbed.campaign.model import load_campaign
from testbed.campaign.runner import run_campaign

FAULTS: dict[str, str] = {
    "kill-supernode": "{kind: kill-supernode, node: node3, round: 2, after_s: 1}",
    "kill+rejoin": "{kind: kill-supernode, node: node3, round: 2, after_s: 1, "
    "duration_s: 5}",
    "freeze-supernode": "{kind: freeze-supernode, node: node3, round: 2, "
    "after_s: 1, duration_s: 20}",
    "cut-link 10 s": "{kind: cut-link, node: node2, round: 2, after_s: 8, "
    "duration_s: 10}",
    "loss 30%": "{kind: loss, node: node2, round: 2, after_s: 1, loss_pct: 30}",
    "reboot-node": "{kind: reboot-node, node: node3, round: 2, after_s: 1, "
    "duration_s: 5}",
    "kill-superlink": "{kind: kill-superlink, round: 2, after_s: 1}",
}
SETTINGS = {
    "run_deadline_s": 300,
    "round_timeout_s": 30,
    "node_wait_s": 8,
}
WORKLOAD = "{samples-per-node: 32, local-epochs: 1, batch-size: 16, "
WORKLOAD += "fraction-evaluate: 0.0}"


def _lost_rounds(out: Path, run_dir: Path) -> int:
    events = read_events(run_dir / "events.jsonl")
    aggregated = {int(e["round"]) for e in events if e.get("phase") == "aggregation"}
    phases = pd.read_parquet(out / "phases.parquet")
    saved = set(phases[phases.phase == "aggregation"]["round"].astype(int))
    return len(aggregated - saved)


def _times(run_dir: Path) -> tuple[float | None, float | None]:
    events = read_events(run_dir / "events.jsonl")
    fault = next(
        (
            e
            for e in events
            if e["event"] == EventKind.FAULT and e["action"] == "injected"
        ),
        None,
    )
    if fault is None:
        return None, None
    t0 = int(fault["t_fault_ns"])
    consequences = [
        int(e["t_ns"])
        for e in events
        if int(e["t_ns"]) > t0
        and (
            e["event"] in (EventKind.FAILURE, EventKind.DEGRADED, EventKind.RUN_ERROR)
            or (e["event"] == EventKind.RUN_END and e.get("status") != "ok")
        )
    ]
    rounds = [
        int(e["end_ns"])
        for e in events
        if e.get("phase") == "aggregation" and int(e["end_ns"]) > t0
    ]
    detect = (min(consequences) - t0) / 1e9 if consequences else None
    recover = (min(rounds) - t0) / 1e9 if rounds else None
    return detect, recover


def one_fault(inventory: Any, folder: Path, name: str, fault: str) -> dict[str, Any]:
    """One run with ``fault``; its row of the table."""
    path = campaign_yaml(folder, ["ethernet"], 4, faults=f"[{fault}]", **SETTINGS)
    text = path.read_text().replace(
        "workload: {samples-per-node: 64, local-epochs: 1, batch-size: 16}",
        f"workload: {WORKLOAD}",
    )
    path.write_text(text)
    out = folder / f"out-{name.replace(' ', '_').replace('%', '')}-{time.time_ns()}"
    (outcome,) = run_campaign(load_campaign(path), inventory, out, lambda _: None)
    if outcome.reason:
        print(f"{name}: {outcome.status}: {outcome.reason.splitlines()[0]}")
    run_dir = out / "runs" / outcome.run_id
    detect, recover = _times(run_dir)
    return {
        "fault": name,
        "status": outcome.status,
        "rounds": outcome.rounds_completed,
        "lost": _lost_rounds(out, run_dir),
        "detect_s": detect,
        "recover_s": recover,
    }


def sigkill_resume(inventory: Any, folder: Path) -> dict[str, Any]:
    """flowerbed SIGKILLed in the second run of two, then resumed."""
    path = campaign_yaml(folder, ["ethernet", "ethernet2"], 1, **SETTINGS)
    out = folder / f"out-sigkill-{time.time_ns()}"
    flowerbed = str(Path(sys.executable).parent / "flowerbed")
    argv = [flowerbed, "campaign", "run", str(path), "-i", str(inventory.path),
            "--via", "netns", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            status = json.loads((out / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            status = {}
        if status.get("run_index") == 2 and status.get("finished_runs"):
            break
        time.sleep(0.5)
    time.sleep(5)
    killed_ns = time.time_ns()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = pd.read_parquet(out / "phases.parquet")
    resumed = subprocess.run([*argv, "--resume"], capture_output=True, text=True)
    after = pd.read_parquet(out / "phases.parquet")
    kept = after[after.run_id.isin(set(before.run_id))].reset_index(drop=True)
    lost = len(before) if not kept.equals(before.reset_index(drop=True)) else 0
    events = read_events(out / "runs" / "ethernet2-r1" / "events.jsonl")
    rounds = [int(e["end_ns"]) for e in events if e.get("phase") == "aggregation"]
    return {
        "fault": "flowerbed SIGKILL + --resume",
        "status": "ok" if resumed.returncode == 0 else f"exit {resumed.returncode}",
        "rounds": len(rounds),
        "lost": lost,
        "detect_s": None,  # nothing to detect: the user resumes
        "recover_s": (min(rounds) - killed_ns) / 1e9 if rounds else None,
    }


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table (no tabulate dependency)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "n/a" if pd.isna(value) else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(frame.columns) + " |"]
    lines.append("|" + "---|" * len(frame.columns))
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def main() -> int:
    """Inject every fault class; print the table as Markdown."""
    args = sys.argv[1:]
    repetitions = int(args.pop(0)) if args and args[0].isdigit() else 1
    wanted = set(args)  # fault names to run (default: all, and the SIGKILL case)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        networks = {"ethernet": (940.0, 940.0), "ethernet2": (940.0, 940.0)}
        with bench_cluster(folder, networks, clients=3, base=238) as inventory:
            for _ in range(repetitions):
                for name, fault in FAULTS.items():
                    if wanted and name not in wanted:
                        continue
                    rows.append(one_fault(inventory, folder, name, fault))
                    print(rows[-1], flush=True)
                if not wanted or "sigkill" in wanted:
                    rows.append(sigkill_resume(inventory, folder))
                    print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    summary = table.groupby("fault", sort=False).agg(
        runs=("status", "size"),
        status=("status", lambda s: ", ".join(sorted(set(s)))),
        rounds=("rounds", lambda s: "/".join(str(v) for v in s)),
        lost=("lost", "sum"),
        detect_s=("detect_s", "median"),
        recover_s=("recover_s", "median"),
    )
    print()
    print(markdown(summary.reset_index()))
    return 0 if int(table["lost"].sum()) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
