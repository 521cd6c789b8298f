"""Load an Ansible-style YAML inventory, validate it, build the inventory models.

The public entry: :func:`load_inventory` and :func:`parse_inventory`. The work is
split by what it reads: inventory/reading.py (YAML with line numbers),
inventory/values.py (typed values), inventory/groups.py (the group tree),
inventory/networks.py (cluster-wide settings) and inventory/hosts.py (each host).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from inventory.errors import InventoryError as InventoryError
from inventory.errors import InventoryErrors as InventoryErrors
from inventory.groups import GroupTree, Var
from inventory.hosts import HostBuilder
from inventory.models import Host, Inventory
from inventory.networks import NetworkSettings
from inventory.profiles import did_you_mean
from inventory.reading import Problems, collector_paused, read_yaml


class _Builder:
    """One load: walks the document, collects every problem, builds the models."""

    def __init__(self, path: Path, document: object) -> None:
        self.path = path
        self.problems = Problems(path)
        self.error = self.problems.error
        self.tree = GroupTree(self.problems, document)
        self.nets = NetworkSettings(self.problems)
        self.hosts = HostBuilder(self.problems, self.tree, self.nets)

    def check_campaign(
        self,
        wanted: Sequence[str],
        clients: Sequence[Host],
        networks_var: Var | None,
    ) -> None:
        for name in dict.fromkeys(wanted):
            if name not in self.nets.declared:
                declared = self.nets.declared
                known = ", ".join(declared) or "none"
                self.error(
                    f"the campaign uses network {name!r}, which the inventory does not "
                    f"declare{did_you_mean(name, declared)} (it has: {known})",
                    f"declare {name!r} under all.vars.networks, or drop it from the "
                    "campaign",
                    root=None if networks_var is None else networks_var.source,
                    parts=("networks", name),
                )
                continue
            net = self.nets.networks.get(name)
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
                        line=self.tree.hosts[client.name].line,
                    )

    def build(self, wanted: Sequence[str] | None) -> Inventory:
        self.tree.walk_document()
        self.tree.compute_depths()
        cluster = self.tree.all_vars()
        name = self.nets.cluster_name(cluster.get("cluster_name"))
        superlink_port = self.nets.superlink_port(cluster.get("superlink_port"))
        management = self.nets.parse_management(cluster.get("management"))
        self.nets.parse_networks(cluster.get("networks"))
        server_name, client_names = self.tree.roles()
        hosts = {
            host.name: self.hosts.build_host(
                host, host.name in self.tree.servers, management
            )
            for host in self.tree.hosts.values()
        }
        clients = tuple(hosts[c] for c in client_names)
        self.nets.check_addresses()
        self.nets.check_overlaps(management, cluster)
        if wanted is not None:
            self.check_campaign(wanted, clients, cluster.get("networks"))
        self.problems.raise_if_any()
        server = hosts[str(server_name)]  # roles() reported a missing server
        return Inventory(
            path=self.path,
            name=name,
            server=server,
            clients=clients,
            networks=tuple(self.nets.networks[n] for n in self.nets.declared),
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
    with collector_paused():
        return parse_inventory(read_yaml(path), path, networks)
