"""Two network namespaces joined by a veth pair, made and removed by the tests."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class VethPair:
    """``ns_a`` (``if_a``, ``ip_a``) wired to ``ns_b`` (``if_b``, ``ip_b``)."""

    ns_a: str
    ns_b: str
    if_a: str
    if_b: str
    ip_a: str = "10.78.0.1"
    ip_b: str = "10.78.0.2"


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=20)


@contextmanager
def veth_pair(prefix: str) -> Iterator[VethPair]:
    """Build the pair (names ``<prefix><hex>a|b``); skip without root or iproute2."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("needs ip (apt install iproute2)")
    suffix = secrets.token_hex(3)
    pair = VethPair(
        ns_a=f"{prefix}{suffix}a",
        ns_b=f"{prefix}{suffix}b",
        if_a=f"{prefix}{suffix}a",
        if_b=f"{prefix}{suffix}b",
    )
    try:
        _run("ip", "netns", "add", pair.ns_a)
        _run("ip", "netns", "add", pair.ns_b)
        _run(
            "ip", "link", "add", pair.if_a, "netns", pair.ns_a,
            "type", "veth", "peer", "name", pair.if_b, "netns", pair.ns_b,
        )  # fmt: skip
        for ns, ifname, ip in ((pair.ns_a, pair.if_a, pair.ip_a),
                               (pair.ns_b, pair.if_b, pair.ip_b)):  # fmt: skip
            # No IPv6: router solicitations would add packets nobody sent.
            _run("ip", "netns", "exec", ns, "sysctl", "-qw",
                 "net.ipv6.conf.all.disable_ipv6=1")  # fmt: skip
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname)
            _run("ip", "-n", ns, "link", "set", ifname, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        yield pair
    finally:
        # Deleting a namespace deletes the veth end inside it, and so the pair.
        for ns in (pair.ns_a, pair.ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
