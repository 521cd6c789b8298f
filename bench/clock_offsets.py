"""Offset recovery: inject clock offsets into emulated nodes, compare the estimates.

Needs root and a running emulated cluster (default: inventory/examples/emulated.yaml,
`flowerbed cluster up` first). Prints one row per (node, path, injected offset):
the estimate, its error and whether the error lies within the reported uncertainty.

    sudo .venv/bin/python -m bench.clock_offsets [INVENTORY]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from inventory.loader import load_inventory
from testbed.campaign.probes import (
    CLOCK_PORT,
    PROBE_SAMPLES,
    clock_paths,
    start_clock_responders,
)
from testbed.campaign.sites import netns_site, probe_clock
from testbed.campaign.topology import BIN_DIR
from testbed.transport.processes import stop_all

OFFSETS_MS = (-500, -250, -100, 0, 100, 250, 300, 500)


def main() -> int:
    """Run the sweep and print the table."""
    path = Path(
        sys.argv[1] if len(sys.argv) > 1 else "inventory/examples/emulated.yaml"
    )
    inventory = load_inventory(path)
    network = inventory.networks[-1]
    paths = clock_paths(inventory, network)
    worst_ratio, rows = 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        responders = start_clock_responders(paths, Path(tmp))
        try:
            print(
                f"{'node':10} {'path':11} {'injected ms':>11} {'estimate ms':>12} "
                f"{'error us':>9} {'uncert. us':>10} within"
            )
            for host in inventory.clients:
                site = netns_site(inventory, host, BIN_DIR)
                for clock_path in paths:
                    for offset_ms in OFFSETS_MS:
                        result = probe_clock(
                            site,
                            clock_path.server_address,
                            CLOCK_PORT,
                            PROBE_SAMPLES,
                            offset_ms * 10**6,
                        )
                        error_ns = result["offset_ns"] - offset_ms * 10**6
                        within = abs(error_ns) <= result["uncertainty_ns"]
                        worst_ratio = max(
                            worst_ratio,
                            abs(error_ns) / max(1, result["uncertainty_ns"]),
                        )
                        rows += 1
                        print(
                            f"{host.name:10} {clock_path.name:11} {offset_ms:>11} "
                            f"{result['offset_ns'] / 1e6:>12.3f} "
                            f"{error_ns / 1e3:>9.1f} "
                            f"{result['uncertainty_ns'] / 1e3:>10.1f} {within}"
                        )
        finally:
            stop_all(responders)
    print(f"{rows} probes; worst |error| / uncertainty = {worst_ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
