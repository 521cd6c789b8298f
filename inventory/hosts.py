"""Each host of the inventory: its connection, interfaces and node_config, checked."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inventory.device_classes import DeviceClass, device_class, host_core_speed
from inventory.groups import GroupTree, HostDef, Var
from inventory.models import (
    DEFAULT_FLOWERBED_DIR,
    Host,
    Interface,
    Network,
    NodeConfigValue,
    is_valid_ifname,
)
from inventory.networks import NetworkSettings
from inventory.profiles import did_you_mean
from inventory.reading import Parts, Problems
from inventory.values import (
    CAPACITY_RATIO_KEY,
    BadValue,
    capacity_ratio,
    check_usable,
    cpu_quota,
    describe,
    ipv4,
    memory_mb,
    node_config_value,
    nonempty_text,
    port_number,
)

INTERFACE_KEYS = ("ifname", "ip")
DEFAULT_SSH_PORT = 22


class HostBuilder:
    """Each host's model from its resolved variables; problems go to ``problems``."""

    def __init__(
        self, problems: Problems, tree: GroupTree, nets: NetworkSettings
    ) -> None:
        self.error = problems.error
        self.bad = problems.bad
        self.path = problems.path
        self.tree = tree
        self.nets = nets

    def build_host(
        self,
        host: HostDef,
        is_server: bool,
        management: Network | None,
    ) -> Host:
        groups = self.tree.host_groups(host.name)
        host_vars = self.tree.host_vars(host, groups)
        ansible_host = self.host_value(host, host_vars, "ansible_host", nonempty_text)
        user_var = host_vars.get("ansible_user")
        user = None
        if user_var is not None and user_var.value is not None:
            user = self.host_value(host, host_vars, "ansible_user", nonempty_text)
        port = self.host_value(host, host_vars, "ansible_port", port_number)
        key_file = self.host_value(
            host, host_vars, "ansible_ssh_private_key_file", nonempty_text
        )
        flowerbed_dir = self.host_value(host, host_vars, "flowerbed_dir", nonempty_text)
        python = self.host_value(
            host, host_vars, "ansible_python_interpreter", nonempty_text
        )
        wheelhouse = self.host_value(
            host, host_vars, "flowerbed_wheelhouse", nonempty_text
        )
        quota = self.host_value(host, host_vars, "cpu_quota", cpu_quota)
        memory = self.host_value(host, host_vars, "memory_mb", memory_mb)
        board = self.host_value(host, host_vars, "device_class", device_class)
        quota_source = "inventory" if isinstance(quota, float) else None
        if isinstance(board, DeviceClass):
            speed = self.host_value(host, host_vars, "host_core_speed", host_core_speed)
            if not isinstance(quota, float):
                quota = board.cpu_quota(speed if isinstance(speed, float) else 1.0)
                quota_source = f"device class {board.name}"
            if not isinstance(memory, int):
                memory = board.memory_mb
        self.check_management_address(host, host_vars, ansible_host, management)
        interfaces = self.interfaces(host, host_vars.get("interfaces"), is_server)
        node_config = self.node_config(host, host_vars.get("node_config"))
        return Host(
            name=host.name,
            ansible_host=ansible_host if isinstance(ansible_host, str) else host.name,
            ansible_user=user if isinstance(user, str) else None,
            ansible_port=port if isinstance(port, int) else DEFAULT_SSH_PORT,
            groups=groups,
            interfaces=interfaces,
            node_config=node_config,
            ssh_key_file=self.local_path(key_file),
            flowerbed_dir=(
                flowerbed_dir.replace("{host}", host.name)
                if isinstance(flowerbed_dir, str)
                else DEFAULT_FLOWERBED_DIR
            ),
            python=python if isinstance(python, str) else "python3",
            wheelhouse_dir=(
                wheelhouse.replace("{host}", host.name)
                if isinstance(wheelhouse, str)
                else None
            ),
            cpu_quota=quota if isinstance(quota, float) else None,
            memory_mb=memory if isinstance(memory, int) else None,
            device_class=board.name if isinstance(board, DeviceClass) else None,
            cpu_quota_source=quota_source,
        )

    def local_path(self, value: object) -> Path | None:
        """A path on this machine named in the inventory: ~ expanded, relative
        to the inventory file's folder."""
        if not isinstance(value, str):
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.path.parent / path

    def host_value(
        self, host: HostDef, host_vars: dict[str, Var], key: str, check: Any
    ) -> object:
        var = host_vars.get(key)
        if var is None:
            return None
        try:
            return check(var.value)
        except BadValue as bad:
            self.bad(bad, var.source, (key,), host.name)
            return None

    def check_management_address(
        self,
        host: HostDef,
        host_vars: dict[str, Var],
        ansible_host: object,
        management: Network | None,
    ) -> None:
        var = host_vars.get("ansible_host")
        if var is None or not isinstance(ansible_host, str):
            return
        try:
            address = ipaddress.IPv4Address(ansible_host.strip())
        except ValueError:
            return  # a DNS name or an IPv6 address: nothing to compare
        if address.is_loopback:
            return  # several hosts on 127.0.0.1 with different ports are fine
        if management is not None and address not in management.subnet:
            self.error(
                f"{address} is outside management subnet {management.subnet}",
                f"give {host.name} a management address inside {management.subnet}, "
                "or change all.vars.management.subnet",
                root=var.source,
                parts=("ansible_host",),
                host=host.name,
            )
        owner = "<server>" if host.name in self.tree.servers else host.name
        self.nets.claim(
            address,
            (owner, "(management)"),
            f"{host.name}'s management address (ansible_host)",
            host.name,
            var.source,
            ("ansible_host",),
        )

    def interfaces(
        self, host: HostDef, var: Var | None, is_server: bool
    ) -> tuple[Interface, ...]:
        if var is None or var.value is None:
            return ()
        if not isinstance(var.value, Mapping):
            self.error(
                f"interfaces must map network names to {{ifname, ip}}, got "
                f"{describe(var.value)}",
                "write 'interfaces: {wifi: {ifname: wlan0, ip: 10.77.2.11}}'",
                root=var.source,
                parts=("interfaces",),
                host=host.name,
            )
            return ()
        found: list[Interface] = []
        ifnames: dict[str, str] = {}
        for network, spec in var.value.items():
            iface = self.interface(host, network, spec, var.source, is_server)
            if iface is None:
                continue
            if iface.ifname in ifnames:
                self.error(
                    f"ifname {iface.ifname} is already used for network "
                    f"{ifnames[iface.ifname]!r}",
                    f"give each of {host.name}'s interfaces its own name",
                    root=var.source,
                    parts=("interfaces", network, "ifname"),
                    host=host.name,
                )
                continue
            ifnames[iface.ifname] = iface.network
            found.append(iface)
        return tuple(found)

    def interface(
        self,
        host: HostDef,
        network: object,
        spec: object,
        root: object,
        is_server: bool,
    ) -> Interface | None:
        parts: Parts = ("interfaces", network)
        if network in self.nets.invalid_networks:
            return None  # its name was already reported
        if not isinstance(network, str) or network not in self.nets.declared:
            known = ", ".join(self.nets.declared) or "none"
            hint = ""
            if isinstance(network, str):
                hint = did_you_mean(network, self.nets.declared)
            self.error(
                f"unknown network {network!r}{hint}; all.vars.networks has: {known}",
                "use one of the declared networks, or declare this one under "
                "all.vars.networks",
                root=root,
                parts=parts,
                host=host.name,
            )
            return None
        if not isinstance(spec, Mapping):
            self.error(
                f"an interface is a mapping with ifname and ip, got {describe(spec)}",
                f"write '{network}: {{ifname: eth0, ip: <address>}}'",
                root=root,
                parts=parts,
                host=host.name,
            )
            return None
        good = True
        for key in spec:
            if key not in INTERFACE_KEYS:
                good = False
                hint = did_you_mean(key, INTERFACE_KEYS) if isinstance(key, str) else ""
                self.error(
                    f"unknown interface key {key!r}{hint}",
                    "an interface has only ifname and ip",
                    root=root,
                    parts=(*parts, key),
                    host=host.name,
                )
        for key in INTERFACE_KEYS:
            if key not in spec:
                good = False
                self.error(
                    f"interface on {network!r} has no {key}",
                    f"add {key} to interfaces.{network} of {host.name}",
                    root=root,
                    parts=parts,
                    host=host.name,
                )
        if not good:
            return None
        ifname = spec["ifname"]
        if not isinstance(ifname, str) or not is_valid_ifname(ifname):
            good = False
            self.error(
                f"{ifname!r} is not a valid Linux interface name (1-15 letters, "
                "digits, '_', '.', ':', '-')",
                "use the name 'ip link' shows on the host, like wlan0",
                root=root,
                parts=(*parts, "ifname"),
                host=host.name,
            )
        address = self.interface_address(host, network, spec["ip"], root, is_server)
        if not good or address is None or not isinstance(ifname, str):
            return None
        return Interface(network=network, ifname=ifname, address=address)

    def interface_address(
        self, host: HostDef, network: str, value: object, root: object, is_server: bool
    ) -> ipaddress.IPv4Address | None:
        parts: Parts = ("interfaces", network, "ip")
        try:
            address = ipv4(value)
            net = self.nets.networks.get(network)
            if net is not None:
                check_usable(address, net.subnet, network)
        except BadValue as bad:
            fix = bad.fix.replace("give an address", f"give {host.name} an address")
            self.error(bad.problem, fix, root=root, parts=parts, host=host.name)
            return None
        if is_server:
            net = self.nets.networks.get(network)
            if net is not None and address != net.server_address:
                self.error(
                    f"the server's ip {address} on {network!r} differs from "
                    f"networks.{network}.server_address {net.server_address}",
                    "make them the same address",
                    root=root,
                    parts=parts,
                    host=host.name,
                )
                return None
        owner = "<server>" if is_server else host.name
        self.nets.claim(
            address,
            (owner, network),
            f"{host.name}'s address on {network!r}",
            host.name,
            root,
            parts,
        )
        return address

    def node_config(
        self, host: HostDef, var: Var | None
    ) -> tuple[tuple[str, NodeConfigValue], ...]:
        if var is None or var.value is None:
            return ()
        if not isinstance(var.value, Mapping):
            self.error(
                f"node_config must be a mapping, got {describe(var.value)}",
                "write 'node_config: {partition-id: 0}'",
                root=var.source,
                parts=("node_config",),
                host=host.name,
            )
            return ()
        items: list[tuple[str, NodeConfigValue]] = []
        for key, value in var.value.items():
            try:
                items.append((nonempty_text(key), node_config_value(value)))
                if key == CAPACITY_RATIO_KEY:
                    capacity_ratio(value)
            except BadValue as bad:
                self.bad(bad, var.source, ("node_config", key), host.name)
        return tuple(items)
