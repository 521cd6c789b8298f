"""testbed.lab.check: host logic against scripted outputs, report, netns."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from inventory.loader import parse_inventory
from inventory.models import Inventory
from testbed.commands.checkcmd import (
    addr_show_cmd,
    arch_cmd,
    chronyc_tracking_cmd,
    df_cmd,
    getcap_cmd,
    home_cmd,
    meminfo_cmd,
    os_release_cmd,
    python_version_cmd,
    route_get_cmd,
    sudo_check_cmd,
    timedatectl_sync_cmd,
    uid_cmd,
    which_cmd,
)
from testbed.lab.check import ExecutorFactory, check_inventory
from testbed.lab.check_report import (
    CheckOptions,
    CheckReport,
    CheckRow,
    group_mark,
    render_text,
)
from testbed.transport.executor import DEFAULT_TIMEOUT_S, Background, NetnsExecutor
from tests.testbed.commands.test_checkcmd import (
    CHRONY_SYNCED,
    CHRONY_UNSYNCED,
    DF_ROOT,
    IP_ADDR_LO,
    IP_ADDR_NO_CARRIER,
    MEMINFO_HEAD,
    OS_RELEASE_DEBIAN,
    ROUTE_ON_LINK,
)

# --- host logic against a scripted executor ---------------------------------------

Reply = tuple[int, str, str]


class ScriptedExecutor:
    """Answers each argv from a table; an unknown command is 'not found' (127)."""

    def __init__(self, replies: Mapping[tuple[str, ...], Reply], delay_s: float = 0.0):
        self.replies = dict(replies)
        self.delay_s = delay_s
        self.ran: list[tuple[str, ...]] = []
        self.closed = False

    @property
    def where(self) -> str:
        return "scripted host"

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        self.ran.append(tuple(argv))
        if self.delay_s:
            time.sleep(self.delay_s)
        code, out, err = self.replies.get(
            tuple(argv), (127, "", f"{argv[0]}: not found")
        )
        return subprocess.CompletedProcess(list(argv), code, out, err)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Background:
        raise NotImplementedError

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        raise NotImplementedError

    def get(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True


def _which(tool: str, path: str | None) -> tuple[tuple[str, ...], Reply]:
    return tuple(which_cmd(tool)), (0, f"{path}\n", "") if path else (1, "", "")


def healthy_pi(
    ip_eth: str = "10.10.1.11", uid: int = 1000
) -> dict[tuple[str, ...], Reply]:
    """A Pi (pi01 of inventory_doc) on which every check passes, as user pi."""
    eth0 = IP_ADDR_LO.replace('"lo"', '"eth0"').replace("127.0.0.1", ip_eth)
    eth0 = eth0.replace('"prefixlen":8', '"prefixlen":24')
    route = ROUTE_ON_LINK.replace("10.79.1.12", ip_eth).replace(
        '"10.79.1.1"', '"10.10.1.1"'
    )
    return {
        tuple(uid_cmd()): (0, f"{uid}\n", ""),
        tuple(os_release_cmd()): (0, OS_RELEASE_DEBIAN, ""),
        tuple(arch_cmd()): (0, "aarch64\n", ""),
        tuple(python_version_cmd()): (0, "Python 3.11.2\n", ""),
        tuple(home_cmd()): (0, "/home/pi\n", ""),
        tuple(df_cmd("/home/pi")): (0, DF_ROOT, ""),
        tuple(meminfo_cmd()): (0, MEMINFO_HEAD, ""),
        tuple(addr_show_cmd("eth0")): (0, eth0, ""),
        tuple(route_get_cmd(ipaddress.IPv4Address("10.10.1.1"))): (0, route, ""),
        tuple(addr_show_cmd()): (0, eth0, ""),
        _which("chronyc", "/usr/bin/chronyc")[0]: (0, "/usr/bin/chronyc\n", ""),
        tuple(chronyc_tracking_cmd("/usr/bin/chronyc")): (0, CHRONY_SYNCED, ""),
        _which("tcpdump", "/usr/bin/tcpdump")[0]: (0, "/usr/bin/tcpdump\n", ""),
        _which("tc", "/usr/sbin/tc")[0]: (0, "/usr/sbin/tc\n", ""),
        _which("getcap", "/usr/sbin/getcap")[0]: (0, "/usr/sbin/getcap\n", ""),
        tuple(getcap_cmd("/usr/bin/tcpdump", "/usr/sbin/getcap")): (
            0,
            "/usr/bin/tcpdump cap_net_admin,cap_net_raw=eip\n",
            "",
        ),
        tuple(getcap_cmd("/usr/sbin/tc", "/usr/sbin/getcap")): (
            0,
            "/usr/sbin/tc cap_net_admin=ep\n",
            "",
        ),
    }


def healthy_server() -> dict[tuple[str, ...], Reply]:
    """The lab server of inventory_doc: eth0 holds 10.10.1.1."""
    return healthy_pi(ip_eth="10.10.1.1")


def inventory_doc(
    networks: Mapping[str, tuple[str, str]],
    clients: Mapping[str, Mapping[str, tuple[str, str]]],
) -> dict[str, object]:
    """An inventory document: networks name -> (subnet, server address), clients
    name -> network -> (ifname, ip)."""
    return {
        "all": {
            "vars": {
                "cluster_name": "checktest",
                "ansible_user": "pi",
                "networks": {
                    name: {
                        "subnet": subnet,
                        "server_address": server,
                        "profile": "wifi",
                    }
                    for name, (subnet, server) in networks.items()
                },
            },
            "children": {
                "server": {"hosts": {"labserver": {"ansible_host": "127.0.0.1"}}},
                "clients": {
                    "hosts": {
                        name: {
                            "ansible_host": f"192.168.50.{11 + index}",
                            "interfaces": {
                                net: {"ifname": ifname, "ip": ip}
                                for net, (ifname, ip) in ifaces.items()
                            },
                        }
                        for index, (name, ifaces) in enumerate(clients.items())
                    }
                },
            },
        }
    }


def one_pi_inventory() -> Inventory:
    doc = inventory_doc(
        {"ethernet": ("10.10.1.0/24", "10.10.1.1")},
        {"pi01": {"ethernet": ("eth0", "10.10.1.11")}},
    )
    return parse_inventory(doc, "lab.yaml")


def rows_by_check(report: CheckReport, host: str) -> dict[str, CheckRow]:
    return {row.check: row for row in report.host_rows(host)}


def check_pi(
    replies: Mapping[tuple[str, ...], Reply], options: CheckOptions | None = None
) -> dict[str, CheckRow]:
    inventory = one_pi_inventory()
    executors: dict[str, ExecutorFactory] = {
        "labserver": lambda: ScriptedExecutor(healthy_server()),
        "pi01": lambda: ScriptedExecutor(replies),
    }
    report = check_inventory(inventory, executors, options)
    return rows_by_check(report, "pi01")


def test_a_healthy_pi_passes_every_check_with_its_values() -> None:
    rows = check_pi(healthy_pi())

    assert all(row.ok is True for row in rows.values()), rows
    assert rows["os"].value == "Debian GNU/Linux 12 (bookworm) aarch64"
    assert rows["python"].value == "3.11.2"
    assert rows["disk"].value == 75107920 * 1024
    assert rows["memory"].value == 22080604 * 1024
    assert rows["interface:ethernet"].value == "eth0 10.10.1.11/24"
    assert rows["route:ethernet"].value == "dev eth0 src 10.10.1.11"
    assert rows["clock-offset"].value == 1359
    assert rows["tcpdump"].value == "/usr/bin/tcpdump (cap_net_raw)"
    assert rows["tc"].value == "/usr/sbin/tc (cap_net_admin)"


def test_without_capabilities_sudo_is_the_fallback_and_else_a_failure() -> None:
    replies = healthy_pi()
    del replies[tuple(getcap_cmd("/usr/sbin/tc", "/usr/sbin/getcap"))]
    with_sudo = {**replies, tuple(sudo_check_cmd()): (0, "", "")}
    no_sudo = {
        **replies,
        tuple(sudo_check_cmd()): (1, "", "sudo: a password is required"),
    }

    sudo_rows = check_pi(with_sudo)
    bare_rows = check_pi(no_sudo)

    assert sudo_rows["tc"].ok is True and "passwordless sudo" in str(
        sudo_rows["tc"].value
    )
    assert bare_rows["tc"].ok is False
    assert "setcap cap_net_admin+eip /usr/sbin/tc" in bare_rows["tc"].message
    assert bare_rows["tcpdump"].ok is True  # its capabilities are still there


def test_root_needs_neither_capabilities_nor_sudo() -> None:
    replies = healthy_pi(uid=0)
    for tool in ("/usr/bin/tcpdump", "/usr/sbin/tc"):
        del replies[tuple(getcap_cmd(tool, "/usr/sbin/getcap"))]

    rows = check_pi(replies)

    assert rows["tc"].ok is True and rows["tc"].value == "/usr/sbin/tc (root)"
    assert rows["tcpdump"].value == "/usr/bin/tcpdump (root)"


def test_a_missing_tool_says_which_package_to_install() -> None:
    replies = healthy_pi()
    replies[_which("tcpdump", None)[0]] = (1, "", "")

    rows = check_pi(replies)

    assert rows["tcpdump"].ok is False
    assert "apt install tcpdump" in rows["tcpdump"].message


@pytest.mark.parametrize(
    ("tracking", "clock_ok", "offset_ok", "hint"),
    [
        ((0, CHRONY_UNSYNCED, ""), False, None, "not synchronised"),
        ((1, "", "506 Cannot talk to daemon"), False, None, "start chronyd"),
        (
            (0, CHRONY_SYNCED.replace("-0.000001359", "0.250000000"), ""),
            True,
            False,
            "-250.000 ms off NTP time",
        ),
    ],
)
def test_chrony_states(
    tracking: Reply, clock_ok: bool, offset_ok: bool | None, hint: str
) -> None:
    replies = healthy_pi()
    replies[tuple(chronyc_tracking_cmd("/usr/bin/chronyc"))] = tracking

    rows = check_pi(replies)

    assert rows["clock"].ok is clock_ok
    assert rows["clock-offset"].ok is offset_ok
    assert hint in rows["clock"].message + rows["clock-offset"].message


@pytest.mark.parametrize(
    ("answer", "expected"),
    [((0, "yes\n", ""), True), ((0, "no\n", ""), False), ((1, "", "no bus"), None)],
)
def test_timedatectl_is_the_fallback_without_chrony(
    answer: Reply, expected: bool | None
) -> None:
    replies = healthy_pi()
    replies[_which("chronyc", None)[0]] = (1, "", "")
    replies[_which("timedatectl", "/usr/bin/timedatectl")[0]] = (
        0,
        "/usr/bin/timedatectl\n",
        "",
    )
    replies[tuple(timedatectl_sync_cmd("/usr/bin/timedatectl"))] = answer

    rows = check_pi(replies)

    assert rows["clock"].ok is expected
    assert rows["clock-offset"].ok is None


def test_neither_chrony_nor_timedatectl_is_unknown_not_a_failure() -> None:
    replies = healthy_pi()
    replies[_which("chronyc", None)[0]] = (1, "", "")

    rows = check_pi(replies)

    assert rows["clock"].ok is None and "install chrony" in rows["clock"].message


@pytest.mark.parametrize(
    ("check", "key", "reply", "hint"),
    [
        ("python", python_version_cmd(), (0, "Python 3.9.2\n", ""), "older than 3.11"),
        ("python", python_version_cmd(), (127, "", "python3: not found"), "not found"),
        (
            "disk",
            df_cmd("/home/pi"),
            (0, DF_ROOT.replace("75107920", "1048576"), ""),
            "only 1.0 GiB free in /home/pi",
        ),
        (
            "memory",
            meminfo_cmd(),
            (0, MEMINFO_HEAD.replace("22080604", "102400"), ""),
            "only 100 MiB of memory available",
        ),
    ],
)
def test_system_failures_say_what_was_found(
    check: str, key: list[str], reply: Reply, hint: str
) -> None:
    replies = healthy_pi()
    replies[tuple(key)] = reply

    rows = check_pi(replies)

    assert rows[check].ok is False
    assert hint in rows[check].message


def test_disk_path_option_checks_that_directory() -> None:
    replies = healthy_pi()
    replies[tuple(df_cmd("/srv/flowerbed"))] = (
        0,
        DF_ROOT.replace("75107920", "10"),
        "",
    )

    rows = check_pi(replies, CheckOptions(disk_path="/srv/flowerbed"))

    assert rows["disk"].ok is False and rows["disk"].value == 10 * 1024


def test_a_down_interface_fails_and_the_route_is_still_checked() -> None:
    replies = healthy_pi()
    replies[tuple(addr_show_cmd("eth0"))] = (
        0,
        IP_ADDR_NO_CARRIER.replace("10.79.1.12", "10.10.1.11"),
        "",
    )

    rows = check_pi(replies)

    assert rows["interface:ethernet"].ok is False
    assert "no carrier" in rows["interface:ethernet"].message
    assert rows["route:ethernet"].ok is True


class FakeSSHError(Exception):
    """Stands in for ``SSHError``: a message, ``.host`` and ``.kind``."""

    def __init__(self, host: str, kind: str) -> None:
        super().__init__(f"{kind} at {host} (fake)")
        self.host = host
        self.kind = kind


def _raising(exc: Exception) -> ExecutorFactory:
    def factory() -> ScriptedExecutor:
        raise exc

    return factory


class FailsOnFirstRun(ScriptedExecutor):
    """Connects lazily: the first run raises what the SSH connection raised."""

    def __init__(self, exc: Exception) -> None:
        super().__init__({})
        self.exc = exc

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        raise self.exc


@pytest.mark.parametrize(
    ("kind", "expected", "hint"),
    [
        ("unreachable", {"reachable": False}, "ping 192.168.50.11"),
        (
            "auth",
            {"reachable": True, "host-key": True, "authenticated": False},
            "ssh-copy-id -p 22 pi@192.168.50.11",
        ),
        (
            "unknown-host-key",
            {"reachable": True, "host-key": False, "authenticated": None},
            "--accept-new",
        ),
        (
            "changed-host-key",
            {"reachable": True, "host-key": False, "authenticated": None},
            "ssh-keygen -R 192.168.50.11",
        ),
    ],
)
@pytest.mark.parametrize("when", ["factory", "first run"])
def test_access_errors_give_their_own_rows(
    kind: str, expected: dict[str, bool | None], hint: str, when: str
) -> None:
    inventory = one_pi_inventory()
    error = FakeSSHError("pi01", kind)
    failing: ExecutorFactory = (
        _raising(error) if when == "factory" else lambda: FailsOnFirstRun(error)
    )
    executors: dict[str, ExecutorFactory] = {
        "labserver": lambda: ScriptedExecutor(healthy_server()),
        "pi01": failing,
    }

    report = check_inventory(inventory, executors)

    rows = rows_by_check(report, "pi01")
    assert {check: row.ok for check, row in rows.items()} == expected
    assert any(hint in row.message for row in rows.values())
    assert report.host_ok("labserver") and not report.ok


def test_an_error_without_kind_is_a_failure_of_that_host_with_its_message() -> None:
    inventory = one_pi_inventory()
    executors: dict[str, ExecutorFactory] = {
        "labserver": lambda: ScriptedExecutor(healthy_server()),
        "pi01": _raising(OSError("no route to host 192.168.50.11")),
    }

    report = check_inventory(inventory, executors)

    (row,) = report.host_rows("pi01")
    assert row.ok is False and "no route to host 192.168.50.11" in row.message
    assert report.host_ok("labserver")


def test_a_slow_host_runs_out_of_time_alone_and_its_executor_is_closed() -> None:
    inventory = one_pi_inventory()
    slow = ScriptedExecutor(healthy_pi(), delay_s=0.05)
    executors: dict[str, ExecutorFactory] = {
        "labserver": lambda: ScriptedExecutor(healthy_server()),
        "pi01": lambda: slow,
    }
    options = CheckOptions(host_timeout_s=0.3)

    started = time.monotonic()
    report = check_inventory(inventory, executors, options)
    elapsed = time.monotonic() - started

    rows = rows_by_check(report, "pi01")
    skipped = [
        row for row in rows.values() if row.ok is None and "time limit" in row.message
    ]
    assert skipped and rows["reachable"].ok is True
    assert report.host_ok("labserver")
    assert elapsed < 2.0 and slow.closed


def test_a_host_whose_command_hangs_past_every_limit_gets_a_time_limit_row() -> None:
    inventory = one_pi_inventory()
    hung = ScriptedExecutor(healthy_pi(), delay_s=1.0)  # ignores its timeout
    executors: dict[str, ExecutorFactory] = {
        "labserver": lambda: ScriptedExecutor(healthy_server()),
        "pi01": lambda: hung,
    }

    started = time.monotonic()
    report = check_inventory(inventory, executors, CheckOptions(host_timeout_s=0.2))
    elapsed = time.monotonic() - started

    (row,) = report.host_rows("pi01")
    assert (row.check, row.ok) == ("time-limit", False)
    assert "did not finish within 0.4 s" in row.message
    assert report.host_ok("labserver") and elapsed < 0.9


def test_report_json_and_text_table() -> None:
    replies = healthy_pi()
    replies[tuple(python_version_cmd())] = (0, "Python 3.9.2\n", "")
    inventory = one_pi_inventory()
    executors: dict[str, ExecutorFactory] = {
        "labserver": lambda: ScriptedExecutor(healthy_server()),
        "pi01": lambda: ScriptedExecutor(replies),
    }

    seen: list[tuple[str, int]] = []

    report = check_inventory(
        inventory, executors, progress=lambda name, rows: seen.append((name, len(rows)))
    )
    text = render_text(report)
    data = json.loads(json.dumps(report.to_json()))

    assert sorted(seen) == [
        ("labserver", len(report.host_rows("labserver"))),
        ("pi01", len(report.host_rows("pi01"))),
    ]

    header, server_line, pi_line = text.splitlines()[:3]
    assert header.split() == [
        "host", "ssh", "os", "python", "disk", "memory", "ethernet", "clock",
        "tcpdump", "tc",
    ]  # fmt: skip
    assert server_line.split()[0] == "labserver"
    assert pi_line.split() == ["pi01", "✓", "✓", "✗", "✓", "✓", "✓", "✓", "✓", "✓"]
    assert "✗ pi01 python: Python 3.9.2 on pi01 is older than 3.11" in text
    assert text.splitlines()[-1] == "1 of 2 hosts have problems: pi01"
    assert data["ok"] is False
    assert [h["host"] for h in data["hosts"]] == ["labserver", "pi01"]
    assert [h["ok"] for h in data["hosts"]] == [True, False]
    python_row = next(c for c in data["hosts"][1]["checks"] if c["check"] == "python")
    assert python_row == {
        "check": "python",
        "ok": False,
        "value": "3.9.2",
        "message": python_row["message"],
    }


@pytest.mark.parametrize(
    ("oks", "mark"),
    [((), "-"), ((True, True), "✓"), ((True, None), "?"), ((None, False, True), "✗")],
)
def test_group_mark(oks: tuple[bool | None, ...], mark: str) -> None:
    rows = [CheckRow("h", "x", ok, None, "why") for ok in oks]
    assert group_mark(rows) == mark


def test_a_failed_row_without_advice_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a message"):
        CheckRow("pi01", "disk", False, 10)


# --- real network namespaces ------------------------------------------------------


@dataclass(frozen=True)
class Namespaces:
    server: str
    good: str
    missing: str
    wrong: str


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=20)


def _veth(client_ns: str, ifname: str, server_ns: str, peer: str) -> None:
    _ip("link", "add", ifname, "netns", client_ns, "type", "veth",
        "peer", "name", peer, "netns", server_ns)  # fmt: skip
    _ip("-n", client_ns, "link", "set", ifname, "up")
    _ip("-n", server_ns, "link", "set", peer, "up")


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    """Server ns with 10.79.1.1 (lan) and 10.79.2.1 (alt); three client namespaces.

    good: eth0 10.79.1.12/24, eth1 10.79.2.12/24. missing: only eth1
    10.79.2.13/24. wrong: eth0 10.79.1.14/24 and eth1 10.79.2.14/24, plus a
    host route sending 10.79.1.1 out of eth1.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("needs ip (apt install iproute2)")
    prefix = f"fbk{secrets.token_hex(4)}"
    ns = Namespaces(f"{prefix}s", f"{prefix}g", f"{prefix}m", f"{prefix}w")
    made: list[str] = []
    try:
        for name in (ns.server, ns.good, ns.missing, ns.wrong):
            _ip("netns", "add", name)
            made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        _veth(ns.good, "eth0", ns.server, "g0")
        _veth(ns.good, "eth1", ns.server, "g1")
        _veth(ns.missing, "eth1", ns.server, "m1")
        _veth(ns.wrong, "eth0", ns.server, "w0")
        _veth(ns.wrong, "eth1", ns.server, "w1")
        _ip("-n", ns.server, "addr", "add", "10.79.1.1/24", "dev", "g0")
        _ip("-n", ns.server, "addr", "add", "10.79.2.1/24", "dev", "g1")
        _ip("-n", ns.good, "addr", "add", "10.79.1.12/24", "dev", "eth0")
        _ip("-n", ns.good, "addr", "add", "10.79.2.12/24", "dev", "eth1")
        _ip("-n", ns.missing, "addr", "add", "10.79.2.13/24", "dev", "eth1")
        _ip("-n", ns.wrong, "addr", "add", "10.79.1.14/24", "dev", "eth0")
        _ip("-n", ns.wrong, "addr", "add", "10.79.2.14/24", "dev", "eth1")
        _ip("-n", ns.wrong, "route", "add", "10.79.1.1/32", "dev", "eth1")
        yield ns
    finally:
        for name in made:
            subprocess.run(
                ["ip", "netns", "del", name], capture_output=True, timeout=20
            )


@pytest.mark.root
def test_check_against_real_namespaces(namespaces: Namespaces) -> None:
    ns = namespaces
    lan_alt = {
        "lan": ("10.79.1.0/24", "10.79.1.1"),
        "alt": ("10.79.2.0/24", "10.79.2.1"),
    }
    doc = inventory_doc(
        lan_alt,
        {
            "good": {"lan": ("eth0", "10.79.1.12"), "alt": ("eth1", "10.79.2.12")},
            "missing": {"lan": ("eth0", "10.79.1.13"), "alt": ("eth1", "10.79.2.13")},
            "wrong": {"lan": ("eth0", "10.79.1.14"), "alt": ("eth1", "10.79.2.14")},
            "gone": {"lan": ("eth0", "10.79.1.15"), "alt": ("eth1", "10.79.2.15")},
        },
    )
    inventory = parse_inventory(doc, "fbk-lab.yaml")

    def in_ns(name: str) -> Callable[[], NetnsExecutor]:
        return lambda: NetnsExecutor(name)

    executors: dict[str, ExecutorFactory] = {
        "labserver": in_ns(ns.server),
        "good": in_ns(ns.good),
        "missing": in_ns(ns.missing),
        "wrong": in_ns(ns.wrong),
        "gone": _raising(FakeSSHError("gone", "unreachable")),
    }

    report = check_inventory(inventory, executors, CheckOptions(disk_path="/"))

    server = rows_by_check(report, "labserver")
    good = rows_by_check(report, "good")
    missing = rows_by_check(report, "missing")
    wrong = rows_by_check(report, "wrong")
    assert server["interface:lan"].ok is True
    assert server["interface:lan"].value == "g0 10.79.1.1"
    assert server["interface:alt"].value == "g1 10.79.2.1"
    for net, ifname, ip in (
        ("lan", "eth0", "10.79.1.12"),
        ("alt", "eth1", "10.79.2.12"),
    ):
        assert good[f"interface:{net}"].ok is True
        assert good[f"interface:{net}"].value == f"{ifname} {ip}/24"
        assert good[f"route:{net}"].ok is True
        assert good[f"route:{net}"].value == f"dev {ifname} src {ip}"
    assert all(
        good[c].ok is True for c in ("reachable", "os", "python", "tc", "tcpdump")
    )

    assert missing["interface:lan"].ok is False
    assert missing["interface:lan"].message.startswith(
        "interface eth0 missing on missing: the inventory says lan is on eth0 with "
        "10.79.1.13; check `ip -br addr` on missing or fix interfaces.lan in "
        "fbk-lab.yaml"
    )
    assert missing["route:lan"].ok is None
    assert missing["interface:alt"].ok is True and missing["route:alt"].ok is True

    assert wrong["interface:lan"].ok is True
    assert wrong["route:lan"].ok is False
    assert wrong["route:lan"].value == "dev eth1 src 10.79.2.14"
    assert "leaves through eth1, not eth0" in wrong["route:lan"].message
    assert wrong["route:alt"].ok is True

    (gone,) = report.host_rows("gone")
    assert (gone.check, gone.ok) == ("reachable", False)
    assert "cannot reach gone at 192.168.50.14:22" in gone.message

    assert not report.ok
    assert [h for h in report.hosts if not report.host_ok(h)] == [
        "missing",
        "wrong",
        "gone",
    ]
    text = render_text(report)
    assert text.splitlines()[-1] == "3 of 5 hosts have problems: missing, wrong, gone"
    assert "✗ missing interface:lan: interface eth0 missing" in text
    assert "missing route:lan" not in text  # the skipped route repeats the cause
