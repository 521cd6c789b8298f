"""How a campaign reaches its cluster: node sites, emulated or SSH, and security."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from inventory.models import Inventory
from testbed.campaign.sites import NodeSite, netns_site, ssh_site
from testbed.lab.access import LabError, home_of, server_dir, ssh_connectors
from testbed.lab.tls import TlsFiles, tls_files

BIN_DIR = Path(sys.executable).parent


@dataclass(frozen=True)
class Security:
    """TLS and SuperNode authentication of a campaign's SuperLinks.

    ``tls`` holds the server-side files; ``supernode_keys`` maps each client to
    its public key (fetched by ``cluster provision``), registered with every
    SuperLink before the SuperNodes start.
    """

    tls: TlsFiles | None = None
    supernode_keys: Mapping[str, Path] | None = None

    def __post_init__(self) -> None:
        if self.supernode_keys is not None and self.tls is None:
            raise ValueError("SuperNode authentication needs TLS")

    @property
    def label(self) -> str:
        """How the manifest and progress describe it."""
        if self.tls is None:
            return "insecure"
        return "tls+supernode-auth" if self.supernode_keys else "tls"


INSECURE = Security()


@dataclass(frozen=True)
class Topology:
    """How a campaign reaches its cluster: the node sites, whether the cluster is
    the emulated one on this machine (captures on its host-side veths), and the
    SuperLink's security."""

    sites: Mapping[str, NodeSite]
    emulated: bool = True
    security: Security = INSECURE


def emulated_topology(inventory: Inventory) -> Topology:
    """Every client through its namespace, insecure: the default."""
    return Topology(
        {h.name: netns_site(inventory, h, BIN_DIR) for h in inventory.clients}
    )


def ssh_topology(
    inventory: Inventory,
    stack: ExitStack,
    *,
    emulated: bool,
    secure: bool = True,
    accept_new: bool = False,
) -> Topology:
    """Connect to every client over SSH; TLS and SuperNode authentication unless
    ``secure`` is False. Connections close when ``stack`` unwinds."""
    folder = server_dir(inventory)
    security = Security()
    if secure:
        tls = tls_files(folder / "tls")
        keys = {
            h.name: folder / "supernode-keys" / f"{h.name}.pub"
            for h in inventory.clients
        }
        missing = [str(p) for p in (tls.ca_cert, tls.server_cert, tls.server_key)]
        missing = [p for p in missing if not Path(p).exists()]
        missing += [str(p) for p in keys.values() if not p.exists()]
        if missing:
            raise LabError(
                f"TLS material or SuperNode keys are missing ({', '.join(missing)}); "
                f"run `flowerbed cluster provision {inventory.path}` first (or pass "
                "--insecure to run without TLS and authentication)"
            )
        security = Security(tls, keys)
    sites = {}
    for name, connect in ssh_connectors(inventory, accept_new).items():
        executor = connect()
        stack.callback(executor.close)
        host = inventory.client(name)
        sites[name] = ssh_site(
            host,
            executor,
            home_of(executor),
            emulated=emulated,
            tls=secure,
            auth=secure,
        )
    return Topology(sites, emulated=emulated, security=security)
