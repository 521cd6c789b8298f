"""Inventories the emulation tests build: two clients on 10.<second>.x.0/24 networks."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import replace
from pathlib import Path

from inventory.models import Host, Interface, Inventory, LinkProfile, Network
from inventory.traces import parse_csv

IP = ipaddress.IPv4Address

# 10.250.x.0/24 are used only by these tests; the cluster name is random per test.
ETH = LinkProfile(downlink_mbit=100, uplink_mbit=100)
CELL = LinkProfile(downlink_mbit=24, uplink_mbit=8, delay_ms=15, jitter_ms=2)
LOSSY = LinkProfile(downlink_mbit=50, uplink_mbit=50, loss_pct=25)
# A 2-s loop of 4 and 12 Mbit/s (mean 8): the CELL uplink, traced.
SHORT_TRACE = parse_csv("t_s,mbit_s\n0,4\n0.5,12\n1.0,4\n1.5,12\n", "short.csv")
TRACED_CELL = replace(CELL, uplink_trace=SHORT_TRACE)


def network(name: str, third: int, profile: LinkProfile, second: int = 250) -> Network:
    subnet = ipaddress.IPv4Network(f"10.{second}.{third}.0/24")
    return Network(name, subnet, subnet.network_address + 1, profile)


def make_inventory(
    name: str | None = None,
    cell: LinkProfile = CELL,
    management: bool = True,
    second: int = 250,
) -> Inventory:
    """Two clients: pi1 on ethernet and cell, pi2 on ethernet only, in 10.<second>/16.

    Clusters alive at the same time need distinct ``second`` octets (``up`` refuses
    subnets the host already routes).
    """
    networks = (
        network("ethernet", 1, ETH, second),
        network("cell", 2, cell, second),
    )
    mgmt = network("mgmt", 0, ETH, second) if management else None
    pi1 = Host(
        "pi1",
        f"10.{second}.0.11",
        interfaces=(
            Interface("ethernet", "eth0", IP(f"10.{second}.1.11")),
            Interface("cell", "wwan0", IP(f"10.{second}.2.11")),
        ),
    )
    pi2 = Host(
        "pi2",
        f"10.{second}.0.12",
        interfaces=(Interface("ethernet", "eth0", IP(f"10.{second}.1.12")),),
    )
    return Inventory(
        path=Path("/tmp/test-inventory.yaml"),
        name=name or "fbt" + secrets.token_hex(2),
        server=Host("server", f"10.{second}.0.1"),
        clients=(pi1, pi2),
        networks=networks,
        management=mgmt,
    )
