"""Instrumentation overhead: Flower's own run time with flowerbed on and off.

Three modes on one throwaway emulated cluster (3 nodes, one Ethernet-class
network), interleaved so that drift on the machine hits all modes alike:
``bare`` (the app exactly as written, nothing of flowerbed inside or beside it),
``stamps`` (injected client mod and server timers, clock probes, the system
sampler at 2 Hz, no capture) and ``capture`` (all of that plus tcpdump). The figure
compared is Flower's ``elapsed`` for the run (``flwr ls``), divided by the rounds:
it is measured the same way in every mode. Needs root.

    sudo .venv/bin/python -m bench.overhead [REPETITIONS] [ROUNDS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from bench._cluster import bench_cluster, campaign_yaml
from testbed.campaign.model import load_campaign
from testbed.campaign.runner import run_campaign

MODES = {
    "bare": {"instrument": "false"},
    "stamps": {"capture": "false", "system_sampling_hz": 2},
    "capture": {"capture": "true", "system_sampling_hz": 2},
}


def main() -> int:
    """Run the interleaved repetitions and print per-mode figures and ratios."""
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    per_round: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with bench_cluster(
            folder, {"ethernet": (940.0, 940.0)}, clients=3
        ) as inventory:
            for rep in range(repetitions):
                order = list(MODES) if rep % 2 == 0 else list(reversed(MODES))
                for mode in order:
                    campaign = load_campaign(
                        campaign_yaml(folder, ["ethernet"], rounds, **MODES[mode])
                    )
                    out = folder / f"{mode}-{rep}"
                    (outcome,) = run_campaign(
                        campaign, inventory, out, progress=lambda _: None
                    )
                    if outcome.status != "ok" or outcome.flower_elapsed_s is None:
                        print(
                            f"{mode} repetition {rep + 1}: {outcome.status} "
                            f"{outcome.reason.splitlines()[:1]}"
                        )
                        continue
                    per_round[mode].append(outcome.flower_elapsed_s / rounds)
                    print(
                        f"{mode:8} repetition {rep + 1}: "
                        f"{outcome.flower_elapsed_s / rounds:.3f} s per round"
                    )
    print(f"\n{'mode':8} {'n':>2} {'mean s/round':>12} {'stdev':>7} {'vs bare':>8}")
    bare = statistics.mean(per_round["bare"]) if per_round["bare"] else float("nan")
    for mode, values in per_round.items():
        if not values:
            continue
        mean = statistics.mean(values)
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(
            f"{mode:8} {len(values):>2} {mean:>12.3f} {spread:>7.3f} "
            f"{mean / bare:>8.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
