"""The inventory's groups and hosts: the group tree, members and variable precedence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inventory.errors import InventoryError
from inventory.models import is_valid_name
from inventory.profiles import did_you_mean
from inventory.reading import Parts, Problems, line_of
from inventory.values import describe

SERVER_GROUP = "server"
CLIENTS_GROUP = "clients"
# Keys of all.vars that describe the whole cluster rather than one host.
CLUSTER_KEYS = ("cluster_name", "superlink_port", "management", "networks")
GROUP_KEYS = ("hosts", "children", "vars")


@dataclass
class Group:
    """A group as written: its vars mappings, its own hosts and child groups."""

    name: str
    var_sources: list[Mapping[Any, Any]] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


@dataclass
class HostDef:
    """A host as written: where it first appears and its own vars mappings."""

    name: str
    line: int | None
    var_sources: list[Mapping[Any, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Var:
    """A variable's value and the vars mapping that set it (for line numbers)."""

    value: object
    source: Mapping[Any, Any]


class GroupTree:
    """The groups and hosts of one document, walked once; problems to ``problems``."""

    def __init__(self, problems: Problems, document: object) -> None:
        self.problems = problems
        self.error = problems.error
        self.path = problems.path
        self.document = document
        self.groups: dict[str, Group] = {}
        self.hosts: dict[str, HostDef] = {}
        self.depth: dict[str, int] = {}
        self.servers: list[str] = []
        # Filled once the tree is walked (members and host_groups are asked then).
        self._members: dict[str, frozenset[str]] = {}
        self._groups_of: dict[str, tuple[str, ...]] | None = None

    def walk_document(self) -> None:
        doc = self.document
        if not isinstance(doc, Mapping) or "all" not in doc:
            got = "an empty file" if doc is None else describe(doc)[:80]
            raise InventoryError(
                self.path,
                f"an inventory is a YAML mapping with a top-level 'all' key, got {got}",
                "start the file with 'all:' and put groups under all.children (see "
                "inventory/examples/emulated.yaml)",
                line=line_of(doc, ()),
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
        group = self.groups.setdefault(name, Group(name))
        if spec is None:
            return
        if not isinstance(spec, Mapping):
            self.error(
                f"group {name!r} must be a mapping, got {describe(spec)}",
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

    def walk_hosts(self, group: Group, hosts: object, parts: Parts) -> None:
        if hosts is None:
            return
        if not isinstance(hosts, Mapping):
            self.error(
                f"hosts must map host names to their variables, got {describe(hosts)}",
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
                self.hosts[name] = HostDef(name, line_of(self.document, host_parts))
            if name not in group.hosts:
                group.hosts.append(name)
            if host_vars is None or not self.check_vars(host_vars, host_parts, name):
                continue
            self.check_not_cluster_wide(host_vars, host_parts, name)
            self.hosts[name].var_sources.append(host_vars)

    def walk_children(
        self, group: Group, children: object, parts: Parts, stack: Parts
    ) -> None:
        if children is None:
            return
        if not isinstance(children, Mapping):
            self.error(
                f"children must map group names to groups, got {describe(children)}",
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
                f"variables must be a mapping, got {describe(spec)}",
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

    def member_set(self, group: str) -> frozenset[str]:
        """Hosts of ``group`` and of its descendants, computed once per group."""
        cached = self._members.get(group)
        if cached is not None:
            return cached
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
        members = frozenset(found)
        self._members[group] = members
        return members

    def members(self, group: str) -> list[str]:
        """Hosts of ``group`` and of its descendants, in file order."""
        found = self.member_set(group)
        return [h for h in self.hosts if h in found]

    def host_groups(self, host: str) -> tuple[str, ...]:
        """Groups holding ``host`` (besides all), in variable precedence order."""
        if self._groups_of is None:
            # Once for all hosts: asking each group about each host is quadratic.
            groups_of: dict[str, list[str]] = {}
            for group in self.groups:
                if group != "all":
                    for member in self.member_set(group):
                        groups_of.setdefault(member, []).append(group)
            self._groups_of = {
                name: tuple(sorted(held, key=lambda g: (self.depth[g], g)))
                for name, held in groups_of.items()
            }
        return self._groups_of.get(host, ())

    def host_vars(self, host: HostDef, groups: tuple[str, ...]) -> dict[str, Var]:
        chain = list(self.groups["all"].var_sources)
        for group in groups:
            chain.extend(self.groups[group].var_sources)
        chain.extend(host.var_sources)
        resolved: dict[str, Var] = {}
        for source in chain:
            for key, value in source.items():
                resolved[key] = Var(value, source)
        return resolved

    def all_vars(self) -> dict[str, Var]:
        resolved: dict[str, Var] = {}
        for source in self.groups["all"].var_sources:
            for key, value in source.items():
                resolved[key] = Var(value, source)
        return resolved

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
        server_set, client_set = set(servers), set(clients)
        for name, host in self.hosts.items():
            in_server, in_clients = name in server_set, name in client_set
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
        return server, [c for c in clients if c not in server_set]
