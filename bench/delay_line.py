"""The userspace delay line (no sch_netem): ping RTT, iperf3 goodput and CPU cost.

Two throwaway clusters, each removed afterwards whatever happens:

1. the default emulated inventory (``inventory/examples/emulated.yaml``, its
   profiles unchanged) under its own name and on 10.253.x: plain ``ping`` from a
   node to the server over ``5g`` and ``wifi`` (``ethernet`` for reference, rate
   only) against the profile's RTT (twice the one-way delay), then iperf3 TCP
   goodput up and down against the shaped rate, with the delay line's CPU time
   over each transfer (utime + stime from ``/proc/<pid>/stat``) per Mbit/s;
2. a ceiling: one network per rate (delay 2.5 ms, no jitter) on 10.254.x with
   ``$DELAY_LINE_MAX_MBIT`` lifted, iperf3 TCP goodput and CPU through the delay
   line beside the same rates with rate only, and UDP of 1400-byte datagrams (the
   per-packet worst case) at 100-400 Mbit/s: loss and CPU per packet. It is what
   ``DELAY_LINE_MAX_MBIT`` is set from (docs/emulation.md).

Figures, not a timed test; run it on an otherwise quiet machine, niced. Needs root,
iperf3 and iputils-ping.

    sudo nice -n 10 .venv/bin/python -m bench.delay_line [SECONDS] [CEILING_MBIT,...]
"""

from __future__ import annotations

import itertools
import json
import os
import re
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
from testbed.emulation import delay
from testbed.emulation.apply import cluster_down, cluster_up
from testbed.emulation.naming import node_namespace
from testbed.emulation.plan import plan_cluster
from testbed.emulation.sshd import forget_state

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "inventory" / "examples" / "emulated.yaml"
NAME, BASE = "fbdlbench", 253
CEILING_NAME, CEILING_BASE = "fbdlceil", 254
CEILING_DELAY_MS = 2.5
TICKS = os.sysconf("SC_CLK_TCK")
PING_COUNT, PING_INTERVAL_S = 50, 0.05
UDP_BYTES = 1400
UDP_OFFERED_MBIT = (100.0, 200.0, 400.0)


def default_inventory_yaml() -> str:
    """The example inventory, renamed and moved to 10.253.x (profiles unchanged)."""
    text = EXAMPLE.read_text()
    text = text.replace("cluster_name: emu", f"cluster_name: {NAME}")
    text = text.replace("/emulated/emu/", f"/emulated/{NAME}/")
    return text.replace("10.77.", f"10.{BASE}.")


def ceiling_inventory_yaml(rates: list[float]) -> str:
    """One client, one network per rate (same both ways, 2.5 ms each way)."""
    b = CEILING_BASE
    nets = "".join(
        f"      r{int(r)}:\n        subnet: 10.{b}.{k}.0/24\n"
        f"        server_address: 10.{b}.{k}.1\n"
        f"        profile: {{downlink_mbit: {r}, uplink_mbit: {r}, "
        f'delay_ms: {CEILING_DELAY_MS}, source: "bench"}}\n'
        for k, r in enumerate(rates, start=1)
    )
    ifaces = "".join(
        f"            r{int(r)}: {{ifname: if{k}, ip: 10.{b}.{k}.11}}\n"
        for k, r in enumerate(rates, start=1)
    )
    return (
        f"all:\n  vars:\n    cluster_name: {CEILING_NAME}\n"
        f"    management: {{subnet: 10.{b}.0.0/24, server_address: 10.{b}.0.1}}\n"
        f"    networks:\n{nets}"
        "  children:\n    server:\n      hosts:\n"
        f"        server: {{ansible_host: 10.{b}.0.1}}\n"
        "    clients:\n      hosts:\n"
        f"        node1:\n          ansible_host: 10.{b}.0.11\n"
        f"          interfaces:\n{ifaces}"
    )


@contextmanager
def cluster(folder: Path, text: str, max_mbit: str | None) -> Iterator[Inventory]:
    """Bring up the inventory ``text`` (with ``$DELAY_LINE_MAX_MBIT``); always down."""
    path = folder / "inventory.yaml"
    path.write_text(text)
    inventory = load_inventory(path)
    before = os.environ.get(delay.MAX_MBIT_ENV)
    if max_mbit is not None:
        os.environ[delay.MAX_MBIT_ENV] = max_mbit
    try:
        cluster_up(inventory, ssh=False)
        yield inventory
    finally:
        cluster_down(inventory)
        forget_state(inventory)
        if before is None:
            os.environ.pop(delay.MAX_MBIT_ENV, None)
        else:
            os.environ[delay.MAX_MBIT_ENV] = before


def ping_avg_ms(namespace: str, address: str) -> tuple[float, float]:
    """Plain ``ping`` (kernel timestamps) from ``namespace``: avg and mdev, ms."""
    argv = ["ip", "netns", "exec", namespace, "ping", "-q", "-n"]
    argv += ["-c", str(PING_COUNT), "-i", str(PING_INTERVAL_S), address]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    found = re.search(r"= [\d.]+/([\d.]+)/[\d.]+/([\d.]+) ms", out)
    if found is None:
        raise RuntimeError(f"ping {address} from {namespace} gave:\n{out}")
    return float(found.group(1)), float(found.group(2))


def cpu_s(pid: int | None) -> float:
    """utime + stime of ``pid`` in seconds (0 without a process)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass(frozen=True)
class Transfer:
    """One iperf3 TCP run: goodput, wall time and the delay line's CPU over it."""

    mbit: float
    wall_s: float
    cpu_s: float

    @property
    def cpu_pct(self) -> float:
        """The delay line's share of one core over the run, percent."""
        return 100.0 * self.cpu_s / self.wall_s

    @property
    def pct_per_mbit(self) -> float:
        """Percent of one core per Mbit/s carried."""
        return self.cpu_pct / self.mbit if self.mbit else float("nan")


_PORTS = itertools.count(5301)


def iperf(
    namespace: str, server: str, reverse: bool, seconds: int, pid: int | None
) -> Transfer:
    """iperf3 TCP between ``namespace`` and ``server`` (-R: downlink)."""
    port = str(next(_PORTS))
    srv = subprocess.Popen(
        ["iperf3", "-s", "-1", "-B", server, "-p", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        argv = ["ip", "netns", "exec", namespace, "iperf3", "-c", server]
        argv += ["-p", port, "-t", str(seconds), "-O", "1", "-J"]
        argv += ["-R"] if reverse else []
        cpu0, wall0 = cpu_s(pid), time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        cpu1, wall1 = cpu_s(pid), time.monotonic()
        if result.returncode != 0:
            raise RuntimeError(f"iperf3 failed: {result.stdout[-400:]}{result.stderr}")
        bits = json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"]
        return Transfer(float(bits) / 1e6, wall1 - wall0, cpu1 - cpu0)
    finally:
        srv.kill()
        srv.wait()


@dataclass(frozen=True)
class Datagrams:
    """One iperf3 UDP run: received rate, loss, datagrams and the delay line's CPU."""

    mbit: float
    lost_pct: float
    packets: int
    cpu_s: float
    wall_s: float

    @property
    def us_per_packet(self) -> float:
        """The delay line's CPU time per datagram sent, microseconds."""
        return 1e6 * self.cpu_s / self.packets if self.packets else float("nan")


def iperf_udp(
    namespace: str, server: str, offered_mbit: float, seconds: int, pid: int | None
) -> Datagrams:
    """iperf3 UDP uplink of 1400-byte datagrams at ``offered_mbit``."""
    port = str(next(_PORTS))
    srv = subprocess.Popen(
        ["iperf3", "-s", "-1", "-B", server, "-p", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        argv = ["ip", "netns", "exec", namespace, "iperf3", "-c", server, "-u"]
        argv += ["-p", port, "-t", str(seconds), "-l", str(UDP_BYTES), "-J"]
        argv += ["-b", f"{offered_mbit:g}M"]
        cpu0, wall0 = cpu_s(pid), time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        cpu1, wall1 = cpu_s(pid), time.monotonic()
        if result.returncode != 0:
            raise RuntimeError(f"iperf3 failed: {result.stdout[-400:]}{result.stderr}")
        end = json.loads(result.stdout)["end"]["sum"]
        return Datagrams(
            float(end["bits_per_second"]) / 1e6,
            float(end["lost_percent"]),
            int(end["packets"]),
            cpu1 - cpu0,
            wall1 - wall0,
        )
    finally:
        srv.kill()
        srv.wait()


def default_cluster(folder: Path, seconds: int) -> list[float]:
    """Ping and iperf3 on the default inventory's profiles; return %/Mbit figures."""
    per_mbit: list[float] = []
    with cluster(folder, default_inventory_yaml(), None) as inventory:
        pid = delay.running_pid(inventory.name)
        print(f"delay line: pid {pid}, {delay.scheduling(inventory.name)}")
        line = delay.plan_delay_line(
            inventory, plan_cluster(inventory), delay.max_mbit()
        )
        rate_only = {net for net, _ in line.rate_only}
        ns = node_namespace(inventory, "client1")
        print(
            f"\nplain ping, {PING_COUNT} x {PING_INTERVAL_S} s, client1 -> server\n"
            f"{'network':9} {'profile ms':>10} {'avg ms':>7} {'mdev':>5} "
            f"{'tolerance':>9} within"
        )
        for net in ("5g", "wifi", "ethernet"):
            network = inventory.network(net)
            want = 2 * network.profile.delay_ms
            tolerance = max(1.0, 0.1 * want)
            avg, mdev = ping_avg_ms(ns, str(network.server_address))
            verdict = str(abs(avg - want) <= tolerance)
            if net in rate_only:
                verdict = "rate only (no delay)"
            print(
                f"{net:9} {want:10.2f} {avg:7.2f} {mdev:5.2f} {tolerance:9.2f} "
                f"{verdict}"
            )
        print(
            f"\niperf3 TCP, {seconds} s (+1 s omitted), client1 <-> server\n"
            f"{'network':9} {'dir':8} {'rate':>5} {'goodput':>8} {'ratio':>6} "
            f"{'within':>6} {'cpu %':>6} {'%/Mbit':>7}"
        )
        for net in ("5g", "wifi"):
            network = inventory.network(net)
            for direction, rate in (
                ("uplink", network.profile.uplink_mbit),
                ("downlink", network.profile.downlink_mbit),
            ):
                t = iperf(
                    ns, str(network.server_address), direction == "downlink",
                    seconds, pid,
                )  # fmt: skip
                per_mbit.append(t.pct_per_mbit)
                print(
                    f"{net:9} {direction:8} {rate:5g} {t.mbit:8.1f} "
                    f"{t.mbit / rate:6.3f} {str(t.mbit >= 0.9 * rate):>6} "
                    f"{t.cpu_pct:6.1f} {t.pct_per_mbit:7.3f}"
                )
    return per_mbit


def ceiling(folder: Path, seconds: int, rates: list[float]) -> None:
    """Goodput and CPU through the delay line at each rate, beside rate only.

    TCP over veth goes in GSO segments of up to 64 KB; UDP datagrams of 1400 bytes
    are the per-packet worst case (what the delay line's CPU cost follows).
    """
    text = ceiling_inventory_yaml(rates)
    tcp: dict[tuple[str, float, str], Transfer] = {}
    udp: dict[tuple[str, float], Datagrams] = {}
    for mode, limit in (("rate-only", "0"), ("delay-line", "100000")):
        with cluster(folder, text, limit) as inventory:
            pid = delay.running_pid(inventory.name)
            assert (pid is None) == (mode == "rate-only"), (mode, pid)
            ns = node_namespace(inventory, "node1")
            for r in rates:
                server = str(inventory.network(f"r{int(r)}").server_address)
                for direction in ("uplink", "downlink"):
                    tcp[(mode, r, direction)] = iperf(
                        ns, server, direction == "downlink", seconds, pid
                    )
            fastest = str(inventory.network(f"r{int(max(rates))}").server_address)
            for offered in UDP_OFFERED_MBIT:
                udp[(mode, offered)] = iperf_udp(ns, fastest, offered, seconds, pid)
    print(
        f"\nceiling, TCP: {CEILING_DELAY_MS} ms each way, no jitter, iperf3 {seconds} s"
        f"\n{'rate':>5} {'dir':8} {'rate only':>9} {'delay line':>10} {'ratio':>6} "
        f"{'cpu %':>6} {'%/Mbit':>7}"
    )
    for r in rates:
        for direction in ("uplink", "downlink"):
            bare = tcp[("rate-only", r, direction)]
            line = tcp[("delay-line", r, direction)]
            print(
                f"{r:5g} {direction:8} {bare.mbit:9.1f} {line.mbit:10.1f} "
                f"{line.mbit / bare.mbit:6.3f} {line.cpu_pct:6.1f} "
                f"{line.pct_per_mbit:7.3f}"
            )
    print(
        f"\nceiling, UDP: {UDP_BYTES}-byte datagrams uplink on the {max(rates):g} "
        f"Mbit/s network, {seconds} s\n{'offered':>7} {'rate only':>9} {'lost %':>6} "
        f"{'delay line':>10} {'lost %':>6} {'cpu %':>6} {'us/pkt':>6}"
    )
    for offered in UDP_OFFERED_MBIT:
        plain, held = udp[("rate-only", offered)], udp[("delay-line", offered)]
        print(
            f"{offered:7g} {plain.mbit:9.1f} {plain.lost_pct:6.2f} {held.mbit:10.1f} "
            f"{held.lost_pct:6.2f} {100 * held.cpu_s / held.wall_s:6.1f} "
            f"{held.us_per_packet:6.1f}"
        )


def main() -> int:
    """Run both parts and print their figures."""
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rates = (
        [float(r) for r in sys.argv[2].split(",")]
        if len(sys.argv) > 2
        else [150.0, 400.0, 940.0]
    )
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), f"nproc {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        per_mbit = default_cluster(Path(tmp), seconds)
        ceiling(Path(tmp), seconds, rates)
    if per_mbit:
        print(
            f"\ndelay line CPU on the default profiles: "
            f"{min(per_mbit):.3f}-{max(per_mbit):.3f} % of a core per Mbit/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
