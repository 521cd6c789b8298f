"""Reading the machine back: namespaces, links, addresses and qdiscs as installed."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from testbed.commands import netcmd, shaping
from testbed.transport.executor import Executor


def ip_json(text: str) -> list[dict[str, Any]]:
    """``ip -json`` output as a list of objects (empty output: none)."""
    text = text.strip()
    return list(json.loads(text)) if text else []


def read_namespaces(host: Executor) -> set[str]:
    """The network namespaces on the host."""
    result = host.run(netcmd.netns_list())
    return {str(entry["name"]) for entry in ip_json(result.stdout)}


def read_links(executor: Executor) -> dict[str, dict[str, Any]]:
    """Links in the executor's namespace, by name."""
    result = executor.run(netcmd.link_show())
    return {str(link["ifname"]): link for link in ip_json(result.stdout)}


def read_addresses(executor: Executor, dev: str) -> list[ipaddress.IPv4Interface]:
    """The IPv4 addresses on ``dev``."""
    result = executor.run(netcmd.addr_show(dev))
    found = []
    for link in ip_json(result.stdout):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                found.append(
                    ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
                )
    return found


def veths_paired(
    host_link: Mapping[str, Any] | None, node_link: Mapping[str, Any] | None
) -> bool:
    """Whether the two veth ends point at each other (one pair, not two)."""
    if host_link is None or node_link is None:
        return False
    return bool(
        host_link.get("link_index") == node_link.get("ifindex")
        and node_link.get("link_index") == host_link.get("ifindex")
    )


def read_qdiscs(executor: Executor, dev: str) -> list[shaping.InstalledQdisc]:
    """The qdiscs installed on ``dev``."""
    return shaping.parse_qdisc_show(executor.run(shaping.qdisc_show(dev)).stdout)
