"""Does a traced link carry what its trace says? iperf3 in 1 s bins against the trace.

A throwaway cluster of one node on 10.226.x (removed afterwards whatever happens)
with one network per shipped trace, each replayed on the uplink
(inventory/examples/traces/):

- ``5g``: the ``5g`` profile (15 ms one-way delay, 3 ms jitter; through the delay
  line where there is no netem) with ``uplink_trace: 5g-uplink-fades.csv``;
- ``5gmm``: the same trace in Mahimahi's format (``5g-uplink-fades.mahimahi``);
- ``wifi``: the ``wifi`` profile with ``uplink_trace: wifi-contention.csv``.

The mean is compared twice: iperf3's goodput against the trace, and the same with
the headers counted (goodput / ``PAYLOAD_SHARE``: HTB's rate counts 1514-byte
frames, iperf3 1448 bytes of payload each).

On each, one iperf3 TCP upload of SECONDS (default 35) from the node to the
server; the receiver's 1 s intervals (``--get-server-output``) are set against
the trace's mean rate over the same second, at the node's phase, from the
replay's start (its ready file) and the moment iperf3 was launched. Printed per
network: Pearson correlation of the two series (target >= 0.9), the goodput's
mean against the trace's (target within 10 %), and the same with the best lag
within +-1 s, to show how much the alignment costs. The first second (TCP's
ramp-up) is left out. Needs root and iperf3; run it niced on a quiet machine,
under the e2e lock:

    sudo flock /tmp/e2e.lock nice -n 10 .venv/bin/python -m bench.traces [SECONDS]
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from inventory.loader import load_inventory
from inventory.models import Inventory
from inventory.traces import BandwidthTrace
from testbed.emulation import replay
from testbed.emulation.apply import cluster_down, cluster_up
from testbed.emulation.naming import node_namespace
from testbed.emulation.plan import plan_cluster
from testbed.emulation.sshd import forget_state

TRACES = Path(__file__).resolve().parents[1] / "inventory" / "examples" / "traces"
NETWORKS = {  # network: (base profile, trace file, third octet)
    "5g": ("5g", "5g-uplink-fades.csv", 3),
    "5gmm": ("5g", "5g-uplink-fades.mahimahi", 4),
    "wifi": ("wifi", "wifi-contention.csv", 2),
}
SKIP_S = 1
# HTB counts Ethernet frames (1514 bytes at MTU 1500); iperf3 counts TCP payload
# (1448 bytes a segment, with timestamps): goodput is at most this share of a rate.
PAYLOAD_SHARE = 1448 / 1514


def inventory_yaml(name: str) -> str:
    """One node with one traced network per shipped trace, on 10.226.x."""
    nets, ifaces = [], []
    for k, (net, (base, trace, third)) in enumerate(NETWORKS.items()):
        nets.append(
            f"      {net}:\n        subnet: 10.226.{third}.0/24\n"
            f"        server_address: 10.226.{third}.1\n"
            f"        profile: {{base: {base}, uplink_trace: {TRACES / trace}}}\n"
        )
        ifaces.append(f"            {net}: {{ifname: if{k}, ip: 10.226.{third}.11}}\n")
    return (
        f"all:\n  vars:\n    cluster_name: {name}\n"
        "    management: {subnet: 10.226.0.0/24, server_address: 10.226.0.1}\n"
        f"    networks:\n{''.join(nets)}"
        "  children:\n    server:\n      hosts:\n"
        "        server: {ansible_host: 10.226.0.1}\n"
        "    clients:\n      hosts:\n        node1:\n"
        f"          ansible_host: 10.226.0.11\n          interfaces:\n{''.join(ifaces)}"
    )


@contextmanager
def cluster(folder: Path) -> Iterator[Inventory]:
    """The bench's cluster, up until the block ends, then removed."""
    path = folder / "inventory.yaml"
    path.write_text(inventory_yaml("fbtb" + secrets.token_hex(2)))
    inventory = load_inventory(path)
    try:
        cluster_up(inventory, ssh=False)
        yield inventory
    finally:
        cluster_down(inventory)
        forget_state(inventory)


def upload_bins(namespace: str, server: str, seconds: int) -> tuple[float, list[float]]:
    """iperf3 TCP upload; (launch epoch, receiver Mbit/s per 1 s interval)."""
    port = "5399"
    srv = subprocess.Popen(
        ["iperf3", "-s", "-1", "-J", "-B", server, "-p", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        argv = ["ip", "netns", "exec", namespace, "iperf3", "-c", server, "-p", port]
        argv += ["-t", str(seconds), "-i", "1", "-J", "--get-server-output"]
        launched = time.time()
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 60
        )
        if done.returncode != 0:
            raise RuntimeError(f"iperf3 failed: {done.stdout[-400:]}{done.stderr}")
        server_json = json.loads(done.stdout)["server_output_json"]
        bins = [
            float(i["sum"]["bits_per_second"]) / 1e6
            for i in server_json["intervals"]
            if float(i["sum"]["seconds"]) > 0.5
        ]
        return launched, bins
    finally:
        srv.kill()
        srv.wait()


def pearson(xs: list[float], ys: list[float]) -> float:
    """Pearson's correlation of two equally long series."""
    return statistics.correlation(xs, ys)


@dataclass(frozen=True)
class Fit:
    """How one run's 1 s bins follow the trace."""

    network: str
    trace: BandwidthTrace
    bins: list[float]
    expected: list[float]
    lag_s: float

    @property
    def correlation(self) -> float:
        """Pearson correlation of goodput and trace rate per second."""
        return pearson(self.bins, self.expected)

    @property
    def mean_ratio(self) -> float:
        """Mean goodput over the trace's mean over the same seconds."""
        return statistics.fmean(self.bins) / statistics.fmean(self.expected)


def expected_bins(
    trace: BandwidthTrace, offset_s: float, count: int, first: int
) -> list[float]:
    """The trace's mean rate over each second ``first..count-1`` from ``offset_s``."""
    return [
        trace.mean_between(offset_s + i, offset_s + i + 1) for i in range(first, count)
    ]


def fit(
    network: str, link: replay.ReplayLink, started: float, launched: float,
    bins: list[float], lag_s: float = 0.0,
) -> Fit:  # fmt: skip
    """Set ``bins`` against the trace, ``lag_s`` after the launch."""
    offset = launched - started + link.phase_s + lag_s
    expected = expected_bins(link.trace, offset, len(bins), SKIP_S)
    return Fit(network, link.trace, bins[SKIP_S:], expected, lag_s)


def main(argv: list[str]) -> int:
    """Run the upload on every traced network; print the figures."""
    seconds = int(argv[0]) if argv else 35
    if os.geteuid() != 0:
        print("needs root (namespaces, tc, iptables)", file=sys.stderr)
        return 2
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as folder, cluster(Path(folder)) as inv:
        plan = plan_cluster(inv)
        links = {link.network: link for link in replay.plan_replay(inv, plan).links}
        started = replay.started_at(inv.name)
        assert started is not None, "the replay did not start"
        namespace = node_namespace(inv, "node1")
        print(f"iperf3 TCP uploads of {seconds} s, 1 s bins, first {SKIP_S} s left out")
        for network in NETWORKS:
            server = str(inv.network(network).server_address)
            launched, bins = upload_bins(namespace, server, seconds)
            link = links[network]
            at_launch = fit(network, link, started, launched, bins)
            lags = [i / 20 for i in range(-20, 21)]
            best = max(
                (fit(network, link, started, launched, bins, lag) for lag in lags),
                key=lambda f: f.correlation,
            )
            trace = link.trace
            print(
                f"{network:5s} {trace.format:8s} {Path(trace.path).name}: "
                f"{len(at_launch.bins)} bins, trace mean over them "
                f"{statistics.fmean(at_launch.expected):.2f} Mbit/s, goodput "
                f"{statistics.fmean(at_launch.bins):.2f} Mbit/s "
                f"(ratio {at_launch.mean_ratio:.3f}; on the wire, headers counted, "
                f"{at_launch.mean_ratio / PAYLOAD_SHARE:.3f}), correlation "
                f"{at_launch.correlation:.3f}; best lag {best.lag_s:+.2f} s: "
                f"correlation {best.correlation:.3f}"
            )
    print(f"total {time.monotonic() - began:.0f} s (cluster up and down included)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
