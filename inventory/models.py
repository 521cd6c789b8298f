"""Typed, frozen models of a cluster: link profiles, networks, hosts, the inventory."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from inventory.traces import BandwidthTrace

NodeConfigValue = str | int | float | bool

# Linux interface names: at most 15 bytes, no slash or whitespace.
_IFNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
# Host and network names end up in namespace names, file names and Flower node config.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


DEFAULT_FLOWERBED_DIR = "flowerbed"


def is_valid_name(name: str) -> bool:
    """Tell whether ``name`` is usable as a host, network or cluster name."""
    return bool(_NAME.match(name))


def is_valid_ifname(name: str) -> bool:
    """Tell whether ``name`` is a valid Linux interface name."""
    return bool(_IFNAME.match(name))


@dataclass(frozen=True)
class LinkProfile:
    """How a network behaves between the server and one client, per direction.

    Rates are in Mbit/s; ``delay_ms`` is one-way and ``jitter_ms`` its spread;
    ``loss_pct`` is the random loss per direction in percent. ``source`` says
    where the numbers come from, so a report can cite it. A direction with a
    ``*_trace`` has its rate replayed from the trace (inventory/traces.py); its
    ``*_mbit`` is then the trace's mean.
    """

    downlink_mbit: float
    uplink_mbit: float
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    source: str = ""
    downlink_trace: BandwidthTrace | None = None
    uplink_trace: BandwidthTrace | None = None

    def __post_init__(self) -> None:
        for name in ("downlink_mbit", "uplink_mbit"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0 Mbit/s, got {value!r}")
        for name in ("delay_ms", "jitter_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.loss_pct < 100:
            raise ValueError(f"loss_pct must be in [0, 100), got {self.loss_pct!r}")

    @property
    def needs_delay(self) -> bool:
        """Whether the profile asks for delay or jitter (netem territory)."""
        return self.delay_ms > 0 or self.jitter_ms > 0

    @property
    def traced(self) -> bool:
        """Whether a direction replays a bandwidth trace."""
        return self.downlink_trace is not None or self.uplink_trace is not None

    def trace(self, direction: str) -> BandwidthTrace | None:
        """The trace of ``direction`` (``downlink`` or ``uplink``), if any."""
        return self.downlink_trace if direction == "downlink" else self.uplink_trace


@dataclass(frozen=True)
class Network:
    """A network under test: subnet, the server's address on it, link profile."""

    name: str
    subnet: ipaddress.IPv4Network
    server_address: ipaddress.IPv4Address
    profile: LinkProfile


@dataclass(frozen=True)
class Interface:
    """A client's interface on one network (``wlan0`` with 10.0.2.11 on ``wifi``)."""

    network: str
    ifname: str
    address: ipaddress.IPv4Address


@dataclass(frozen=True)
class Host:
    """One machine of the inventory, with the variables inheritance gave it."""

    name: str
    ansible_host: str
    ansible_user: str | None = None
    ansible_port: int = 22
    groups: tuple[str, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    node_config: tuple[tuple[str, NodeConfigValue], ...] = ()
    # SSH private key (ansible_ssh_private_key_file); None: the SSH agent.
    ssh_key_file: Path | None = None
    # Where flowerbed keeps its virtualenv, app bundle, keys and run files on the
    # host; relative paths are under the login's home directory.
    flowerbed_dir: str = DEFAULT_FLOWERBED_DIR
    # The Python that builds the virtualenv (ansible_python_interpreter).
    python: str = "python3"
    # Where the server's wheelhouse lands (flowerbed_wheelhouse); None:
    # <flowerbed_dir>/wheelhouse. Hosts sharing a disk may share it.
    wheelhouse_dir: str | None = None
    # CPU (cores, fractional) and memory the host may use. On the emulated
    # cluster they become cgroup limits on every process of the node; a real lab
    # records them in the manifest. None: the emulated cluster's default share.
    cpu_quota: float | None = None
    memory_mb: int | None = None
    # The board the host is or stands for (``device_class: pi4``,
    # inventory/device_classes.py). Its quota and memory fill cpu_quota and
    # memory_mb unless those are given; a real lab only records it.
    device_class: str | None = None
    # Where cpu_quota came from: "inventory" (cpu_quota given), "device class
    # pi4", or None (no quota: the emulated cluster's default share).
    cpu_quota_source: str | None = None

    def interface(self, network: str) -> Interface | None:
        """Return this host's interface on ``network``, or None if it has none."""
        for iface in self.interfaces:
            if iface.network == network:
                return iface
        return None

    @property
    def node_config_dict(self) -> dict[str, NodeConfigValue]:
        """The node config as a plain dict."""
        return dict(self.node_config)


@dataclass(frozen=True)
class Inventory:
    """A validated cluster description.

    ``server`` is the single host of group ``server``; ``clients`` the hosts of
    group ``clients`` in file order. ``management`` is the unshaped network the
    hosts' ``ansible_host`` addresses live on, when the inventory declares one.
    """

    path: Path
    name: str
    server: Host
    clients: tuple[Host, ...]
    networks: tuple[Network, ...]
    management: Network | None = None
    superlink_port: int = 8000
    vars: tuple[tuple[str, object], ...] = field(default=(), compare=False)

    def network(self, name: str) -> Network:
        """Return the network called ``name``; KeyError names the known ones."""
        for net in self.networks:
            if net.name == name:
                return net
        known = ", ".join(n.name for n in self.networks)
        raise KeyError(f"unknown network {name!r}; the inventory has: {known}")

    @property
    def network_names(self) -> tuple[str, ...]:
        """Names of the networks under test, in file order."""
        return tuple(n.name for n in self.networks)

    def var(self, key: str, default: object = None) -> object:
        """The value of ``all.vars[key]``, or ``default``."""
        return dict(self.vars).get(key, default)

    @property
    def known_hosts(self) -> Path | None:
        """The SSH known_hosts file the inventory names (``ssh_known_hosts`` in
        all.vars, relative to the inventory file), or None."""
        value = self.var("ssh_known_hosts")
        if not isinstance(value, str) or not value:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.path.parent / path

    def client(self, name: str) -> Host:
        """Return the client host called ``name``."""
        for host in self.clients:
            if host.name == name:
                return host
        raise KeyError(f"unknown client {name!r}")
