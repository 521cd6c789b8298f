"""Load an Ansible-style YAML inventory, validate it, build the inventory models."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from inventory.models import (
    DEFAULT_FLOWERBED_DIR,
    Host,
    Interface,
    Inventory,
    Network,
    NodeConfigValue,
    is_valid_ifname,
    is_valid_name,
)
from inventory.profiles import (
    DEFAULT_PROFILES,
    UNSHAPED,
    ProfileError,
    did_you_mean,
    resolve_profile,
)

SERVER_GROUP = "server"
CLIENTS_GROUP = "clients"
# Keys of all.vars that describe the whole cluster rather than one host.
CLUSTER_KEYS = ("cluster_name", "superlink_port", "management", "networks")
GROUP_KEYS = ("hosts", "children", "vars")
NETWORK_KEYS = ("subnet", "server_address", "profile")
MANAGEMENT_KEYS = ("subnet", "server_address")
INTERFACE_KEYS = ("ifname", "ip")
MANAGEMENT = "management"
DEFAULT_SSH_PORT = 22
DEFAULT_SUPERLINK_PORT = 8000

Parts = tuple[object, ...]


class InventoryError(ValueError):
    """A problem in an inventory file: what, where (file, line, host, key), and the fix.

    ``key`` is dotted (``interfaces.wifi.ip``); ``line`` is 1-based or None when
    unknown; ``host`` is None for problems that belong to no single host.
    """

    def __init__(
        self,
        path: str | Path,
        problem: str,
        fix: str,
        *,
        host: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.host = host
        self.key = key
        self.line = line
        self.problem = problem.rstrip(". ")
        self.fix = fix.rstrip(". ")
        super().__init__(self._render())

    def _render(self) -> str:
        where = str(self.path) if self.line is None else f"{self.path}:{self.line}"
        subject = []
        if self.host is not None:
            subject.append(f"host {self.host!r}")
        if self.key is not None:
            subject.append(f"key {self.key!r}")
        head = f"{where}: {', '.join(subject)}: " if subject else f"{where}: "
        return f"{head}{self.problem}. Fix: {self.fix}."


class InventoryErrors(InventoryError):
    """Several problems found in one inventory; ``errors`` holds each of them."""

    def __init__(self, errors: Sequence[InventoryError]) -> None:
        self.errors = tuple(errors)
        first = self.errors[0]
        super().__init__(
            first.path,
            f"{len(self.errors)} problems",
            "fix each problem listed",
            line=first.line,
        )

    def _render(self) -> str:
        listed = "\n".join(f"  - {err}" for err in self.errors)
        return f"{self.path}: {len(self.errors)} problems in the inventory:\n{listed}"


# --- YAML with line numbers -------------------------------------------------------


class _Mapping(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each key (1-based)."""

    def __init__(self, line: int | None = None) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _reject_duplicate_keys(node: Any) -> None:
    # PyYAML keeps the last of two equal keys silently; two `client1:` entries
    # would then lose one host without a word.
    seen: set[tuple[str, str]] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key_node.value!r}",
                    key_node.start_mark,
                )
            seen.add(ident)


def _construct_mapping(loader: Any, node: Any) -> Iterator[_Mapping]:
    mapping = _Mapping(node.start_mark.line + 1)
    yield mapping
    _reject_duplicate_keys(node)
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError as err:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found a key that is not a plain value: {key!r}",
                key_node.start_mark,
            ) from err
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1


# Built with type() so mypy sees no subclass of an untyped base.
_LineLoader: Any = type("_LineLoader", (yaml.SafeLoader,), {})
_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _read_yaml(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(
            path,
            "file not found",
            "check the path, or start from inventory/examples/emulated.yaml",
        ) from None
    except IsADirectoryError:
        raise InventoryError(
            path, "is a directory, not an inventory file", "give the YAML file's path"
        ) from None
    except UnicodeDecodeError:
        raise InventoryError(
            path, "is not UTF-8 text", "save the inventory as UTF-8 YAML"
        ) from None
    except OSError as err:
        raise InventoryError(
            path, f"cannot read the file: {err.strerror}", "check its permissions"
        ) from None
    loader: _LineLoader | None = None
    try:
        # the reader rejects control characters already when it is built
        loader = _LineLoader(text)
        return loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        raise InventoryError(
            path,
            f"not valid YAML: {problem}",
            "fix the YAML at that line (indent with spaces; quote values that "
            "contain ': ' or start with a special character)",
            line=None if mark is None else mark.line + 1,
        ) from None
    except RecursionError:
        raise InventoryError(
            path, "YAML nested too deeply", "flatten the structure"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def _line_of(root: object, parts: Parts) -> int | None:
    """Line of the deepest key of ``parts`` found by descending from ``root``."""
    line = root.line if isinstance(root, _Mapping) else None
    current = root
    for part in parts:
        if not isinstance(current, _Mapping) or part not in current.key_lines:
            break
        line = current.key_lines[part]
        current = current[part]
    return line


# --- value checks: each returns the typed value or raises _Bad -------------------


class _Bad(Exception):
    """A value failed a check; carries the problem and the fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _ipv4(value: object) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise _Bad(
            f"expected an IPv4 address, got {_describe(value)}",
            "write the address as text, like 10.77.1.11",
        )
    if "/" in value:
        raise _Bad(
            f"{value} has a prefix length",
            "give the bare address (like 10.77.1.11); the network's subnet gives "
            "the prefix",
        )
    try:
        return ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise _Bad(
            f"{value!r} is not an IPv4 address",
            "write it like 10.77.1.11 (IPv6 is not supported)",
        ) from None


def _ipv4_network(value: object) -> ipaddress.IPv4Network:
    if not isinstance(value, str) or "/" not in value:
        raise _Bad(
            f"expected an IPv4 subnet with a prefix length, got {_describe(value)}",
            "write it like 10.77.1.0/24",
        )
    try:
        return ipaddress.IPv4Network(value.strip())
    except ValueError:
        pass
    try:
        loose = ipaddress.IPv4Network(value.strip(), strict=False)
    except ValueError:
        raise _Bad(
            f"{value!r} is not an IPv4 subnet", "write it like 10.77.1.0/24"
        ) from None
    raise _Bad(f"{value} has host bits set", f"write the subnet as {loose}")


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(
            f"a port must be an integer, got {_describe(value)}",
            "write the port as a plain number without quotes, like 22",
        )
    if not 1 <= value <= 65535:
        raise _Bad(f"port {value} is outside 1-65535", "use a port in 1-65535")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(
            f"expected non-empty text, got {_describe(value)}",
            "write it as text, quoted if it looks like a number",
        )
    return value


def _node_config_value(value: object) -> NodeConfigValue:
    if isinstance(value, bool | int | float | str):
        return value
    raise _Bad(
        f"node_config values must be text, numbers or booleans, got {_describe(value)}",
        "give a single value (quote it to make it text)",
    )


# A node's share of the full model under heterogeneous model reduction (HeteroFL).
CAPACITY_RATIO_KEY = "capacity-ratio"


def _capacity_ratio(value: object) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and 0 < value <= 1:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    raise _Bad(
        f"capacity-ratio must be a number in (0, 1], the share of the full model's"
        f" channels this node trains; got {_describe(value)}",
        "write e.g. 'node_config: {capacity-ratio: 0.5}' (1 = the full model)",
    )


def _check_usable(
    address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network, network: str
) -> None:
    if address not in subnet:
        raise _Bad(
            f"{address} is outside subnet {subnet} of network {network!r}",
            f"give an address inside {subnet}, or change the subnet of {network!r}",
        )
    if subnet.prefixlen < 31 and address in (
        subnet.network_address,
        subnet.broadcast_address,
    ):
        which = "network" if address == subnet.network_address else "broadcast"
        raise _Bad(
            f"{address} is the {which} address of {subnet} (network {network!r})",
            f"use a host address of {subnet}, like {subnet.network_address + 1}",
        )


# --- the inventory's structure ----------------------------------------------------


@dataclass
class _Group:
    name: str
    var_sources: list[Mapping[Any, Any]] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


@dataclass
class _HostDef:
    name: str
    line: int | None
    var_sources: list[Mapping[Any, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Var:
    """A variable's value and the vars mapping that set it (for line numbers)."""

    value: object
    source: Mapping[Any, Any]


@dataclass(frozen=True)
class _Claim:
    """An IPv4 address taken by one host on one network."""

    address: ipaddress.IPv4Address
    owner: tuple[str, str]
    label: str
    host: str | None
    root: object
    parts: Parts


class _Builder:
    """One load: walks the document, collects every problem, builds the models."""

    def __init__(self, path: Path, document: object) -> None:
        self.path = path
        self.document = document
        self.errors: list[InventoryError] = []
        self.groups: dict[str, _Group] = {}
        self.hosts: dict[str, _HostDef] = {}
        self.depth: dict[str, int] = {}
        self.declared: list[str] = []
        self.networks: dict[str, Network] = {}
        self.claims: list[_Claim] = []
        self.server_name: str | None = None
        self.servers: list[str] = []
        self.invalid_networks: list[object] = []

    def error(
        self,
        problem: str,
        fix: str,
        *,
        root: object = None,
        parts: Parts = (),
        host: str | None = None,
        line: int | None = None,
    ) -> None:
        key = ".".join(str(p) for p in parts) if parts else None
        if line is None and root is not None:
            line = _line_of(root, parts)
        self.errors.append(
            InventoryError(self.path, problem, fix, host=host, key=key, line=line)
        )

    def bad(self, bad: _Bad, root: object, parts: Parts, host: str | None) -> None:
        self.error(bad.problem, bad.fix, root=root, parts=parts, host=host)

    def raise_if_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            ordered = sorted(self.errors, key=lambda e: (e.line is None, e.line or 0))
            raise InventoryErrors(ordered)

    # -- groups and hosts

    def walk_document(self) -> None:
        doc = self.document
        if not isinstance(doc, Mapping) or "all" not in doc:
            got = "an empty file" if doc is None else _describe(doc)[:80]
            raise InventoryError(
                self.path,
                f"an inventory is a YAML mapping with a top-level 'all' key, got {got}",
                "start the file with 'all:' and put groups under all.children (see "
                "inventory/examples/emulated.yaml)",
                line=_line_of(doc, ()),
            )
        for key in doc:
            if key != "all":
                self.error(
                    f"top-level key {key!r} is not 'all'",
                    f"nest group {key!r} under all.children",
                    root=doc,
                    parts=(key,),
                )
        self.walk_group("all", doc["all"], ("all",), ("all",))

    def walk_group(self, name: str, spec: object, parts: Parts, stack: Parts) -> None:
        group = self.groups.setdefault(name, _Group(name))
        if spec is None:
            return
        if not isinstance(spec, Mapping):
            self.error(
                f"group {name!r} must be a mapping, got {_describe(spec)}",
                "give the group 'hosts:', 'children:' or 'vars:'",
                root=self.document,
                parts=parts,
            )
            return
        for key in spec:
            if key not in GROUP_KEYS:
                hint = did_you_mean(key, GROUP_KEYS) if isinstance(key, str) else ""
                self.error(
                    f"unknown group key {key!r}{hint}",
                    "a group holds only hosts, children and vars",
                    root=self.document,
                    parts=(*parts, key),
                )
        group_vars = spec.get("vars")
        if group_vars is not None and self.check_vars(group_vars, (*parts, "vars")):
            if name != "all":
                self.check_not_cluster_wide(group_vars, (*parts, "vars"), None)
            group.var_sources.append(group_vars)
        # In the order written, so that clients keep file order across sub-groups.
        for key in [k for k in spec if k in ("hosts", "children")]:
            if key == "hosts":
                self.walk_hosts(group, spec[key], (*parts, key))
            else:
                self.walk_children(group, spec[key], (*parts, key), stack)

    def walk_hosts(self, group: _Group, hosts: object, parts: Parts) -> None:
        if hosts is None:
            return
        if not isinstance(hosts, Mapping):
            self.error(
                f"hosts must map host names to their variables, got {_describe(hosts)}",
                "write 'hosts:' then one 'name: {ansible_host: ...}' line per host",
                root=self.document,
                parts=parts,
            )
            return
        for name, host_vars in hosts.items():
            host_parts = (*parts, name)
            if not isinstance(name, str) or not is_valid_name(name):
                self.error(
                    f"{name!r} is not a valid host name (letters, digits, '_', '.', "
                    "'-'; at most 63; no ranges like pi[01:04])",
                    "rename the host, listing each host on its own",
                    root=self.document,
                    parts=host_parts,
                )
                continue
            if name not in self.hosts:
                self.hosts[name] = _HostDef(name, _line_of(self.document, host_parts))
            if name not in group.hosts:
                group.hosts.append(name)
            if host_vars is None or not self.check_vars(host_vars, host_parts, name):
                continue
            self.check_not_cluster_wide(host_vars, host_parts, name)
            self.hosts[name].var_sources.append(host_vars)

    def walk_children(
        self, group: _Group, children: object, parts: Parts, stack: Parts
    ) -> None:
        if children is None:
            return
        if not isinstance(children, Mapping):
            self.error(
                f"children must map group names to groups, got {_describe(children)}",
                "write 'children:' then one 'group_name:' per child group",
                root=self.document,
                parts=parts,
            )
            return
        for name, spec in children.items():
            if not isinstance(name, str) or not name.strip():
                self.error(
                    f"{name!r} is not a group name",
                    "name the group with text",
                    root=self.document,
                    parts=(*parts, name),
                )
                continue
            if name in stack:
                self.error(
                    f"group {name!r} contains itself",
                    "remove the nested reference",
                    root=self.document,
                    parts=(*parts, name),
                )
                continue
            if name not in group.children:
                group.children.append(name)
            self.walk_group(name, spec, (*parts, name), (*stack, name))

    def check_vars(self, spec: object, parts: Parts, host: str | None = None) -> bool:
        if not isinstance(spec, Mapping):
            self.error(
                f"variables must be a mapping, got {_describe(spec)}",
                "write one 'name: value' per line",
                root=self.document,
                parts=parts,
                host=host,
            )
            return False
        good = True
        for key in spec:
            if not isinstance(key, str):
                good = False
                self.error(
                    f"variable name {key!r} is not text",
                    "quote the name or rename it",
                    root=self.document,
                    parts=(*parts, key),
                    host=host,
                )
        return good

    def check_not_cluster_wide(
        self, spec: Mapping[Any, Any], parts: Parts, host: str | None
    ) -> None:
        for key in CLUSTER_KEYS:
            if key in spec:
                self.error(
                    f"{key!r} describes the whole cluster; it is read from all.vars",
                    f"move {key!r} to all.vars",
                    root=self.document,
                    parts=(*parts, key),
                    host=host,
                )

    def compute_depths(self) -> None:
        """Depth of each group: its longest path from ``all`` (Ansible's order)."""
        state: dict[str, str] = {}
        order: list[str] = []

        def visit(name: str) -> None:
            state[name] = "open"
            group = self.groups[name]
            for child in list(group.children):
                if state.get(child) == "open":
                    self.error(
                        f"groups {name!r} and {child!r} contain each other",
                        f"remove {child!r} from the children of {name!r}",
                    )
                    group.children.remove(child)
                elif child not in state:
                    visit(child)
            state[name] = "done"
            order.append(name)

        visit("all")
        self.depth = {name: 0 for name in self.groups}
        for name in reversed(order):  # parents before children
            for child in self.groups[name].children:
                self.depth[child] = max(self.depth[child], self.depth[name] + 1)

    def members(self, group: str) -> list[str]:
        """Hosts of ``group`` and of its descendants, in file order."""
        found: set[str] = set()
        pending = [group]
        seen: set[str] = set()
        while pending:
            name = pending.pop()
            if name in seen or name not in self.groups:
                continue
            seen.add(name)
            found.update(self.groups[name].hosts)
            pending.extend(self.groups[name].children)
        return [h for h in self.hosts if h in found]

    def host_groups(self, host: str) -> tuple[str, ...]:
        """Groups holding ``host`` (besides all), in variable precedence order."""
        holding = [g for g in self.groups if g != "all" and host in self.members(g)]
        return tuple(sorted(holding, key=lambda g: (self.depth[g], g)))

    def host_vars(self, host: _HostDef, groups: tuple[str, ...]) -> dict[str, _Var]:
        chain = list(self.groups["all"].var_sources)
        for group in groups:
            chain.extend(self.groups[group].var_sources)
        chain.extend(host.var_sources)
        resolved: dict[str, _Var] = {}
        for source in chain:
            for key, value in source.items():
                resolved[key] = _Var(value, source)
        return resolved

    # -- cluster-wide settings

    def all_vars(self) -> dict[str, _Var]:
        resolved: dict[str, _Var] = {}
        for source in self.groups["all"].var_sources:
            for key, value in source.items():
                resolved[key] = _Var(value, source)
        return resolved

    def cluster_name(self, var: _Var | None) -> str:
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

    def superlink_port(self, var: _Var | None) -> int:
        if var is None:
            return DEFAULT_SUPERLINK_PORT
        try:
            return _port(var.value)
        except _Bad as bad:
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
        for key, check in (("subnet", _ipv4_network), ("server_address", _ipv4)):
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
            except _Bad as bad:
                self.bad(bad, root, (*parts, key), None)
        if len(found) != 2:
            return None
        try:
            _check_usable(found["server_address"], found["subnet"], name)
        except _Bad as bad:
            fix = bad.fix.replace("give an address", "give the server an address")
            self.error(bad.problem, fix, root=root, parts=(*parts, "server_address"))
            return None
        return found["subnet"], found["server_address"]

    def parse_networks(self, var: _Var | None) -> None:
        if var is None or var.value is None:
            return
        if not isinstance(var.value, Mapping):
            self.error(
                f"networks must map network names to their settings, got "
                f"{_describe(var.value)}",
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
                f"network {name!r} must be a mapping, got {_describe(spec)}",
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
            profile = resolve_profile(profile_spec, where)
        except ProfileError as err:
            sub = (err.key[len(where) + 1 :],) if err.key != where else ()
            self.error(err.problem, err.fix, root=root, parts=(*parts, "profile", *sub))
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

    def parse_management(self, var: _Var | None) -> Network | None:
        if var is None or var.value is None:
            return None
        parts: Parts = ("management",)
        if not isinstance(var.value, Mapping):
            self.error(
                f"management must be a mapping, got {_describe(var.value)}",
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

    # -- hosts

    def claim(
        self,
        address: ipaddress.IPv4Address,
        owner: tuple[str, str],
        label: str,
        host: str | None,
        root: object,
        parts: Parts,
    ) -> None:
        self.claims.append(_Claim(address, owner, label, host, root, parts))

    def build_host(
        self,
        host: _HostDef,
        is_server: bool,
        management: Network | None,
    ) -> Host:
        groups = self.host_groups(host.name)
        host_vars = self.host_vars(host, groups)
        ansible_host = self.host_value(host, host_vars, "ansible_host", _text)
        user_var = host_vars.get("ansible_user")
        user = None
        if user_var is not None and user_var.value is not None:
            user = self.host_value(host, host_vars, "ansible_user", _text)
        port = self.host_value(host, host_vars, "ansible_port", _port)
        key_file = self.host_value(
            host, host_vars, "ansible_ssh_private_key_file", _text
        )
        flowerbed_dir = self.host_value(host, host_vars, "flowerbed_dir", _text)
        python = self.host_value(host, host_vars, "ansible_python_interpreter", _text)
        wheelhouse = self.host_value(host, host_vars, "flowerbed_wheelhouse", _text)
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
        )

    def local_path(self, value: object) -> Path | None:
        """A path on this machine named in the inventory: ~ expanded, relative
        to the inventory file's folder."""
        if not isinstance(value, str):
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.path.parent / path

    def host_value(
        self, host: _HostDef, host_vars: dict[str, _Var], key: str, check: Any
    ) -> object:
        var = host_vars.get(key)
        if var is None:
            return None
        try:
            return check(var.value)
        except _Bad as bad:
            self.bad(bad, var.source, (key,), host.name)
            return None

    def check_management_address(
        self,
        host: _HostDef,
        host_vars: dict[str, _Var],
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
        owner = "<server>" if host.name in self.servers else host.name
        self.claim(
            address,
            (owner, "(management)"),
            f"{host.name}'s management address (ansible_host)",
            host.name,
            var.source,
            ("ansible_host",),
        )

    def interfaces(
        self, host: _HostDef, var: _Var | None, is_server: bool
    ) -> tuple[Interface, ...]:
        if var is None or var.value is None:
            return ()
        if not isinstance(var.value, Mapping):
            self.error(
                f"interfaces must map network names to {{ifname, ip}}, got "
                f"{_describe(var.value)}",
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
        host: _HostDef,
        network: object,
        spec: object,
        root: object,
        is_server: bool,
    ) -> Interface | None:
        parts: Parts = ("interfaces", network)
        if network in self.invalid_networks:
            return None  # its name was already reported
        if not isinstance(network, str) or network not in self.declared:
            known = ", ".join(self.declared) or "none"
            hint = ""
            if isinstance(network, str):
                hint = did_you_mean(network, self.declared)
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
                f"an interface is a mapping with ifname and ip, got {_describe(spec)}",
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
        self, host: _HostDef, network: str, value: object, root: object, is_server: bool
    ) -> ipaddress.IPv4Address | None:
        parts: Parts = ("interfaces", network, "ip")
        try:
            address = _ipv4(value)
            net = self.networks.get(network)
            if net is not None:
                _check_usable(address, net.subnet, network)
        except _Bad as bad:
            fix = bad.fix.replace("give an address", f"give {host.name} an address")
            self.error(bad.problem, fix, root=root, parts=parts, host=host.name)
            return None
        if is_server:
            net = self.networks.get(network)
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
        self.claim(
            address,
            (owner, network),
            f"{host.name}'s address on {network!r}",
            host.name,
            root,
            parts,
        )
        return address

    def node_config(
        self, host: _HostDef, var: _Var | None
    ) -> tuple[tuple[str, NodeConfigValue], ...]:
        if var is None or var.value is None:
            return ()
        if not isinstance(var.value, Mapping):
            self.error(
                f"node_config must be a mapping, got {_describe(var.value)}",
                "write 'node_config: {partition-id: 0}'",
                root=var.source,
                parts=("node_config",),
                host=host.name,
            )
            return ()
        items: list[tuple[str, NodeConfigValue]] = []
        for key, value in var.value.items():
            try:
                items.append((_text(key), _node_config_value(value)))
                if key == CAPACITY_RATIO_KEY:
                    _capacity_ratio(value)
            except _Bad as bad:
                self.bad(bad, var.source, ("node_config", key), host.name)
        return tuple(items)

    # -- whole-inventory checks

    def check_addresses(self) -> None:
        first: dict[ipaddress.IPv4Address, _Claim] = {}
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
        self, management: Network | None, cluster: dict[str, _Var]
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

    def check_campaign(
        self,
        wanted: Sequence[str],
        clients: Sequence[Host],
        networks_var: _Var | None,
    ) -> None:
        for name in dict.fromkeys(wanted):
            if name not in self.declared:
                known = ", ".join(self.declared) or "none"
                self.error(
                    f"the campaign uses network {name!r}, which the inventory does not "
                    f"declare{did_you_mean(name, self.declared)} (it has: {known})",
                    f"declare {name!r} under all.vars.networks, or drop it from the "
                    "campaign",
                    root=None if networks_var is None else networks_var.source,
                    parts=("networks", name),
                )
                continue
            net = self.networks.get(name)
            example = f"<address in {net.subnet}>" if net is not None else "<address>"
            for client in clients:
                if client.interface(name) is None:
                    self.error(
                        f"{client.name} has no interface on network {name!r}, which "
                        "the campaign uses",
                        f"add 'interfaces: {{{name}: {{ifname: ..., ip: {example}}}}}' "
                        f"to {client.name}, or leave {name!r} out of the campaign",
                        parts=("interfaces", name),
                        host=client.name,
                        line=self.hosts[client.name].line,
                    )

    def roles(self) -> tuple[str | None, list[str]]:
        servers = self.members(SERVER_GROUP)
        clients = self.members(CLIENTS_GROUP)
        server_parts: Parts = ("all", "children", SERVER_GROUP)
        if not servers:
            self.error(
                "no host in group 'server'",
                "add all.children.server.hosts with exactly one host",
                root=self.document,
                parts=server_parts,
            )
        elif len(servers) > 1:
            self.error(
                f"group 'server' has {len(servers)} hosts ({', '.join(servers)})",
                "keep exactly one host in group 'server'",
                root=self.document,
                parts=server_parts,
            )
        if not clients:
            self.error(
                "no host in group 'clients'",
                "add all.children.clients.hosts with at least one host",
                root=self.document,
                parts=("all", "children", CLIENTS_GROUP),
            )
        for name, host in self.hosts.items():
            in_server, in_clients = name in servers, name in clients
            if in_server and in_clients:
                self.error(
                    f"{name} is in both 'server' and 'clients'",
                    "keep it in one of the two groups",
                    host=name,
                    line=host.line,
                )
            elif not in_server and not in_clients:
                self.error(
                    f"{name} is in neither 'server' nor 'clients'",
                    "put it in 'clients' (or a group under clients), or remove it",
                    host=name,
                    line=host.line,
                )
        self.servers = servers
        server = servers[0] if len(servers) == 1 else None
        return server, [c for c in clients if c not in servers]

    def build(self, wanted: Sequence[str] | None) -> Inventory:
        self.walk_document()
        self.compute_depths()
        cluster = self.all_vars()
        name = self.cluster_name(cluster.get("cluster_name"))
        superlink_port = self.superlink_port(cluster.get("superlink_port"))
        management = self.parse_management(cluster.get("management"))
        self.parse_networks(cluster.get("networks"))
        self.server_name, client_names = self.roles()
        hosts = {
            host.name: self.build_host(host, host.name in self.servers, management)
            for host in self.hosts.values()
        }
        clients = tuple(hosts[c] for c in client_names)
        self.check_addresses()
        self.check_overlaps(management, cluster)
        if wanted is not None:
            self.check_campaign(wanted, clients, cluster.get("networks"))
        self.raise_if_any()
        server = hosts[str(self.server_name)]  # roles() reported a missing server
        return Inventory(
            path=self.path,
            name=name,
            server=server,
            clients=clients,
            networks=tuple(self.networks[n] for n in self.declared),
            management=management,
            superlink_port=superlink_port,
            vars=tuple((key, var.value) for key, var in cluster.items()),
        )


def parse_inventory(
    document: object, path: str | Path, networks: Sequence[str] | None = None
) -> Inventory:
    """Validate an already parsed inventory document and build the Inventory.

    ``path`` is only used in error messages and as the default cluster name;
    ``networks`` are the networks a campaign will use (see ``load_inventory``).

    Raises
    ------
    InventoryError
        For one problem; ``InventoryErrors`` when there are several.
    """
    if isinstance(networks, str):
        networks = [networks]
    return _Builder(Path(path), document).build(networks)


def load_inventory(
    path: str | Path, networks: Sequence[str] | None = None
) -> Inventory:
    """Read, validate and build the inventory in the YAML file at ``path``.

    Parameters
    ----------
    path
        An Ansible-style YAML inventory (see docs/inventory.md).
    networks
        The networks a campaign will use: each must be declared, and every
        client must have an interface on each. None checks no campaign.

    Raises
    ------
    InventoryError
        For one problem (file, line, host, key, fix); ``InventoryErrors`` listing
        each problem when there are several.
    """
    path = Path(path)
    return parse_inventory(_read_yaml(path), path, networks)
