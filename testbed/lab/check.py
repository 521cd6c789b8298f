"""Check an inventory's hosts before a campaign: access, system, networks, clock, tools.

``check_inventory`` runs, in parallel over the server and every client, a fixed
list of read-only commands through each host's ``Executor`` and turns their
output into ``CheckRow`` results; ``render_text`` and ``CheckReport.to_json``
present them. The commands and the parsers of their output are the pure
functions of :mod:`testbed.commands.checkcmd`, table-tested without a host.

A failure on one host is rows for that host, never an exception: a host that
cannot be reached gets one row, a check that fails gets its row with what to
do, and the other hosts and checks proceed.
"""

from __future__ import annotations

import concurrent.futures
import functools
import ipaddress
import math
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from inventory.models import Host, Inventory, Network
from testbed.commands.checkcmd import (
    GIB,
    MIB,
    InterfaceState,
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
from testbed.transport.executor import CommandError, Executor

JsonScalar = str | int | float | bool | None
ExecutorFactory = Callable[[], Executor]
Role = Literal["server", "client"]

# Checks whose failure says the host could not be checked at all.
ACCESS_CHECKS = (
    "reachable",
    "host-key",
    "authenticated",
    "time-limit",
    "internal-error",
)
# Capabilities a tool needs when it does not run as root.
TOOL_CAPABILITIES: Mapping[str, frozenset[str]] = {
    "tcpdump": frozenset({"cap_net_raw"}),
    "tc": frozenset({"cap_net_admin"}),
}
TOOL_PACKAGES: Mapping[str, str] = {"tcpdump": "tcpdump", "tc": "iproute2"}


# --- results ----------------------------------------------------------------------


@dataclass(frozen=True)
class CheckRow:
    """One check on one host.

    ``ok`` is True (passed), False (failed: ``message`` says what to do) or None
    (unknown or skipped: ``message`` says why). ``value`` is what was found.
    """

    host: str
    check: str
    ok: bool | None
    value: JsonScalar = None
    message: str = ""

    def __post_init__(self) -> None:
        if not self.check:
            raise ValueError(f"a check row of host {self.host!r} needs a check name")
        if self.ok is False and not self.message:
            raise ValueError(
                f"failed check {self.check!r} of host {self.host!r} needs a message "
                "saying what to do"
            )

    @property
    def group(self) -> str:
        """The table column the check belongs to (``interface:wifi`` -> ``wifi``)."""
        if self.check in ACCESS_CHECKS:
            return "ssh"
        if self.check.startswith(("interface:", "route:")):
            return self.check.split(":", 1)[1]
        if self.check.startswith("clock"):
            return "clock"
        return self.check

    def to_json(self) -> dict[str, JsonScalar]:
        """The row as a JSON-able mapping."""
        return {
            "check": self.check,
            "ok": self.ok,
            "value": self.value,
            "message": self.message,
        }


@dataclass(frozen=True)
class CheckOptions:
    """Thresholds and limits of ``check_inventory``.

    ``disk_path`` is the directory whose free space is checked on every host;
    None means the login's home directory (``/`` if it has none).
    """

    disk_path: str | None = None
    min_free_disk_bytes: int = 2 * GIB
    min_available_memory_bytes: int = 512 * MIB
    min_python: tuple[int, int] = (3, 11)
    max_clock_offset_ns: int = 10_000_000
    host_timeout_s: float = 60.0
    command_timeout_s: float = 15.0
    max_workers: int = 32

    def __post_init__(self) -> None:
        if self.disk_path is not None and not self.disk_path.startswith("/"):
            raise ValueError(
                f"disk_path must be absolute, got {self.disk_path!r}; "
                "give a directory like /home/pi"
            )
        for name in ("host_timeout_s", "command_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 s, got {getattr(self, name)!r}")
        if self.max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {self.max_workers}")
        if self.max_clock_offset_ns < 0:
            raise ValueError("max_clock_offset_ns must be >= 0")


@dataclass(frozen=True)
class CheckReport:
    """All rows of one ``inventory check``, hosts in inventory order (server first)."""

    inventory: str
    hosts: tuple[str, ...]
    roles: tuple[Role, ...]
    rows: tuple[CheckRow, ...]
    networks: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no check failed (unknown checks do not fail the report)."""
        return all(row.ok is not False for row in self.rows)

    def host_rows(self, host: str) -> tuple[CheckRow, ...]:
        """The rows of ``host``, in the order they were checked."""
        return tuple(row for row in self.rows if row.host == host)

    def host_ok(self, host: str) -> bool:
        """True when no check of ``host`` failed."""
        return all(row.ok is not False for row in self.host_rows(host))

    def failures(self) -> tuple[CheckRow, ...]:
        """The failed rows, hosts in report order."""
        return tuple(row for row in self.rows if row.ok is False)

    def to_json(self) -> dict[str, object]:
        """The report as a JSON-able mapping (for ``--format json``)."""
        return {
            "inventory": self.inventory,
            "ok": self.ok,
            "networks": list(self.networks),
            "hosts": [
                {
                    "host": host,
                    "role": role,
                    "ok": self.host_ok(host),
                    "checks": [row.to_json() for row in self.host_rows(host)],
                }
                for host, role in zip(self.hosts, self.roles, strict=True)
            ],
        }


# --- per-host checking ------------------------------------------------------------


class _OutOfTime(Exception):
    """The host's time limit ran out before this check could run."""


@dataclass(frozen=True)
class _Ran:
    """A finished command: exit code and output (a missing binary gives 127)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def why(self) -> str:
        output = self.stderr.strip() or self.stdout.strip()
        tail = " / ".join(line.strip() for line in output.splitlines()[-3:])[-300:]
        return f"exit code {self.returncode}" + (f": {tail}" if tail else "")


def _fmt_bytes(count: int) -> str:
    if count >= GIB:
        return f"{count / GIB:.1f} GiB"
    return f"{count / MIB:.0f} MiB"


def _fmt_ns(ns: int) -> str:
    magnitude = abs(ns)
    if magnitude >= 1_000_000:
        return f"{ns / 1e6:+.3f} ms"
    if magnitude >= 1_000:
        return f"{ns / 1e3:+.1f} µs"
    return f"{ns:+d} ns"


@dataclass
class _HostChecker:
    """Runs the checks of one host through its executor, collecting rows."""

    host: Host
    role: Role
    inventory: Inventory
    options: CheckOptions
    executor: Executor
    deadline_ns: int
    rows: list[CheckRow] = field(default_factory=list)
    _which: dict[str, str | None] = field(default_factory=dict)
    _uid: int | None = None
    _sudo: bool | None = None

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def inventory_path(self) -> str:
        return str(self.inventory.path)

    def run(self, argv: Sequence[str]) -> _Ran:
        remaining_s = (self.deadline_ns - time.monotonic_ns()) / 1e9
        if remaining_s <= 0:
            raise _OutOfTime
        timeout_s = min(self.options.command_timeout_s, remaining_s)
        try:
            done: subprocess.CompletedProcess[str] = self.executor.run(
                argv, check=False, timeout=timeout_s
            )
        except CommandError as exc:
            if exc.returncode is None and time.monotonic_ns() >= self.deadline_ns:
                raise _OutOfTime from exc
            if exc.returncode is None:
                raise
            return _Ran(exc.returncode, "", exc.stderr)
        return _Ran(done.returncode, done.stdout or "", done.stderr or "")

    def add(
        self, check: str, ok: bool | None, value: JsonScalar, message: str = ""
    ) -> None:
        self.rows.append(CheckRow(self.name, check, ok, value, message))

    def which(self, tool: str) -> str | None:
        if tool not in self._which:
            ran = self.run(which_cmd(tool))
            path = ran.stdout.strip().splitlines()[0] if ran.ok and ran.stdout else ""
            self._which[tool] = path or None
        return self._which[tool]

    # Each check adds its rows; ``guarded`` turns an exception into a failed row.

    def guarded(self, check: str, body: Callable[[], None]) -> None:
        try:
            body()
        except _OutOfTime:
            self.add(
                check,
                None,
                None,
                f"skipped: the time limit of {self.options.host_timeout_s:g} s for "
                f"{self.name} ran out; rerun, or raise the per-host time limit",
            )
        except Exception as exc:  # noqa: BLE001 - one check failing is a row
            self.add(
                check,
                False,
                None,
                f"checking {check} on {self.name} failed: {exc}; run the command by "
                f"hand on {self.name} to see why",
            )

    def check_access(self) -> None:
        """Log in with the first command; its outcome is the access rows."""
        ran = self.run(uid_cmd())
        user = self.host.ansible_user or "the current user"
        self.add("reachable", True, self.host.ansible_host)
        self.add("host-key", True, "known")
        self.add("authenticated", True, user)
        if ran.ok and ran.stdout.strip().isdigit():
            self._uid = int(ran.stdout.strip())

    def check_os(self) -> None:
        release = self.run(os_release_cmd())
        arch = self.run(arch_cmd())
        pretty = parse_os_release(release.stdout) if release.ok else None
        machine = arch.stdout.strip() if arch.ok else ""
        if pretty is None or not machine:
            missing = "/etc/os-release PRETTY_NAME" if pretty is None else "uname -m"
            self.add(
                "os",
                None,
                " ".join(p for p in (pretty, machine) if p) or None,
                f"unknown: could not read {missing} on {self.name}",
            )
            return
        self.add("os", True, f"{pretty} {machine}")

    def check_python(self) -> None:
        ran = self.run(python_version_cmd())
        want = ".".join(map(str, self.options.min_python))
        if ran.returncode == 127 or (not ran.ok and "not found" in ran.stderr):
            self.add(
                "python",
                False,
                None,
                f"python3 not found on {self.name}; install Python >= {want} "
                "(Raspberry Pi OS and Debian 12 'bookworm' ship 3.11)",
            )
            return
        version = parse_python_version(ran.stdout.strip() or ran.stderr.strip())
        if version is None:
            self.add(
                "python",
                False,
                None,
                f"`python3 --version` on {self.name} gave {ran.why()}; install "
                f"Python >= {want}",
            )
            return
        text = ".".join(map(str, version))
        if version[:2] < self.options.min_python:
            self.add(
                "python",
                False,
                text,
                f"Python {text} on {self.name} is older than {want}; install an OS "
                f"release with Python >= {want} (Raspberry Pi OS / Debian 12 "
                "'bookworm' or later)",
            )
            return
        self.add("python", True, text)

    def check_disk(self) -> None:
        path = self.options.disk_path
        if path is None:
            home = self.run(home_cmd())
            path = home.stdout.strip() if home.ok and home.stdout.strip() else "/"
        ran = self.run(df_cmd(path))
        available = parse_df_available(ran.stdout) if ran.ok else None
        if available is None:
            self.add(
                "disk",
                False,
                None,
                f"cannot read the free space of {path} on {self.name} "
                f"(`df -P -k {path}`: {ran.why()}); check that the directory exists",
            )
            return
        need = self.options.min_free_disk_bytes
        if available < need:
            self.add(
                "disk",
                False,
                available,
                f"only {_fmt_bytes(available)} free in {path} on {self.name}; "
                f"flowerbed needs {_fmt_bytes(need)} there (virtualenv, app, "
                "results): free some space or check a directory on a bigger disk",
            )
            return
        self.add("disk", True, available)

    def check_memory(self) -> None:
        ran = self.run(meminfo_cmd())
        available = parse_meminfo_available(ran.stdout) if ran.ok else None
        if available is None:
            self.add(
                "memory",
                None,
                None,
                f"unknown: no MemAvailable in /proc/meminfo on {self.name}",
            )
            return
        need = self.options.min_available_memory_bytes
        if available < need:
            self.add(
                "memory",
                False,
                available,
                f"only {_fmt_bytes(available)} of memory available on {self.name}; "
                f"training needs {_fmt_bytes(need)}: stop other services there or "
                "use a host with more memory",
            )
            return
        self.add("memory", True, available)

    def check_client_network(self, net: Network) -> None:
        iface = self.host.interface(net.name)
        key = f"interfaces.{net.name}"
        if iface is None:
            self.add(
                f"interface:{net.name}",
                None,
                None,
                f"{self.name} has no interface on {net.name} in "
                f"{self.inventory_path}; add {key} if campaigns use {net.name}",
            )
            return
        ran = self.run(addr_show_cmd(iface.ifname))
        states = parse_ip_addr(ran.stdout) if ran.ok else ()
        said = (
            f"the inventory says {net.name} is on {iface.ifname} with {iface.address}"
        )
        if not states:
            self.add(
                f"interface:{net.name}",
                False,
                None,
                f"interface {iface.ifname} missing on {self.name}: {said}; check "
                f"`ip -br addr` on {self.name} or fix {key} in {self.inventory_path}",
            )
            self.add(
                f"route:{net.name}",
                None,
                None,
                f"skipped: interface {iface.ifname} is missing",
            )
            return
        self.judge_interface(net, states[0], iface.address, key, said)
        self.guarded(
            f"route:{net.name}",
            functools.partial(self.check_route, net, iface.ifname, iface.address),
        )

    def judge_interface(
        self,
        net: Network,
        state: InterfaceState,
        address: ipaddress.IPv4Address,
        key: str,
        said: str,
    ) -> None:
        check = f"interface:{net.name}"
        found = [a for a in state.addresses if a.ip == address]
        shown = ", ".join(str(a) for a in state.addresses) or "no IPv4 address"
        if not found:
            self.add(
                check,
                False,
                shown,
                f"{state.ifname} on {self.name} has {shown}, not {address}: {said}; "
                f"give it the address (`ip addr add {address}/{net.subnet.prefixlen} "
                f"dev {state.ifname}` or the host's network configuration) or fix "
                f"{key}.ip in {self.inventory_path}",
            )
            return
        value = f"{state.ifname} {found[0]}"
        if not state.up:
            self.add(
                check,
                False,
                value,
                f"{state.ifname} on {self.name} is down; bring it up (`ip link "
                f"set {state.ifname} up` or the host's network configuration)",
            )
            return
        if not state.carrier:
            self.add(
                check,
                False,
                value,
                f"{state.ifname} on {self.name} has no carrier: check the cable, "
                "the WiFi association or the modem's attachment",
            )
            return
        self.add(check, True, value)

    def check_route(
        self, net: Network, ifname: str, address: ipaddress.IPv4Address
    ) -> None:
        check = f"route:{net.name}"
        target = net.server_address
        ran = self.run(route_get_cmd(target))
        route = parse_route_get(ran.stdout) if ran.ok else None
        if route is None:
            self.add(
                check,
                False,
                None,
                f"{self.name} has no route to the server's {net.name} address "
                f"{target} (`ip route get {target}`: {ran.why()}); check the "
                f"subnet on {ifname} ({net.subnet}) and the routes on {self.name}",
            )
            return
        value = f"dev {route.dev}" + (f" src {route.prefsrc}" if route.prefsrc else "")
        if route.dev != ifname:
            self.add(
                check,
                False,
                value,
                f"traffic from {self.name} to the server's {net.name} address "
                f"{target} leaves through {route.dev}, not {ifname}, so it would "
                f"not cross {net.name}; check `ip route get {target}` on "
                f"{self.name}: remove the route via {route.dev} that covers "
                f"{target} or fix interfaces.{net.name}.ifname in "
                f"{self.inventory_path}",
            )
            return
        if route.prefsrc is not None and route.prefsrc != str(address):
            value += f" (expected src {address})"
        self.add(check, True, value)

    def check_server_network(self, net: Network) -> None:
        check = f"interface:{net.name}"
        ran = self.run(addr_show_cmd())
        states = parse_ip_addr(ran.stdout) if ran.ok else ()
        holders = [
            s for s in states if any(a.ip == net.server_address for a in s.addresses)
        ]
        if not holders:
            self.add(
                check,
                False,
                None,
                f"no interface on {self.name} has the server's {net.name} address "
                f"{net.server_address}; add it to the interface on {net.subnet} or fix "
                f"networks.{net.name}.server_address in {self.inventory_path}",
            )
            return
        state = holders[0]
        if not state.up:
            self.add(
                check,
                False,
                state.ifname,
                f"{state.ifname} on {self.name} (with {net.server_address}) is down; "
                f"bring it up (`ip link set {state.ifname} up`)",
            )
            return
        self.add(check, True, f"{state.ifname} {net.server_address}")

    def check_clock(self) -> None:
        chronyc = self.which("chronyc")
        if chronyc is not None:
            self.check_chrony(chronyc)
            return
        no_offset = "unknown: only chrony reports the offset; install chrony"
        timedatectl = self.which("timedatectl")
        if timedatectl is None:
            self.add(
                "clock",
                None,
                "unknown",
                f"unknown: neither chronyc nor timedatectl on {self.name}; install "
                "chrony pointed at the lab server (`apt install chrony`)",
            )
            self.add("clock-offset", None, None, no_offset)
            return
        ran = self.run(timedatectl_sync_cmd(timedatectl))
        answer = ran.stdout.strip()
        if not ran.ok or answer not in ("yes", "no"):
            self.add(
                "clock",
                None,
                "unknown",
                f"unknown: timedatectl on {self.name} gave {ran.why()}; install "
                "chrony pointed at the lab server",
            )
        elif answer == "no":
            self.add(
                "clock",
                False,
                "not synchronised",
                f"the clock of {self.name} is not NTP-synchronised (timedatectl); "
                "install chrony pointed at the lab server, or enable NTP "
                "(`timedatectl set-ntp true`)",
            )
        else:
            self.add("clock", True, "synchronised (timedatectl)")
        self.add("clock-offset", None, None, no_offset)

    def check_chrony(self, chronyc: str) -> None:
        ran = self.run(chronyc_tracking_cmd(chronyc))
        tracking = parse_chronyc_tracking(ran.stdout) if ran.ok else None
        if tracking is None:
            self.add(
                "clock",
                False,
                None,
                f"chronyc on {self.name} cannot report tracking ({ran.why()}); start "
                "chronyd (`systemctl enable --now chrony`)",
            )
            self.add("clock-offset", None, None, "unknown: chronyd did not answer")
            return
        if not tracking.synchronised:
            self.add(
                "clock",
                False,
                "not synchronised",
                f"chrony on {self.name} is not synchronised; point it at the lab "
                "server over the management network (`server <server address> "
                "iburst` in /etc/chrony/chrony.conf) and wait for `chronyc "
                "tracking` to show it",
            )
            self.add("clock-offset", None, None, "unknown: chrony is not synchronised")
            return
        source = tracking.reference_name or tracking.reference_id
        self.add(
            "clock", True, f"chrony synchronised to {source} stratum {tracking.stratum}"
        )
        limit = self.options.max_clock_offset_ns
        if abs(tracking.offset_ns) > limit:
            self.add(
                "clock-offset",
                False,
                tracking.offset_ns,
                f"the clock of {self.name} is {_fmt_ns(tracking.offset_ns)} off NTP "
                f"time (limit {_fmt_ns(limit)}); wait for chrony to converge or "
                "check its source (`chronyc sources -v`)",
            )
            return
        self.add("clock-offset", True, tracking.offset_ns)

    def can_sudo(self) -> bool:
        if self._sudo is None:
            self._sudo = self.run(sudo_check_cmd()).ok
        return self._sudo

    def check_tool(self, tool: str) -> None:
        path = self.which(tool)
        package = TOOL_PACKAGES[tool]
        if path is None:
            self.add(
                tool,
                False,
                None,
                f"{tool} not found on {self.name}; install it (`apt install "
                f"{package}`)",
            )
            return
        if self._uid == 0:
            self.add(tool, True, f"{path} (root)")
            return
        needed = TOOL_CAPABILITIES[tool]
        getcap = self.which("getcap")
        if getcap is not None:
            caps = parse_getcap(self.run(getcap_cmd(path, getcap)).stdout)
            if needed <= caps:
                self.add(tool, True, f"{path} ({','.join(sorted(needed))})")
                return
        if self.can_sudo():
            self.add(tool, True, f"{path} (passwordless sudo)")
            return
        user = self.host.ansible_user or "the login user"
        caps_text = ",".join(sorted(needed))
        self.add(
            tool,
            False,
            path,
            f"{user} on {self.name} is not root and cannot use {tool}: give the "
            f"binary {caps_text.upper()} (`setcap {caps_text}+eip {path}`) or allow "
            f"passwordless sudo for {user}",
        )

    def check_all(self) -> None:
        self.guarded("os", self.check_os)
        self.guarded("python", self.check_python)
        self.guarded("disk", self.check_disk)
        self.guarded("memory", self.check_memory)
        for net in self.inventory.networks:
            check_network = (
                self.check_server_network
                if self.role == "server"
                else self.check_client_network
            )
            self.guarded(f"interface:{net.name}", functools.partial(check_network, net))
        self.guarded("clock", self.check_clock)
        for tool in ("tcpdump", "tc"):
            self.guarded(tool, functools.partial(self.check_tool, tool))


def access_rows(host: Host, inventory: Inventory, exc: BaseException) -> list[CheckRow]:
    """The rows of a host whose executor could not be made or could not log in.

    An exception with a ``kind`` attribute (``testbed.ssh.SSHError``) says which
    step failed; any other exception is a failure of the host with its message.
    """
    name, where = host.name, f"{host.ansible_host}:{host.ansible_port}"
    path = inventory.path
    user = host.ansible_user or "the current user"
    kind = getattr(exc, "kind", None)
    if kind == "auth":
        return [
            CheckRow(name, "reachable", True, host.ansible_host),
            CheckRow(name, "host-key", True, "known"),
            CheckRow(
                name,
                "authenticated",
                False,
                user,
                f"{name} refused the login as {user}: {exc}; install your key "
                f"(`ssh-copy-id -p {host.ansible_port} {host.ansible_user or ''}"
                f"{'@' if host.ansible_user else ''}{host.ansible_host}`) or load it "
                f"in ssh-agent, or fix ansible_user in {path}",
            ),
        ]
    if kind in ("unknown-host-key", "changed-host-key"):
        if kind == "unknown-host-key":
            message = (
                f"the host key of {name} ({where}) is not in known_hosts: {exc}; "
                "compare the fingerprint with the one shown on the host's console "
                "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then rerun "
                "with --accept-new to trust and save it"
            )
        else:
            message = (
                f"THE HOST KEY OF {name} ({where}) HAS CHANGED: {exc}; if {name} was "
                f"re-imaged, remove the old key (`ssh-keygen -R {host.ansible_host}`) "
                "and rerun with --accept-new; otherwise do not connect: someone may "
                "be intercepting the connection"
            )
        return [
            CheckRow(name, "reachable", True, host.ansible_host),
            CheckRow(name, "host-key", False, kind, message),
            CheckRow(
                name,
                "authenticated",
                None,
                None,
                "not tried: the host key was not accepted",
            ),
        ]
    if kind == "unreachable":
        message = (
            f"cannot reach {name} at {where}: {exc}; check that it is powered on and "
            f"on the management network (`ping {host.ansible_host}`), that sshd runs "
            f"there, and ansible_host/ansible_port of {name} in {path}"
        )
    else:
        what = f" ({kind})" if kind is not None else ""
        message = (
            f"connecting to {name} at {where} failed{what}: {exc}; fix that, then "
            "rerun the check"
        )
    return [CheckRow(name, "reachable", False, type(exc).__name__, message)]


def check_host(
    host: Host,
    role: Role,
    inventory: Inventory,
    factory: ExecutorFactory,
    options: CheckOptions,
) -> list[CheckRow]:
    """All rows of one host; never raises for problems of the host."""
    deadline_ns = time.monotonic_ns() + int(options.host_timeout_s * 1e9)
    try:
        executor = factory()
    except Exception as exc:  # noqa: BLE001 - the host's failure is its rows
        return access_rows(host, inventory, exc)
    try:
        checker = _HostChecker(host, role, inventory, options, executor, deadline_ns)
        try:
            checker.check_access()
        except _OutOfTime:
            message = (
                f"logging in to {host.name} took longer than the time limit of "
                f"{options.host_timeout_s:g} s; check its network and sshd"
            )
            return [CheckRow(host.name, "time-limit", False, None, message)]
        except Exception as exc:  # noqa: BLE001
            return access_rows(host, inventory, exc)
        checker.check_all()
        return checker.rows
    finally:
        close = getattr(executor, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001, S110 - a failing close loses no result
                pass


def _hosts_of(inventory: Inventory) -> Iterator[tuple[Host, Role]]:
    yield inventory.server, "server"
    for client in inventory.clients:
        yield client, "client"


def _rows_of(
    future: concurrent.futures.Future[list[CheckRow]], name: str
) -> list[CheckRow]:
    exc = future.exception()
    if exc is None:
        return future.result()
    message = (
        f"checking {name} stopped on an internal error: {exc!r}; this is a "
        "flowerbed bug, report it with this message"
    )
    return [CheckRow(name, "internal-error", False, None, message)]


def check_inventory(
    inventory: Inventory,
    executors: Mapping[str, ExecutorFactory],
    options: CheckOptions | None = None,
    progress: Callable[[str, tuple[CheckRow, ...]], None] | None = None,
) -> CheckReport:
    """Check the server and every client of ``inventory`` in parallel.

    Parameters
    ----------
    inventory
        The cluster to check; its server is checked too (give it a local
        executor when the check runs on the server).
    executors
        Host name -> zero-argument callable returning that host's ``Executor``;
        it may connect (and raise an error with a ``kind``) or connect lazily.
    options
        Thresholds and time limits; the defaults suit a Raspberry Pi lab.
    progress
        Called in the calling thread with each host's name and rows as soon as
        that host is done (for a progress display).

    Returns
    -------
    CheckReport
        The rows of every host; ``report.ok`` is False if any check failed.
    """
    options = options or CheckOptions()
    hosts = list(_hosts_of(inventory))
    workers = max(1, min(options.max_workers, len(hosts)))
    results: dict[str, list[CheckRow]] = {}
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="inventory-check"
    )
    futures: dict[concurrent.futures.Future[list[CheckRow]], str] = {}
    for host, role in hosts:
        factory = executors.get(host.name)
        if factory is None:
            results[host.name] = [
                CheckRow(
                    host.name,
                    "reachable",
                    False,
                    None,
                    f"no executor for {host.name}: the caller gave none; this is a "
                    "flowerbed bug, report it",
                )
            ]
            continue
        future = pool.submit(check_host, host, role, inventory, factory, options)
        futures[future] = host.name
    # Hosts beyond the pool's size wait for a worker, so their limit starts later.
    waves = math.ceil(len(futures) / workers) if futures else 0
    # The grace covers a command that ignores its timeout (a hung SSH channel).
    budget_s = options.host_timeout_s * waves + min(5.0, options.host_timeout_s)
    try:
        for future in concurrent.futures.as_completed(futures, timeout=budget_s):
            name = futures[future]
            results[name] = _rows_of(future, name)
            if progress is not None:
                progress(name, tuple(results[name]))
    except TimeoutError:
        pass
    for name in futures.values():
        if name not in results:
            message = (
                f"checking {name} did not finish within {budget_s:g} s: a command "
                f"hangs there; log in to {name} and look for a stuck mount, DNS "
                "lookup or sshd"
            )
            results[name] = [CheckRow(name, "time-limit", False, None, message)]
    pool.shutdown(wait=False, cancel_futures=True)
    order = [host.name for host, _ in hosts]
    return CheckReport(
        inventory=str(inventory.path),
        hosts=tuple(order),
        roles=tuple(role for _, role in hosts),
        rows=tuple(row for name in order for row in results[name]),
        networks=inventory.network_names,
    )


# --- rendering --------------------------------------------------------------------

MARKS: Mapping[bool | None, str] = {True: "✓", False: "✗", None: "?"}


def columns(report: CheckReport) -> tuple[str, ...]:
    """The table's check groups: access, system, one per network, clock, tools."""
    return (
        "ssh",
        "os",
        "python",
        "disk",
        "memory",
        *report.networks,
        "clock",
        "tcpdump",
        "tc",
    )


def group_mark(rows: Sequence[CheckRow]) -> str:
    """✗ if any row failed, ? if any is unknown, ✓ if all passed, - if none ran."""
    if not rows:
        return "-"
    if any(row.ok is False for row in rows):
        return MARKS[False]
    if any(row.ok is None for row in rows):
        return MARKS[None]
    return MARKS[True]


def render_text(report: CheckReport) -> str:
    """A compact table (one line per host), then the failures and unknowns.

    Marks: ✓ passed, ✗ failed, ? unknown or skipped, - not checked (the host
    could not be reached). Each failure line says what to do.
    """
    heads = columns(report)
    name_width = max([len("host"), *(len(h) for h in report.hosts)])
    widths = [max(len(h), 1) for h in heads]
    lines = [
        "  ".join(
            [
                f"{'host':<{name_width}}",
                *(f"{h:<{w}}" for h, w in zip(heads, widths, strict=True)),
            ]
        ).rstrip()
    ]
    for host in report.hosts:
        rows = report.host_rows(host)
        cells = [
            group_mark([r for r in rows if r.group == head]).ljust(width)
            for head, width in zip(heads, widths, strict=True)
        ]
        lines.append("  ".join([f"{host:<{name_width}}", *cells]).rstrip())
    problems: list[CheckRow] = []
    said: set[tuple[str, str]] = set()
    for row in report.rows:
        # An unknown that follows a problem of its group (the route of a missing
        # interface, the offset of an unsynchronised clock) repeats it: JSON only.
        if row.ok is True or (row.ok is None and (row.host, row.group) in said):
            continue
        problems.append(row)
        said.add((row.host, row.group))
    if problems:
        lines.append("")
        for row in problems:
            lines.append(f"{MARKS[row.ok]} {row.host} {row.check}: {row.message}")
    failed = [host for host in report.hosts if not report.host_ok(host)]
    lines.append("")
    if failed:
        lines.append(
            f"{len(failed)} of {len(report.hosts)} hosts have problems: "
            + ", ".join(failed)
        )
    else:
        lines.append(f"all {len(report.hosts)} hosts passed")
    return "\n".join(lines)
