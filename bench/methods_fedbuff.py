"""FedBuff vs synchronous FedAvg: wall-clock time to a target accuracy, 5G straggler.

Builds a throwaway emulated cluster of ``--clients`` nodes on one Ethernet-like
network (100 Mbit/s both ways), then slows node1's uplink to a 5G-cell-edge-like
1 Mbit/s (its HTB class inside its namespace, testbed/commands/shaping.py), and runs
the default app twice over it with the same workload: synchronous FedAvg (every
round waits for node1) and FedBuff (concurrency = all nodes, buffer K). For
each it prints the server accuracy over wall-clock time (from the ServerApp's
``app_start``) and the time to the first model reaching each ``--targets``
accuracy. Needs root.

    sudo .venv/bin/python -m bench.methods_fedbuff --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._cluster import bench_cluster
from instrumentation.events import read_events
from instrumentation.schema import EventKind
from inventory.models import Inventory
from testbed.campaign.model import load_campaign
from testbed.campaign.runner import run_campaign
from testbed.commands import shaping
from testbed.emulation.naming import node_namespace

STRAGGLER = "node1"
STRAGGLER_UPLINK_MBIT = 1.0
ETHERNET_MBIT = 100.0


@dataclass(frozen=True)
class Curve:
    """Server accuracy per round/version and its wall-clock instant (s)."""

    method: str
    seed: int
    points: tuple[tuple[int, float, float], ...]  # (round, seconds, accuracy)
    status: str
    reason: str = ""

    def time_to(self, target: float) -> float | None:
        """Seconds until the first model with accuracy >= ``target``."""
        for _, seconds, accuracy in self.points:
            if accuracy >= target:
                return seconds
        return None


def slow_uplink(inventory: Inventory, host: str, rate_mbit: float) -> None:
    """Re-shape ``host``'s uplink on every network to ``rate_mbit`` (HTB class)."""
    namespace = node_namespace(inventory, host)
    for client in inventory.clients:
        if client.name != host:
            continue
        for iface in client.interfaces:
            argv = shaping.htb_class(iface.ifname, rate_mbit)
            subprocess.run(["ip", "netns", "exec", namespace, *argv], check=True)


def _campaign(folder: Path, method: str, rounds: int, args: argparse.Namespace) -> Path:
    if method == "fedbuff":
        strategy = (
            f"{{name: fedbuff, parameters: {{concurrency: {args.clients},"
            f" buffer_size: {args.buffer_size}, staleness_exponent: 0.5,"
            " server_learning_rate: 1.0, server_momentum: 0.0,"
            " poll_interval_s: 0.1}}"
        )
    else:
        strategy = "fedavg"
    path = folder / f"{method}.yaml"
    path.write_text(
        f"""name: bench-{method}
networks: [ethernet]
strategy: {strategy}
rounds: {rounds}
capture: CAPTURE
clock_probes: false
system_sampling_hz: 0
run_deadline_s: {args.deadline_s}
round_timeout_s: 300
workload: {{samples-per-node: {args.samples}, local-epochs: 1, batch-size: 16,
  learning-rate: {args.lr}, model-width: {args.width}, fraction-evaluate: 0.0,
  seed: SEED}}
""".replace("SEED", str(args.seed_now)).replace("CAPTURE", str(args.capture).lower())
    )
    return path


def _curve(
    method: str, seed: int, events: list[dict[str, Any]], status: str, reason: str
) -> Curve:
    starts = [e["t_ns"] for e in events if e["event"] == EventKind.APP_START]
    origin = min(starts) if starts else 0
    points = sorted(
        (
            int(e["round"]),
            (int(e.get("end_ns", e["t_ns"])) - origin) / 1e9,
            float(e["values"]["accuracy"]),
        )
        for e in events
        if e["event"] == EventKind.METRICS and e.get("scope") == "server"
    )
    return Curve(method, seed, tuple(points), status, reason)


def draw_timeline(events: list[dict[str, Any]], path: Path) -> None:
    """The asynchronous timeline of one FedBuff run, as PNG (and PDF beside it)."""
    from analysis.asynchrony import asynchronous_timeline, update_table

    figure = asynchronous_timeline(update_table(events))
    for target in (path, path.with_suffix(".pdf")):
        figure.savefig(target, dpi=120, bbox_inches="tight")


def run_method(
    inventory: Inventory, folder: Path, method: str, args: argparse.Namespace
) -> Curve:
    """Run one campaign of ``method`` and read its server accuracy curve."""
    rounds = args.versions if method == "fedbuff" else args.rounds
    out = (args.out or folder) / f"out-{method}-{args.seed_now}"
    campaign = load_campaign(_campaign(folder, method, rounds, args))
    (outcome,) = run_campaign(campaign, inventory, out, progress=lambda _: None)
    log = out / "runs" / "ethernet-r1" / "events.jsonl"
    events = read_events(log) if log.exists() else []
    if method == "fedbuff" and args.keep_events:
        args.keep_events.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    if method == "fedbuff" and args.timeline and events:
        draw_timeline(events, args.timeline)
    return _curve(method, args.seed_now, events, outcome.status, outcome.reason)


def main() -> int:
    """Run FedAvg and FedBuff per seed and print the times to target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.2, 0.25, 0.3])
    parser.add_argument("--rounds", type=int, default=8, help="FedAvg rounds")
    parser.add_argument("--versions", type=int, default=30, help="FedBuff versions")
    parser.add_argument("--buffer-size", type=int, default=2)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--width", type=float, default=1.17)
    parser.add_argument("--deadline-s", type=int, default=900)
    parser.add_argument("--keep-events", type=Path, default=None)
    parser.add_argument(
        "--timeline",
        type=Path,
        default=None,
        help="draw the last seed's FedBuff asynchronous timeline to this PNG",
    )
    parser.add_argument(
        "--capture",
        action="store_true",
        help="capture packets, so `flowerbed report build` on --out shows uplinks",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="keep each campaign's results in OUT/out-METHOD-SEED (default: discarded)",
    )
    parser.add_argument(
        "--straggler-mbit",
        type=float,
        default=STRAGGLER_UPLINK_MBIT,
        help="node1's uplink rate (Mbit/s)",
    )
    args = parser.parse_args()
    curves: list[Curve] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        networks = {"ethernet": (ETHERNET_MBIT, ETHERNET_MBIT)}
        with bench_cluster(folder, networks, clients=args.clients) as inventory:
            slow_uplink(inventory, STRAGGLER, args.straggler_mbit)
            for seed in args.seeds:
                args.seed_now = seed
                for method in ("fedavg", "fedbuff"):
                    curve = run_method(inventory, folder, method, args)
                    curves.append(curve)
                    if not curve.points:
                        print(f"{method:8} seed {seed}: {curve.status}: {curve.reason}")
                        continue
                    print(
                        f"{method:8} seed {seed}: {curve.status},"
                        f" {len(curve.points) - 1} rounds/versions,"
                        f" final acc {curve.points[-1][2]:.3f}"
                        f" at {curve.points[-1][1]:.1f} s",
                        flush=True,
                    )
                    for rnd, seconds, accuracy in curve.points:
                        print(f"    {rnd:3d} {seconds:7.1f} s  acc {accuracy:.3f}")
    print(
        f"\n{'target':>6} {'method':8} {'reached':>7} {'mean s':>7} {'sd s':>6}"
        "  per seed (s to target)"
    )
    for target in args.targets:
        for method in ("fedavg", "fedbuff"):
            times = [c.time_to(target) for c in curves if c.method == method]
            got = [t for t in times if t is not None]
            mean = statistics.mean(got) if got else float("nan")
            sd = statistics.stdev(got) if len(got) > 1 else 0.0
            shown = " ".join("-" if t is None else f"{t:.1f}" for t in times)
            print(
                f"{target:6.2f} {method:8} {len(got):>3}/{len(times):<3}"
                f" {mean:7.1f} {sd:6.1f}  {shown}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
