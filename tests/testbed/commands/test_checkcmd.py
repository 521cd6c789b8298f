"""testbed.commands.checkcmd: argv builders, and parsers on captured real outputs."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import pytest

from testbed.commands.checkcmd import (
    addr_show_cmd,
    arch_cmd,
    chronyc_tracking_cmd,
    df_cmd,
    getcap_cmd,
    home_cmd,
    meminfo_cmd,
    os_release_cmd,
    parse_chronyc_tracking,
    parse_df_available,
    parse_getcap,
    parse_ip_addr,
    parse_meminfo_available,
    parse_os_release,
    parse_python_version,
    parse_route_get,
    python_version_cmd,
    route_get_cmd,
    sudo_check_cmd,
    timedatectl_sync_cmd,
    uid_cmd,
    which_cmd,
)
from testbed.transport.executor import LocalExecutor

# --- captured real outputs ----------------------------------------------------------

# Debian 12 (this machine), `cat /etc/os-release`.
OS_RELEASE_DEBIAN = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"""
# `df -P -k /root` on this machine (the mount point is `/`).
DF_ROOT = """\
Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/vda         264212084 31282992  75107920      30% /
"""
MEMINFO_HEAD = """\
MemTotal:       24684092 kB
MemFree:         1200012 kB
MemAvailable:   22080604 kB
Buffers:          402112 kB
"""
# `ip -j addr show dev lo` on this machine.
IP_ADDR_LO = (
    '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,'
    '"qdisc":"noqueue","operstate":"UNKNOWN","group":"default","txqlen":1000,'
    '"link_type":"loopback","address":"00:00:00:00:00:00","broadcast":'
    '"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1",'
    '"prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295,'
    '"preferred_life_time":4294967295},{"family":"inet6","local":"::1",'
    '"prefixlen":128,"scope":"host","valid_life_time":4294967295,'
    '"preferred_life_time":4294967295}]}]'
)
# A veth end whose peer is down, in a namespace: `ip -j addr show dev eth0`.
IP_ADDR_NO_CARRIER = (
    '[{"ifindex":3,"link":"eth1","ifname":"eth0","flags":["NO-CARRIER","BROADCAST",'
    '"MULTICAST","UP","M-DOWN"],"mtu":1500,"qdisc":"noqueue","operstate":'
    '"LOWERLAYERDOWN","group":"default","txqlen":1000,"link_type":"ether",'
    '"address":"12:b5:c3:cf:da:16","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":'
    '[{"family":"inet","local":"10.79.1.12","prefixlen":24,"scope":"global",'
    '"label":"eth0","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]'
)
ROUTE_VIA_GATEWAY = (
    '[{"dst":"8.8.8.8","gateway":"192.0.2.1","dev":"eth0","prefsrc":"192.0.2.2",'
    '"flags":[],"uid":0,"cache":[]}]'
)
ROUTE_LOCAL = (
    '[{"type":"local","dst":"127.0.0.1","dev":"lo","prefsrc":"127.0.0.1",'
    '"flags":[],"uid":0,"cache":["local"]}]'
)
ROUTE_ON_LINK = (
    '[{"dst":"10.79.1.1","dev":"eth0","prefsrc":"10.79.1.12","flags":[],"uid":0,'
    '"cache":[]}]'
)
# chrony 4.3 `chronyc -c tracking`: a client synchronised to a server 1.359 µs
# "fast of NTP time", that server (local reference), and a client with no source.
CHRONY_SYNCED = (
    "7F000001,127.0.0.1,9,1795642990.661114607,-0.000001359,-0.000000019,"
    "0.000000210,-0.018,-0.003,0.464,0.000006556,0.000001219,0.3,Normal\n"
)
CHRONY_LOCAL = (
    "7F7F0101,,8,1795642983.179131716,0.000000000,0.000000000,0.000000000,0.000,"
    "0.000,0.000,0.000000000,0.000000000,0.0,Normal\n"
)
CHRONY_UNSYNCED = (
    "00000000,,0,0.000000000,0.000000000,0.000000000,0.000000000,0.000,0.000,0.000,"
    "1.000000000,1.000000000,0.0,Not synchronised\n"
)


# --- builders ---------------------------------------------------------------------

ADDR = ipaddress.IPv4Address("10.10.2.1")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (uid_cmd(), ["id", "-u"]),
        (os_release_cmd(), ["cat", "/etc/os-release"]),
        (arch_cmd(), ["uname", "-m"]),
        (python_version_cmd(), ["python3", "--version"]),
        (home_cmd(), ["printenv", "HOME"]),
        (df_cmd("/home/pi"), ["df", "-P", "-k", "/home/pi"]),
        (df_cmd("/a b;rm -rf x"), ["df", "-P", "-k", "/a b;rm -rf x"]),
        (meminfo_cmd(), ["cat", "/proc/meminfo"]),
        (addr_show_cmd("wlan0"), ["ip", "-j", "addr", "show", "dev", "wlan0"]),
        (addr_show_cmd(), ["ip", "-j", "addr", "show"]),
        (route_get_cmd(ADDR), ["ip", "-j", "route", "get", "10.10.2.1"]),
        (chronyc_tracking_cmd(), ["chronyc", "-c", "tracking"]),
        (
            chronyc_tracking_cmd("/usr/bin/chronyc"),
            ["/usr/bin/chronyc", "-c", "tracking"],
        ),
        (
            timedatectl_sync_cmd(),
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
        ),
        (getcap_cmd("/usr/bin/tcpdump"), ["getcap", "/usr/bin/tcpdump"]),
        (
            getcap_cmd("/usr/bin/tcpdump", "/usr/sbin/getcap"),
            ["/usr/sbin/getcap", "/usr/bin/tcpdump"],
        ),
        (sudo_check_cmd(), ["sudo", "-n", "true"]),
    ],
)
def test_command_builders(argv: list[str], expected: list[str]) -> None:
    assert argv == expected


def test_which_cmd_passes_the_tool_as_an_argument_not_as_script() -> None:
    argv = which_cmd("tc")
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["sh", "tc"]
    assert "tc" not in argv[2].split()


def test_which_cmd_finds_sbin_tools_and_never_runs_a_hostile_name(
    tmp_path: Path,
) -> None:
    local = LocalExecutor()
    marker = tmp_path / "pwned"
    hostile = local.run(which_cmd(f"tc; touch {marker}"), check=False)
    env_without_sbin = {"PATH": "/usr/bin:/bin"}
    found = local.run(which_cmd("tc"), check=False, env=env_without_sbin)

    assert hostile.returncode != 0 and not marker.exists()
    if shutil.which("tc") is not None:
        assert found.stdout.strip().endswith("/tc")


# --- parsers on captured outputs --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (OS_RELEASE_DEBIAN, "Debian GNU/Linux 12 (bookworm)"),
        (
            'NAME="Alpine Linux"\nPRETTY_NAME="Alpine Linux v3.18"\n',
            "Alpine Linux v3.18",
        ),
        ("PRETTY_NAME=Unquoted\n", "Unquoted"),
        ("PRETTY_NAME='Single quoted 1.0'\n", "Single quoted 1.0"),
        ('NAME="Debian GNU/Linux"\n', None),
        ("", None),
    ],
)
def test_parse_os_release(text: str, expected: str | None) -> None:
    assert parse_os_release(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MEMINFO_HEAD, 22080604 * 1024),
        ("MemTotal:  1000 kB\nMemFree:  500 kB\n", None),  # kernel < 3.14
        ("MemAvailable:  abc kB\n", None),
    ],
)
def test_parse_meminfo_available(text: str, expected: int | None) -> None:
    assert parse_meminfo_available(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DF_ROOT, 75107920 * 1024),
        (
            "Filesystem           1024-blocks    Used Available Capacity Mounted on\n"
            "/dev/root             29719728  5210876  23235028  18% /\n",
            23235028 * 1024,
        ),
        (
            "Filesystem 1024-blocks Used Available Capacity Mounted on\n"
            "//nas/my share 1000 400 600 40% /mnt/my share\n",
            600 * 1024,
        ),
        ("Filesystem 1024-blocks Used Available Capacity Mounted on\n", None),
        ("", None),
    ],
)
def test_parse_df_available(text: str, expected: int | None) -> None:
    assert parse_df_available(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Python 3.11.7\n", (3, 11, 7)),
        ("Python 3.9.2", (3, 9, 2)),
        ("Python 3.13.0rc1", (3, 13, 0)),
        ("Python 3.12", (3, 12, 0)),
        ("sh: 1: python3: not found", None),
        ("", None),
    ],
)
def test_parse_python_version(text: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_python_version(text) == expected


def test_parse_ip_addr_on_loopback_keeps_ipv4_only() -> None:
    (lo,) = parse_ip_addr(IP_ADDR_LO)
    assert lo.ifname == "lo" and lo.up and lo.carrier
    assert lo.addresses == (ipaddress.IPv4Interface("127.0.0.1/8"),)


def test_parse_ip_addr_sees_a_missing_carrier() -> None:
    (eth0,) = parse_ip_addr(IP_ADDR_NO_CARRIER)
    assert eth0.up and not eth0.carrier
    assert eth0.addresses == (ipaddress.IPv4Interface("10.79.1.12/24"),)


def test_parse_ip_addr_of_a_missing_device_is_empty_and_garbage_raises() -> None:
    assert parse_ip_addr("[]") == ()
    with pytest.raises(ValueError, match="did not print JSON"):
        parse_ip_addr('Device "wlan0" does not exist.')


@pytest.mark.parametrize(
    ("text", "dev", "prefsrc", "gateway", "kind"),
    [
        (ROUTE_VIA_GATEWAY, "eth0", "192.0.2.2", "192.0.2.1", None),
        (ROUTE_LOCAL, "lo", "127.0.0.1", None, "local"),
        (ROUTE_ON_LINK, "eth0", "10.79.1.12", None, None),
    ],
)
def test_parse_route_get(
    text: str, dev: str, prefsrc: str, gateway: str | None, kind: str | None
) -> None:
    route = parse_route_get(text)
    assert route is not None
    assert (route.dev, route.prefsrc, route.gateway, route.type) == (
        dev,
        prefsrc,
        gateway,
        kind,
    )


def test_parse_route_get_without_a_route() -> None:
    assert parse_route_get("[]") is None


@pytest.mark.parametrize(
    ("text", "synchronised", "offset_ns", "stratum", "name"),
    [
        # "System time: 0.000001359 seconds fast of NTP time" -> clock ahead.
        (CHRONY_SYNCED, True, 1359, 9, "127.0.0.1"),
        (CHRONY_LOCAL, True, 0, 8, ""),
        (CHRONY_UNSYNCED, False, 0, 0, ""),
    ],
)
def test_parse_chronyc_tracking(
    text: str, synchronised: bool, offset_ns: int, stratum: int, name: str
) -> None:
    tracking = parse_chronyc_tracking(text)
    assert tracking is not None
    assert tracking.synchronised is synchronised
    assert tracking.offset_ns == offset_ns
    assert (tracking.stratum, tracking.reference_name) == (stratum, name)


@pytest.mark.parametrize("text", ["", "506 Cannot talk to daemon", "a,b,c"])
def test_parse_chronyc_tracking_rejects_other_output(text: str) -> None:
    assert parse_chronyc_tracking(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("./t cap_net_admin,cap_net_raw=eip\n", {"cap_net_admin", "cap_net_raw"}),
        ("./t2 cap_net_raw=ep\n", {"cap_net_raw"}),
        (
            "/usr/bin/tcpdump = cap_net_admin,cap_net_raw+eip\n",
            {"cap_net_admin", "cap_net_raw"},
        ),
        ("/usr/sbin/tc cap_net_admin=i\n", set()),  # inheritable only: not usable
        ("/usr/bin/x cap_net_raw=ep cap_net_admin+i\n", {"cap_net_raw"}),
        ("", set()),
    ],
)
def test_parse_getcap(text: str, expected: set[str]) -> None:
    assert parse_getcap(text) == expected
