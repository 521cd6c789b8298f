"""Fidelity: measured downlink/uplink transfer times vs bytes-on-wire / shaped rate.

Builds a throwaway emulated cluster with one network per rate (downlink = uplink =
rate), runs two rounds of the default app over each, and prints, per rate and
direction, the median measured transfer time of the model messages against the
physical limit (TCP payload bytes x 8 / rate) and their ratio. Needs root.

    sudo .venv/bin/python -m bench.fidelity [RATE_MBIT ...]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd  # noqa: E402 - after the project imports for clarity

from bench._cluster import bench_cluster, campaign_yaml
from testbed.campaign.model import load_campaign
from testbed.campaign.runner import run_campaign


def main() -> int:
    """Run the sweep and print the table."""
    rates = [float(r) for r in sys.argv[1:]] or [2.0, 5.0, 10.0, 20.0]
    networks = {f"r{int(r)}": (r, r) for r in rates}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with bench_cluster(folder, networks) as inventory:
            campaign = load_campaign(
                campaign_yaml(
                    folder,
                    list(networks),
                    rounds=2,
                    system_sampling_hz=0,
                    clock_probes="false",
                )
            )
            run_campaign(campaign, inventory, folder / "out", progress=lambda _: None)
        df = pd.read_parquet(folder / "out" / "phases.parquet")
    model = df[df.phase.isin(["downlink", "uplink"]) & (df["bytes"] > 1_000_000)]
    print(
        f"{'rate Mbit/s':>11} {'direction':9} {'n':>3} {'bytes':>9} {'measured s':>10} "
        f"{'limit s':>8} {'ratio':>6} {'source':8}"
    )
    for rate in rates:
        for phase in ("downlink", "uplink"):
            cell = model[(model.network == f"r{int(rate)}") & (model.phase == phase)]
            if cell.empty:
                print(f"{rate:>11g} {phase:9}   0 (no model transfer measured)")
                continue
            limit = cell["bytes"].astype(float) * 8 / (rate * 1e6)
            ratio = (cell["duration_s"] / limit).median()
            print(
                f"{rate:>11g} {phase:9} {len(cell):>3} "
                f"{int(cell['bytes'].median()):>9} "
                f"{cell['duration_s'].median():>10.3f} {limit.median():>8.3f} "
                f"{ratio:>6.3f} {cell['source'].iloc[0]:8}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
