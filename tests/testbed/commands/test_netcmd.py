"""Table tests for the ip/sysctl argv builders."""

from __future__ import annotations

import ipaddress

import pytest

from testbed.commands import netcmd

IFACE = ipaddress.IPv4Interface("10.0.2.11/24")

CASES = [
    (netcmd.netns_add("fb-emu-pi1"), ["ip", "netns", "add", "fb-emu-pi1"]),
    (netcmd.netns_del("fb-emu-pi1"), ["ip", "netns", "del", "fb-emu-pi1"]),
    (netcmd.netns_list(), ["ip", "-j", "netns", "list"]),
    (netcmd.netns_pids("fb-emu-pi1"), ["ip", "netns", "pids", "fb-emu-pi1"]),
    (netcmd.link_show(), ["ip", "-j", "link", "show"]),
    (netcmd.link_show("fbb1"), ["ip", "-j", "link", "show", "dev", "fbb1"]),
    (netcmd.addr_show("eth0"), ["ip", "-j", "-4", "addr", "show", "dev", "eth0"]),
    (netcmd.route_show(), ["ip", "-j", "-4", "route", "show"]),
    (
        netcmd.bridge_add("fbb0123456789"),
        ["ip", "link", "add", "name", "fbb0123456789", "type", "bridge",
         "forward_delay", "0", "stp_state", "0"],
    ),
    (
        netcmd.bridge_add("fbb0", mac="02:fb:00:00:00:01"),
        ["ip", "link", "add", "name", "fbb0", "address", "02:fb:00:00:00:01",
         "type", "bridge", "forward_delay", "0", "stp_state", "0"],
    ),
    (
        netcmd.veth_add("fbv0123456789", "wlan0", "fb-emu-pi1"),
        ["ip", "link", "add", "name", "fbv0123456789", "type", "veth", "peer", "name",
         "wlan0", "netns", "fb-emu-pi1"],
    ),
    (
        netcmd.veth_add("fbva", "fbvb"),
        ["ip", "link", "add", "name", "fbva", "type", "veth", "peer", "name", "fbvb"],
    ),
    (
        netcmd.link_move("fbvb", "fb-emu-pi1", "eth0"),
        ["ip", "link", "set", "dev", "fbvb", "netns", "fb-emu-pi1", "name", "eth0"],
    ),
    (
        netcmd.link_move("fbvb", "fb-emu-pi1"),
        ["ip", "link", "set", "dev", "fbvb", "netns", "fb-emu-pi1"],
    ),
    (
        netcmd.link_set_master("fbv1", "fbb1"),
        ["ip", "link", "set", "dev", "fbv1", "master", "fbb1"],
    ),
    (netcmd.link_up("eth0"), ["ip", "link", "set", "dev", "eth0", "up"]),
    (netcmd.lo_up(), ["ip", "link", "set", "dev", "lo", "up"]),
    (netcmd.link_del("fbv1"), ["ip", "link", "del", "dev", "fbv1"]),
    (
        netcmd.link_alias("fbv1", "flowerbed emu pi1 wifi"),
        ["ip", "link", "set", "dev", "fbv1", "alias", "flowerbed emu pi1 wifi"],
    ),
    (
        netcmd.addr_replace("wlan0", IFACE),
        ["ip", "addr", "replace", "10.0.2.11/24", "dev", "wlan0"],
    ),
    (netcmd.addr_add("wlan0", IFACE),
     ["ip", "addr", "add", "10.0.2.11/24", "dev", "wlan0"]),
    (netcmd.addr_del("wlan0", IFACE),
     ["ip", "addr", "del", "10.0.2.11/24", "dev", "wlan0"]),
    (netcmd.sysctl_set("net.x.y", 1), ["sysctl", "-q", "-w", "net.x.y=1"]),
    (netcmd.sysctl_get("net.x.y"), ["sysctl", "-n", "net.x.y"]),
    (
        netcmd.disable_ipv6("fbb1"),
        ["sysctl", "-q", "-w", "net.ipv6.conf.fbb1.disable_ipv6=1"],
    ),
    (
        # sysctl writes a dot inside a device name as '/'
        netcmd.disable_ipv6("eth0.100"),
        ["sysctl", "-q", "-w", "net.ipv6.conf.eth0/100.disable_ipv6=1"],
    ),
    (
        netcmd.disable_ipv6_namespace(),
        ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
         "net.ipv6.conf.default.disable_ipv6=1"],
    ),
    (
        netcmd.rp_filter_off_namespace(),
        ["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0",
         "net.ipv4.conf.default.rp_filter=0"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), CASES)
def test_builder_returns_expected_argv(argv: list[str], expected: list[str]) -> None:
    assert argv == expected


def test_address_keeps_its_prefix_length() -> None:
    argv = netcmd.addr_replace("eth0", ipaddress.IPv4Interface("192.168.7.3/30"))
    assert "192.168.7.3/30" in argv
