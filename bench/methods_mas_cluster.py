"""Issue 20, method 1 on the emulated cluster: MAS's cost by flowerbed's measurements.

Brings up a throwaway emulated cluster (2 nodes, one 100 Mbit/s link, subnets
10.221.x; run under ``flock /tmp/e2e.lock``, as root) and runs the MAS
strategy three ways, ``merged``, ``independent`` and ``mas`` (merge for
``--merge-rounds``, then split in ``--groups``), each for ``--rounds`` rounds
with packet capture. From each run's events it sums:

* wire bytes: the TCP payload bytes the capture saw, down and up (``transfer``);
* counted bytes: Flower's ``count_bytes`` of the train instructions and replies
  (``phase`` stamps' ``bytes_in`` + ``bytes_out``);
* training phase: the nodes' training phase time (``phase`` = training), s;
  it includes each fresh ClientApp process's imports, which dominate here;
* client compute: the CPU seconds of the local work itself, as the nodes report
  it (train metric ``compute-s``; the server log prints its per-round mean over
  the nodes, summed here over rounds and multiplied by the node count);

and the server's final test loss of the class task.

    flock /tmp/e2e.lock .venv/bin/python -m bench.methods_mas_cluster [--rounds 8]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench._cluster import bench_cluster
from instrumentation.events import read_events
from testbed.campaign.model import load_campaign
from testbed.campaign.runner import run_campaign

MODES = ("merged", "independent", "mas")


def _campaign(folder: Path, mode: str, args: argparse.Namespace) -> Path:
    path = folder / f"mas-{mode}.yaml"
    path.write_text(
        f"""name: bench-mas-{mode}
networks: [ethernet]
strategy:
  name: mas
  parameters: {{mode: {mode}, merge_rounds: {args.merge_rounds},
    groups: {args.groups}, fraction_evaluate: 0.0}}
rounds: {args.rounds}
capture: true
clock_probes: false
system_sampling_hz: 0
run_deadline_s: 900
round_timeout_s: 300
workload: {{model-width: 1.0, samples-per-node: {args.samples}, local-epochs: 1,
  batch-size: 32, learning-rate: 0.05}}
"""
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three modes on one cluster and print their measured costs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--merge-rounds", type=int, default=2)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(
        f"2 nodes, ethernet 100 Mbit/s, rounds {args.rounds}, merge rounds"
        f" {args.merge_rounds}, groups {args.groups}, samples/node {args.samples}"
    )
    print(
        f"{'mode':<12} {'wire MB':>8} {'counted MB':>10} {'train s':>8}"
        f" {'cpu s':>6} {'class loss':>10}  status"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with bench_cluster(
            folder, {"ethernet": (100.0, 100.0)}, clients=2, base=221
        ) as inventory:
            for mode in MODES:
                campaign = load_campaign(_campaign(folder, mode, args))
                out = folder / f"out-{mode}"
                (outcome,) = run_campaign(
                    campaign, inventory, out, progress=lambda _: None, features={}
                )
                events = read_events(out / "runs" / "ethernet-r1" / "events.jsonl")
                wire = sum(
                    int(e.get("bytes") or 0) for e in events if e["event"] == "transfer"
                )
                train = [
                    e
                    for e in events
                    if e["event"] == "phase"
                    and e.get("phase") == "training"
                    and e.get("node") != "server"
                ]
                counted = sum(
                    int(e.get("bytes_in") or 0) + int(e.get("bytes_out") or 0)
                    for e in train
                )
                seconds = sum((e["end_ns"] - e["start_ns"]) / 1e9 for e in train)
                server = [
                    e
                    for e in events
                    if e["event"] == "metrics" and e.get("scope") == "server"
                ]
                log = (out / "runs" / "ethernet-r1" / "serverapp.log").read_text()
                cpu = 2 * sum(
                    float(v) for v in re.findall(r"'compute-s': ([\d.e-]+)", log)
                )
                loss = max(server, key=lambda e: e["round"])["values"]["loss"]
                print(
                    f"{mode:<12} {wire / 1e6:8.2f} {counted / 1e6:10.2f}"
                    f" {seconds:8.2f} {cpu:6.2f} {loss:10.4f}  {outcome.status}",
                    flush=True,
                )
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
