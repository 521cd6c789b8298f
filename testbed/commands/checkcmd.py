"""Read-only commands of ``inventory check``: argv builders and parsers of their output.

Every remote argv the check runs is built here by a small pure function (the
executor quotes each argument), and every output it reads is turned into typed
values by a pure parser, so both are table-tested without a host.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

GIB = 1024**3
MIB = 1024**2

# Where non-root logins usually lack sbin in PATH (Debian, Raspberry Pi OS over SSH).
_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
_PYTHON_VERSION = re.compile(r"^Python (\d+)\.(\d+)(?:\.(\d+))?")


# --- command builders (pure; the executor quotes each argument) --------------------


def uid_cmd() -> list[str]:
    """Print the login's numeric user id (0 is root)."""
    return ["id", "-u"]


def os_release_cmd() -> list[str]:
    """Print /etc/os-release."""
    return ["cat", "/etc/os-release"]


def arch_cmd() -> list[str]:
    """Print the machine architecture (``aarch64``, ``x86_64``)."""
    return ["uname", "-m"]


def python_version_cmd() -> list[str]:
    """Print the version of the ``python3`` on PATH."""
    return ["python3", "--version"]


def home_cmd() -> list[str]:
    """Print the login's home directory."""
    return ["printenv", "HOME"]


def df_cmd(path: str) -> list[str]:
    """Free space of the file system holding ``path``, POSIX format in KiB."""
    return ["df", "-P", "-k", path]


def meminfo_cmd() -> list[str]:
    """Print /proc/meminfo."""
    return ["cat", "/proc/meminfo"]


def addr_show_cmd(ifname: str | None = None) -> list[str]:
    """Addresses of interface ``ifname`` (all interfaces when None) as JSON."""
    argv = ["ip", "-j", "addr", "show"]
    return [*argv, "dev", ifname] if ifname is not None else argv


def route_get_cmd(address: ipaddress.IPv4Address) -> list[str]:
    """The route the kernel would take to ``address``, as JSON."""
    return ["ip", "-j", "route", "get", str(address)]


def which_cmd(tool: str) -> list[str]:
    """Print the path of ``tool``, also searching the sbin directories.

    The script is constant; the tool name is passed as ``$1``, never spliced in.
    """
    script = f'PATH="$PATH:{_SBIN_PATH}"; command -v "$1"'
    return ["sh", "-c", script, "sh", tool]


def chronyc_tracking_cmd(chronyc: str = "chronyc") -> list[str]:
    """Chrony's tracking state as one CSV line."""
    return [chronyc, "-c", "tracking"]


def timedatectl_sync_cmd(timedatectl: str = "timedatectl") -> list[str]:
    """Print ``yes`` or ``no``: whether systemd says the clock is NTP-synchronised."""
    return [timedatectl, "show", "-p", "NTPSynchronized", "--value"]


def getcap_cmd(path: str, getcap: str = "getcap") -> list[str]:
    """File capabilities of the binary at ``path``."""
    return [getcap, path]


def sudo_check_cmd() -> list[str]:
    """Succeed only if the login may use sudo without a password."""
    return ["sudo", "-n", "true"]


# --- parsers (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class InterfaceState:
    """An interface as ``ip -j addr show`` reports it."""

    ifname: str
    up: bool
    carrier: bool
    addresses: tuple[ipaddress.IPv4Interface, ...]


@dataclass(frozen=True)
class RouteInfo:
    """The answer of ``ip -j route get``: outgoing device, source, gateway."""

    dev: str
    prefsrc: str | None = None
    gateway: str | None = None
    type: str | None = None


@dataclass(frozen=True)
class ChronyTracking:
    """The fields of ``chronyc -c tracking`` that a check needs.

    ``offset_ns`` is the system clock minus NTP time (positive: the host's clock
    is ahead); chrony's own "System time" field has the opposite sign.
    """

    reference_id: str
    reference_name: str
    stratum: int
    offset_ns: int
    leap_status: str

    @property
    def synchronised(self) -> bool:
        """Whether chronyd has a reference it tracks."""
        return self.leap_status != "Not synchronised" and self.reference_id not in (
            "00000000",
            "",
        )


def parse_os_release(text: str) -> str | None:
    """PRETTY_NAME of an os-release file (shell-quoted values), or None."""
    for line in text.splitlines():
        key, sep, raw = line.strip().partition("=")
        if sep and key == "PRETTY_NAME":
            try:
                words = shlex.split(raw)
            except ValueError:
                return raw.strip("\"'") or None
            return " ".join(words) or None
    return None


def parse_meminfo_available(text: str) -> int | None:
    """MemAvailable of /proc/meminfo in bytes, or None (kernels before 3.14)."""
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key.strip() == "MemAvailable":
            fields = rest.split()
            if not fields or not fields[0].isdigit():
                return None
            unit = fields[1].lower() if len(fields) > 1 else "b"
            scale = {"kb": 1024, "mb": MIB, "gb": GIB, "b": 1}.get(unit)
            return None if scale is None else int(fields[0]) * scale
    return None


def parse_df_available(text: str) -> int | None:
    """Available bytes from ``df -P -k`` output, or None.

    The capacity column (``30%``) anchors the row, so file system names and
    mount points with spaces do not shift the columns.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines[1:]:
        words = line.split()
        for index, word in enumerate(words):
            if word.endswith("%") and word[:-1].isdigit() and index >= 1:
                available = words[index - 1]
                return int(available) * 1024 if available.isdigit() else None
    return None


def parse_python_version(text: str) -> tuple[int, int, int] | None:
    """``Python 3.11.7`` -> (3, 11, 7); None if it is not a Python version line."""
    match = _PYTHON_VERSION.match(text.strip())
    if match is None:
        return None
    major, minor, micro = match.groups()
    return int(major), int(minor), int(micro or 0)


def _json_list(text: str, what: str) -> list[dict[str, object]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} did not print JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"{what} printed {type(data).__name__}, expected a list")
    return [item for item in data if isinstance(item, dict)]


def _interface_state(item: Mapping[str, object]) -> InterfaceState:
    flags_raw = item.get("flags", [])
    flags = [str(f) for f in flags_raw] if isinstance(flags_raw, list) else []
    addresses: list[ipaddress.IPv4Interface] = []
    infos = item.get("addr_info", [])
    for info in infos if isinstance(infos, list) else []:
        if isinstance(info, dict) and info.get("family") == "inet":
            addresses.append(
                ipaddress.IPv4Interface(f"{info.get('local')}/{info.get('prefixlen')}")
            )
    return InterfaceState(
        ifname=str(item.get("ifname", "")),
        up="UP" in flags,
        carrier="NO-CARRIER" not in flags and "LOWER_UP" in flags,
        addresses=tuple(addresses),
    )


def parse_ip_addr(text: str) -> tuple[InterfaceState, ...]:
    """Interfaces and their IPv4 addresses from ``ip -j addr show`` output."""
    return tuple(_interface_state(item) for item in _json_list(text, "ip -j addr"))


def parse_route_get(text: str) -> RouteInfo | None:
    """The first route of ``ip -j route get`` output, or None if it has none."""
    for item in _json_list(text, "ip -j route get"):
        dev = item.get("dev")
        if isinstance(dev, str):
            text_of = {k: v for k, v in item.items() if isinstance(v, str)}
            return RouteInfo(
                dev=dev,
                prefsrc=text_of.get("prefsrc"),
                gateway=text_of.get("gateway"),
                type=text_of.get("type"),
            )
    return None


def parse_chronyc_tracking(text: str) -> ChronyTracking | None:
    """Parse one ``chronyc -c tracking`` line (chrony 3 and 4), or None.

    Fields: reference id, name, stratum, reference time, system time (seconds
    the clock is *slow* of NTP time), last offset, RMS offset, frequency,
    residual frequency, skew, root delay, root dispersion, update interval,
    leap status.
    """
    line = text.strip().splitlines()[0] if text.strip() else ""
    fields = line.split(",")
    if len(fields) < 14:
        return None
    try:
        stratum = int(fields[2])
        correction_s = float(fields[4])
    except ValueError:
        return None
    return ChronyTracking(
        reference_id=fields[0],
        reference_name=fields[1],
        stratum=stratum,
        offset_ns=-round(correction_s * 1e9),
        leap_status=fields[-1].strip(),
    )


def parse_getcap(text: str) -> frozenset[str]:
    """Capabilities in both effective and permitted sets, from ``getcap`` output.

    Reads the current format (``/usr/bin/tcpdump cap_net_admin,cap_net_raw=eip``)
    and the one of libcap < 2.41 (``/usr/bin/tcpdump = cap_net_raw+ep``).
    """
    granted: set[str] = set()
    for line in text.splitlines():
        words = line.split()
        clauses = words[1:]
        if clauses[:1] == ["="]:
            clauses = clauses[1:]
        for clause in clauses:
            for op in ("=", "+"):
                names, sep, flags = clause.partition(op)
                if sep:
                    if "e" in flags and "p" in flags:
                        granted.update(n.strip().lower() for n in names.split(","))
                    break
    granted.discard("")
    return frozenset(granted)
