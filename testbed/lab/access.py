"""Reaching a cluster over SSH: connectors per host, the server's state folder, and
the campaign topology of SSH-reachable nodes (a real lab, or emulated nodes
through their sshd)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from inventory.models import Inventory
from testbed.emulation.sshd import state_dir
from testbed.transport.executor import Executor
from testbed.campaign.sites import ssh_site
from testbed.transport.ssh import SSHExecutor, target_for_host
from testbed.lab.tls import tls_files

if TYPE_CHECKING:  # the runner imports torch: cluster commands must not wait for it
    from testbed.campaign.runner import Topology


class LabError(RuntimeError):
    """The lab is not ready for a campaign; says what to run first."""


def server_dir(inventory: Inventory) -> Path:
    """Where the server keeps the cluster's TLS material and SuperNode public keys
    (``flowerbed_server_dir`` in all.vars; default ~/.flowerbed/<cluster>)."""
    value = inventory.var("flowerbed_server_dir")
    if isinstance(value, str) and value:
        path = Path(value).expanduser()
        return path if path.is_absolute() else inventory.path.parent / path
    return Path("~/.flowerbed").expanduser() / inventory.name


def known_hosts_for(inventory: Inventory) -> Path:
    """The inventory's ``ssh_known_hosts``; else the one ``cluster up`` wrote for
    an emulated cluster; else ~/.ssh/known_hosts."""
    if inventory.known_hosts is not None:
        return inventory.known_hosts
    emulated = state_dir(inventory) / "known_hosts"
    if emulated.exists():
        return emulated
    return Path("~/.ssh/known_hosts").expanduser()


def ssh_connectors(
    inventory: Inventory, accept_new: bool = False, timeout_s: float = 10.0
) -> dict[str, Callable[[], SSHExecutor]]:
    """One connector per client: opening it verifies the host key and logs in.

    A host without ``ansible_ssh_private_key_file`` uses the emulated cluster's
    user key when ``cluster up`` made one, else the SSH agent.
    """
    known_hosts = known_hosts_for(inventory)
    emulated_key = state_dir(inventory) / "id_ed25519"
    connectors = {}
    for host in inventory.clients:
        if host.ssh_key_file is None and emulated_key.exists():
            host = replace(host, ssh_key_file=emulated_key)
        target = target_for_host(host, known_hosts, accept_new, timeout_s)
        connectors[host.name] = target.connect
    return connectors


def home_of(executor: Executor) -> str:
    """The login's home folder on the host (relative flowerbed_dir lives there)."""
    return executor.run(["sh", "-c", 'printf %s "$HOME"']).stdout.strip()


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
    from testbed.campaign.runner import Security, Topology

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
