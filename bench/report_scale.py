"""How long `report build` takes on a million phase rows (the issue asks < 10 s).

Writes a synthetic results folder (analysis/synthetic.py: 3 networks x 10
repetitions x 261 rounds x 8 nodes = 1,002,240 phase rows, plus system samples
and metrics events) and times ``build_report`` on it, end to end (reading the
parquet, every table, figure, the HTML and the CSVs), ``--repeats`` times. It
prints wall-clock and CPU seconds (the report is single-threaded, so on a busy
machine CPU seconds are what an idle one's wall clock would show) and the load.

Run from the repository root::

    python -m bench.report_scale [--nodes 8] [--rounds 261] [--repetitions 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from analysis.report import build_report
from analysis.synthetic import SyntheticCampaign, write_synthetic_results

LIMIT_S = 10.0


def main() -> None:
    """Generate the folder, build the report, print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=261)
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="keep the folder here")
    args = parser.parse_args()
    spec = SyntheticCampaign(
        nodes=args.nodes, rounds=args.rounds, repetitions=args.repetitions
    )
    with tempfile.TemporaryDirectory(prefix="fb-report-scale-") as tmp:
        out = args.out or Path(tmp) / "results"
        start = time.perf_counter()
        write_synthetic_results(spec, out)
        rows = len(pd.read_parquet(out / "phases.parquet", columns=["round"]))
        print(
            f"synthetic results: {rows:,} phase rows, "
            f"{time.perf_counter() - start:.1f} s to write ({out})"
        )
        cpus = len(os.sched_getaffinity(0))
        times, cpu = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            build_report(out)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        load = os.getloadavg()[0]
        print(
            f"report build on {cpus} CPUs (load average {load:.1f}): wall median "
            f"{statistics.median(times):.2f} s (min {min(times):.2f}, max "
            f"{max(times):.2f}), CPU median {statistics.median(cpu):.2f} s over "
            f"{len(times)} builds; limit {LIMIT_S:.0f} s: "
            + ("PASS" if statistics.median(times) < LIMIT_S else "FAIL (wall)")
            + ("" if statistics.median(cpu) < LIMIT_S else ", FAIL (CPU)")
        )


if __name__ == "__main__":
    main()
