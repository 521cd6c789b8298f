"""Reaching a cluster over SSH: connectors per host, known_hosts, the state folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from inventory.models import Inventory
from testbed.emulation.sshd import state_dir
from testbed.transport.executor import Executor
from testbed.transport.ssh import SSHExecutor, target_for_host


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
