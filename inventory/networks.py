"""The cluster-wide settings: name, SuperLink port, the networks and their addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inventory.errors import InventoryError
from inventory.groups import Var
from inventory.models import Network, is_valid_name
from inventory.profiles import (
    DEFAULT_PROFILES,
    UNSHAPED,
    ProfileError,
    did_you_mean,
    resolve_profile,
)
from inventory.reading import Parts, Problems, line_of
from inventory.traces import BandwidthTrace, TraceError, read_trace
from inventory.values import (
    BadValue,
    check_usable,
    describe,
    ipv4,
    ipv4_network,
    port_number,
)

NETWORK_KEYS = ("subnet", "server_address", "profile")
MANAGEMENT_KEYS = ("subnet", "server_address")
MANAGEMENT = "management"
DEFAULT_SUPERLINK_PORT = 8000


@dataclass(frozen=True)
class Claim:
    """An IPv4 address taken by one host on one network."""

    address: ipaddress.IPv4Address
    owner: tuple[str, str]
    label: str
    host: str | None
    root: object
    parts: Parts


class NetworkSettings:
    """The networks under test, the management network, and every address claimed."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.error = problems.error
        self.bad = problems.bad
        self.path = problems.path
        self.declared: list[str] = []
        self.networks: dict[str, Network] = {}
        self.claims: list[Claim] = []
        self.invalid_networks: list[object] = []

    def cluster_name(self, var: Var | None) -> str:
        if var is None:
            if is_valid_name(self.path.stem):
                return self.path.stem
            self.error(
                f"the file name {self.path.stem!r} is not a valid cluster name",
                "set all.vars.cluster_name (letters, digits, '_', '.', '-')",
            )
            return "invalid"
        if not isinstance(var.value, str) or not is_valid_name(var.value):
            self.error(
                f"{var.value!r} is not a valid cluster name",
                "use letters, digits, '_', '.', '-' (at most 63, starting with a "
                "letter or digit)",
                root=var.source,
                parts=("cluster_name",),
            )
            return "invalid"
        return var.value

    def superlink_port(self, var: Var | None) -> int:
        if var is None:
            return DEFAULT_SUPERLINK_PORT
        try:
            return port_number(var.value)
        except BadValue as bad:
            self.bad(bad, var.source, ("superlink_port",), None)
            return DEFAULT_SUPERLINK_PORT

    def check_keys(
        self,
        spec: Mapping[Any, Any],
        allowed: Sequence[str],
        root: object,
        parts: Parts,
    ) -> bool:
        good = True
        for key in spec:
            if key not in allowed:
                good = False
                hint = did_you_mean(key, allowed) if isinstance(key, str) else ""
                self.error(
                    f"unknown key {key!r}{hint}",
                    f"use only: {', '.join(allowed)}",
                    root=root,
                    parts=(*parts, key),
                )
        return good

    def subnet_and_server(
        self, spec: Mapping[Any, Any], name: str, root: object, parts: Parts
    ) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address] | None:
        found: dict[str, Any] = {}
        for key, check in (("subnet", ipv4_network), ("server_address", ipv4)):
            if key not in spec:
                self.error(
                    f"network {name!r} has no {key}",
                    f"add {key} to {'.'.join(str(p) for p in parts)}",
                    root=root,
                    parts=parts,
                )
                continue
            try:
                found[key] = check(spec[key])
            except BadValue as bad:
                self.bad(bad, root, (*parts, key), None)
        if len(found) != 2:
            return None
        try:
            check_usable(found["server_address"], found["subnet"], name)
        except BadValue as bad:
            fix = bad.fix.replace("give an address", "give the server an address")
            self.error(bad.problem, fix, root=root, parts=(*parts, "server_address"))
            return None
        return found["subnet"], found["server_address"]

    def parse_networks(self, var: Var | None) -> None:
        if var is None or var.value is None:
            return
        if not isinstance(var.value, Mapping):
            self.error(
                f"networks must map network names to their settings, got "
                f"{describe(var.value)}",
                "write 'networks:' then one 'name: {subnet: ..., server_address: ..., "
                "profile: ...}' per network",
                root=var.source,
                parts=("networks",),
            )
            return
        for name, spec in var.value.items():
            parts: Parts = ("networks", name)
            if not isinstance(name, str) or not is_valid_name(name):
                self.error(
                    f"{name!r} is not a valid network name",
                    "use letters, digits, '_', '.', '-' (at most 63, starting with a "
                    "letter or digit)",
                    root=var.source,
                    parts=parts,
                )
                self.invalid_networks.append(name)
                continue
            if name == MANAGEMENT:
                self.error(
                    f"{MANAGEMENT!r} names the control network (all.vars.management), "
                    "not a network under test",
                    "rename this network",
                    root=var.source,
                    parts=parts,
                )
                self.invalid_networks.append(name)
                continue
            self.declared.append(name)
            network = self.parse_network(name, spec, var.source, parts)
            if network is not None:
                self.networks[name] = network

    def parse_network(
        self, name: str, spec: object, root: object, parts: Parts
    ) -> Network | None:
        if not isinstance(spec, Mapping):
            self.error(
                f"network {name!r} must be a mapping, got {describe(spec)}",
                "give it subnet, server_address and profile",
                root=root,
                parts=parts,
            )
            return None
        self.check_keys(spec, NETWORK_KEYS, root, parts)
        addresses = self.subnet_and_server(spec, name, root, parts)
        profile_spec = spec.get("profile", name if name in DEFAULT_PROFILES else None)
        if profile_spec is None:
            self.error(
                f"network {name!r} has no profile",
                f"add 'profile:' with one of {', '.join(DEFAULT_PROFILES)}, or a "
                "mapping with downlink_mbit and uplink_mbit",
                root=root,
                parts=parts,
            )
            return None
        where = ".".join(str(p) for p in (*parts, "profile"))
        try:
            profile = resolve_profile(profile_spec, where, self.load_trace)
        except ProfileError as err:
            sub = (err.key[len(where) + 1 :],) if err.key != where else ()
            self.error(err.problem, err.fix, root=root, parts=(*parts, "profile", *sub))
            return None
        except TraceError as err:
            self.trace_error(err, root, (*parts, "profile"))
            return None
        if addresses is None:
            return None
        subnet, server_address = addresses
        self.claim(
            server_address,
            ("<server>", name),
            f"the server's address on {name!r}",
            None,
            root,
            (*parts, "server_address"),
        )
        return Network(name, subnet, server_address, profile)

    def load_trace(self, written: str) -> BandwidthTrace:
        """The trace a profile names; a relative path is the inventory file's."""
        path = Path(written).expanduser()
        if not path.is_absolute():
            path = self.path.parent / path
        return read_trace(path)

    def trace_error(self, err: TraceError, root: object, parts: Parts) -> None:
        """Report a bad trace at its own file and line, naming the profile."""
        key = err.key or ".".join(str(p) for p in parts)
        line = line_of(root, tuple(key.split(".")))
        at = f"{self.path}:{line}" if line is not None else str(self.path)
        self.problems.errors.append(
            InventoryError(
                err.path,
                f"{err.problem} (the trace of {key}, {at})",
                err.fix,
                line=err.line,
            )
        )

    def parse_management(self, var: Var | None) -> Network | None:
        if var is None or var.value is None:
            return None
        parts: Parts = ("management",)
        if not isinstance(var.value, Mapping):
            self.error(
                f"management must be a mapping, got {describe(var.value)}",
                "give it subnet and server_address",
                root=var.source,
                parts=parts,
            )
            return None
        self.check_keys(var.value, MANAGEMENT_KEYS, var.source, parts)
        addresses = self.subnet_and_server(var.value, "management", var.source, parts)
        if addresses is None:
            return None
        self.claim(
            addresses[1],
            ("<server>", "(management)"),
            "the server's management address",
            None,
            var.source,
            (*parts, "server_address"),
        )
        return Network(MANAGEMENT, addresses[0], addresses[1], UNSHAPED)

    def claim(
        self,
        address: ipaddress.IPv4Address,
        owner: tuple[str, str],
        label: str,
        host: str | None,
        root: object,
        parts: Parts,
    ) -> None:
        self.claims.append(Claim(address, owner, label, host, root, parts))

    def check_addresses(self) -> None:
        first: dict[ipaddress.IPv4Address, Claim] = {}
        for claim in self.claims:
            earlier = first.setdefault(claim.address, claim)
            if earlier.owner != claim.owner:
                self.error(
                    f"{claim.address} is already {earlier.label}",
                    "change one of the two: every host needs its own address on "
                    "every network",
                    root=claim.root,
                    parts=claim.parts,
                    host=claim.host,
                )

    def check_overlaps(
        self, management: Network | None, cluster: dict[str, Var]
    ) -> None:
        nets = list(self.networks.values())
        if management is not None:
            nets.insert(0, management)
        for i, net in enumerate(nets):
            for other in nets[:i]:
                if net.subnet.overlaps(other.subnet):
                    parts: Parts = (
                        ("management", "subnet")
                        if net is management
                        else ("networks", net.name, "subnet")
                    )
                    var = cluster.get(str(parts[0]))
                    self.error(
                        f"subnet {net.subnet} overlaps {other.subnet} of network "
                        f"{other.name!r}",
                        "give each network its own subnet",
                        root=None if var is None else var.source,
                        parts=parts,
                    )
