"""The checks of one host: access, OS, Python, disk, memory, networks, clock and
tools, each a row; a failed check is a row with what to do, never an exception."""

from __future__ import annotations

import functools
import ipaddress
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

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
from testbed.lab.check_report import CheckOptions, CheckRow, JsonScalar, Role
from testbed.transport.executor import CommandError, Executor

# Capabilities a tool needs when it does not run as root.
TOOL_CAPABILITIES: Mapping[str, frozenset[str]] = {
    "tcpdump": frozenset({"cap_net_raw"}),
    "tc": frozenset({"cap_net_admin"}),
}
TOOL_PACKAGES: Mapping[str, str] = {"tcpdump": "tcpdump", "tc": "iproute2"}


# --- per-host checking ------------------------------------------------------------


class HostOutOfTime(Exception):
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
class HostChecker:
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
            raise HostOutOfTime
        timeout_s = min(self.options.command_timeout_s, remaining_s)
        try:
            done: subprocess.CompletedProcess[str] = self.executor.run(
                argv, check=False, timeout=timeout_s
            )
        except CommandError as exc:
            if exc.returncode is None and time.monotonic_ns() >= self.deadline_ns:
                raise HostOutOfTime from exc
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
        except HostOutOfTime:
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
