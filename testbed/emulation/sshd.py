"""OpenSSH servers inside the emulated nodes, so the lab's SSH path is the tested path.

``cluster up`` starts one ``sshd`` per node namespace, listening on the node's
management address (its ``ansible_host``) and port. Each node gets its own host key
(generated once and kept, so a node keeps its identity across ``down``/``up``);
the cluster gets one user key, installed as the only authorised key. The inventory's
``ssh_known_hosts`` file receives each node's key, replacing older lines for the
same address, so checks and campaigns verify host keys exactly as on real Pis.

Everything lives under ``state_dir(inventory)`` except the user key and
known_hosts when the inventory names them (``ansible_ssh_private_key_file``,
``ssh_known_hosts``); SSH connections to the cluster fall back to the state
folder's files (``testbed/lab/access.py``), so nothing in ~/.ssh is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from inventory.models import Inventory
from testbed.emulation.cgroups import node_procs
from testbed.transport.executor import Executor, LocalExecutor, NetnsExecutor
from testbed.transport.files import write_text_atomically

SSHD = "/usr/sbin/sshd"
STATE_ROOT = Path("/var/lib/flowerbed/emulated")
_START_TIMEOUT_S = 10.0


class EmulatedSSHError(RuntimeError):
    """sshd could not be set up in an emulated node; says which and why."""


@dataclass(frozen=True)
class NodeSSH:
    """One node's sshd: where it listens and its files."""

    host: str
    namespace: str
    address: str
    port: int
    host_key: Path
    config: Path
    pid_file: Path
    log_file: Path


@dataclass(frozen=True)
class ClusterSSH:
    """The SSH side of an emulated cluster: user key, known_hosts, one sshd per node."""

    user_key: Path
    known_hosts: Path
    authorized_keys: Path
    nodes: tuple[NodeSSH, ...]


def state_dir(inventory: Inventory) -> Path:
    """Where the emulated cluster keeps its SSH keys and sshd files."""
    return STATE_ROOT / inventory.name / "ssh"


def user_key_path(inventory: Inventory) -> Path:
    """The cluster user key: the clients' ansible_ssh_private_key_file, else ours."""
    files = {h.ssh_key_file for h in inventory.clients if h.ssh_key_file is not None}
    if len(files) > 1:
        listed = ", ".join(sorted(str(f) for f in files))
        raise EmulatedSSHError(
            f"the clients of {inventory.path} name different SSH keys ({listed}); "
            "an emulated cluster has one user key: set "
            "ansible_ssh_private_key_file once, in all.vars"
        )
    return files.pop() if files else state_dir(inventory) / "id_ed25519"


def plan_ssh(inventory: Inventory, namespaces: dict[str, str]) -> ClusterSSH:
    """The sshd of each node of ``inventory``; ``namespaces`` maps host -> netns."""
    base = state_dir(inventory)
    nodes = tuple(
        NodeSSH(
            host=host.name,
            namespace=namespaces[host.name],
            address=host.ansible_host,
            port=host.ansible_port,
            host_key=base / host.name / "ssh_host_ed25519_key",
            config=base / host.name / "sshd_config",
            pid_file=base / host.name / "sshd.pid",
            log_file=base / host.name / "sshd.log",
        )
        for host in inventory.clients
    )
    return ClusterSSH(
        user_key=user_key_path(inventory),
        known_hosts=inventory.known_hosts or base / "known_hosts",
        authorized_keys=base / "authorized_keys",
        nodes=nodes,
    )


def sshd_config(node: NodeSSH, authorized_keys: Path) -> str:
    """The sshd_config of one emulated node: key-only, root by key, nothing else."""
    lines = [
        f"ListenAddress {node.address}:{node.port}",
        f"HostKey {node.host_key}",
        f"PidFile {node.pid_file}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        # our state folder is root's but not a home directory sshd would accept
        "StrictModes no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "PrintMotd no",
        "MaxStartups 64:30:128",
        "Subsystem sftp internal-sftp",
        "LogLevel ERROR",
        # bash sources ~/.bashrc for every command sshd runs unless it looks
        # nested; this machine's root .bashrc may be heavy (pyenv init: 0.4 s a
        # command here), where a Pi's default .bashrc returns at once for
        # non-interactive shells. Nested, the emulated node behaves like a Pi.
        "SetEnv SHLVL=5",
    ]
    return "\n".join(lines) + "\n"


def known_hosts_line(address: str, port: int, public_key: str) -> str:
    """A known_hosts entry: ``addr`` for port 22, ``[addr]:port`` otherwise."""
    name = address if port == 22 else f"[{address}]:{port}"
    key_type, key_b64 = public_key.split()[:2]
    return f"{name} {key_type} {key_b64}"


def merge_known_hosts(existing: str, entries: dict[str, str]) -> str:
    """``existing`` known_hosts text with the lines of ``entries``' names replaced.

    ``entries`` maps the host field (``10.0.0.2`` or ``[10.0.0.2]:2222``) to its
    full line; other lines, comments and hashed entries are kept as they are.
    """
    kept = [
        line
        for line in existing.splitlines()
        if not line.strip() or line.split()[0] not in entries
    ]
    return "\n".join([*kept, *entries.values()]) + "\n"


def _keygen(path: Path, comment: str, executor: Executor) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    executor.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]
    )


def _pid(node: NodeSSH) -> int | None:
    try:
        pid = int(node.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def ssh_up(
    inventory: Inventory,
    namespaces: dict[str, str],
    executor: Executor | None = None,
) -> ClusterSSH:
    """Start (or keep) an sshd in every node; write authorised key and known_hosts.

    Safe to run twice: keys are generated once; an sshd already running from our
    pid file is restarted only when its configuration changed.
    """
    host = executor if executor is not None else LocalExecutor()
    if not Path(SSHD).exists():
        raise EmulatedSSHError(
            f"{SSHD} is missing: install openssh-server (apt-get install "
            "openssh-server) so the emulated nodes can be reached over SSH"
        )
    plan = plan_ssh(inventory, namespaces)
    _keygen(plan.user_key, f"flowerbed-{inventory.name}", host)
    public = plan.user_key.with_name(plan.user_key.name + ".pub").read_text()
    write_text_atomically(plan.authorized_keys, public, 0o600)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
    entries = {}
    for node in plan.nodes:
        _keygen(node.host_key, f"{node.host}@{inventory.name}", host)
        config = sshd_config(node, plan.authorized_keys)
        changed = not node.config.exists() or node.config.read_text() != config
        write_text_atomically(node.config, config, 0o600)
        _start_sshd(node, changed, host, node_procs(inventory, node.host))
        host_public = node.host_key.with_name(node.host_key.name + ".pub").read_text()
        line = known_hosts_line(node.address, node.port, host_public)
        entries[line.split()[0]] = line
    existing = plan.known_hosts.read_text() if plan.known_hosts.exists() else ""
    write_text_atomically(plan.known_hosts, merge_known_hosts(existing, entries), 0o644)
    return plan


def _start_sshd(
    node: NodeSSH, config_changed: bool, host: Executor, procs: tuple[str, ...] = ()
) -> None:
    pid = _pid(node)
    if pid is not None and not config_changed:
        return
    if pid is not None:
        _stop_pid(pid)
    # In the node's cgroups (``procs``): every SSH session into it is limited too.
    ns = NetnsExecutor(node.namespace, host, cgroup_procs=procs)
    ns.run([SSHD, "-t", "-f", str(node.config)])
    ns.run([SSHD, "-f", str(node.config), "-E", str(node.log_file)])
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _pid(node) is not None and _listening(ns, node.port):
            return
        time.sleep(0.05)
    log = node.log_file.read_text() if node.log_file.exists() else ""
    raise EmulatedSSHError(
        f"sshd of emulated node {node.host} did not start listening on "
        f"{node.address}:{node.port} in {_START_TIMEOUT_S:g} s; its log "
        f"({node.log_file}):\n{log[-1500:]}"
    )


def sshd_state(node: NodeSSH, host: Executor) -> str:
    """What ``cluster status`` says of a node's sshd: listening, running or not."""
    pid = _pid(node)
    if pid is None:
        return "not running"
    where = f"{node.address}:{node.port}"
    if _listening(NetnsExecutor(node.namespace, host), node.port):
        return f"listening on {where} (pid {pid})"
    return f"running (pid {pid}) but NOT listening on {where}: see {node.log_file}"


def _listening(ns: NetnsExecutor, port: int) -> bool:
    result = ns.run(["ss", "-Hltn", f"sport = :{port}"], check=False)
    return result.returncode == 0 and bool(result.stdout.strip())


def _stop_pid(pid: int, grace_s: float = 3.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def ssh_down(inventory: Inventory, namespaces: dict[str, str]) -> list[str]:
    """Stop every node's sshd (keys are kept); return the hosts stopped."""
    stopped = []
    for node in plan_ssh(inventory, namespaces).nodes:
        pid = _pid(node)
        if pid is not None:
            _stop_pid(pid)
            stopped.append(node.host)
        node.pid_file.unlink(missing_ok=True)
    return stopped


def forget_state(inventory: Inventory) -> None:
    """Delete the cluster's SSH state (host keys included): nodes get new
    identities at the next ``up``, which known_hosts then records."""
    shutil.rmtree(state_dir(inventory), ignore_errors=True)
