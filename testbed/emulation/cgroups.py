"""A CPU (and memory) of its own per emulated node: cgroup limits on its processes.

Three nodes, the SuperLink and the ServerApp share this machine's cores. Without
limits a node that uploads competes with nodes that still train, so its upload
time depends on what the others do. ``cluster up`` therefore gives every node a
cgroup with a CPU quota (cores, CFS bandwidth) and, when the inventory asks, a
memory limit:

- a host's ``cpu_quota`` / ``memory_mb`` from the inventory, or its
  ``device_class``'s (inventory/device_classes.py), or else
- the **default share**: this machine's cores / (nodes + 1), the one left for the
  server's processes (:func:`default_share`).

Every process started in the node's namespace through its executor joins the
node's cgroups first (``testbed.commands.cgroupcmd.join_argv``, used by
``NetnsExecutor`` with :func:`node_procs`), so the
SuperNode, every ClientApp process it spawns, tcpdump and the node's sshd (and
so every SSH session into the node) are limited together. torch's thread count
follows the quota (:func:`threads_for`).

cgroup v2 (one unified tree) is used where mounted; else v1's ``cpu`` and
``memory`` controllers. The groups live under ``flowerbed/<cluster>/<node>`` and
``cluster down`` removes them (:func:`remove_argvs`). Paths and argv are pure;
the caller runs them with an executor.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from inventory.models import Host, Inventory

CGROUP_ROOT = PurePosixPath("/sys/fs/cgroup")
GROUP_DIR = "flowerbed"
CPU_PERIOD_US = 100_000
# `FLOWERBED_CPU_SHARES=0 flowerbed cluster up ...`: no per-node limits (nodes
# share the cores, as before issue 16); a campaign's manifest then says so.
SWITCH_ENV = "FLOWERBED_CPU_SHARES"
MIN_SHARE = 0.05  # cores: below this a node cannot even start Python in time

Version = Literal["v1", "v2"]


@dataclass(frozen=True)
class NodeLimits:
    """One node's limits: ``cpu_quota`` cores, ``memory_mb`` MiB (None: none),
    and where they come from (``inventory`` or ``default share``)."""

    node: str
    cpu_quota: float
    memory_mb: int | None
    source: str


def default_share(cores: int, nodes: int) -> float:
    """Cores per node when the inventory gives none: one share kept for the server."""
    if cores < 1 or nodes < 1:
        raise ValueError(f"need cores >= 1 and nodes >= 1, got {cores}, {nodes}")
    return max(MIN_SHARE, math.floor(cores / (nodes + 1) * 100) / 100)


def plan_limits(inventory: Inventory, cores: int) -> tuple[NodeLimits, ...]:
    """Every client's limits: the inventory's where given, else the default share."""
    share = default_share(cores, len(inventory.clients))
    return tuple(
        NodeLimits(
            h.name,
            h.cpu_quota if h.cpu_quota is not None else share,
            h.memory_mb,
            limits_source(h),
        )
        for h in inventory.clients
    )


def limits_source(host: Host) -> str:
    """Where a node's quota comes from: ``inventory`` (cpu_quota), ``device class
    pi4`` or ``default share``."""
    if host.cpu_quota is None:
        return "default share"
    return host.cpu_quota_source or "inventory"


def threads_for(cpu_quota: float) -> int:
    """torch/OpenMP threads for a node of ``cpu_quota`` cores (at least one)."""
    return max(1, math.floor(cpu_quota + 0.5))


def detect_version(root: Path = Path(str(CGROUP_ROOT))) -> Version | None:
    """Which cgroup hierarchy this machine mounts with CPU limits, or None."""
    if (root / "cgroup.controllers").exists():
        controllers = (root / "cgroup.controllers").read_text().split()
        return "v2" if "cpu" in controllers else None
    if (root / "cpu" / "cpu.cfs_quota_us").exists():
        return "v1"
    return None


def cluster_dirs(version: Version, cluster: str) -> tuple[PurePosixPath, ...]:
    """The cluster's own group folders (one per v1 controller, one in v2)."""
    if version == "v2":
        return (CGROUP_ROOT / GROUP_DIR / cluster,)
    return tuple(CGROUP_ROOT / c / GROUP_DIR / cluster for c in ("cpu", "memory"))


def node_dirs(version: Version, cluster: str, node: str) -> tuple[PurePosixPath, ...]:
    """The node's group folders (cpu first, then memory, in v1)."""
    return tuple(d / node for d in cluster_dirs(version, cluster))


def procs_files(version: Version, cluster: str, node: str) -> tuple[str, ...]:
    """The files a process writes its pid to in order to join the node's groups."""
    return tuple(str(d / "cgroup.procs") for d in node_dirs(version, cluster, node))


def write_argv(value: str, path: PurePosixPath) -> list[str]:
    """Write ``value`` to a cgroup file (the executor quotes each argument)."""
    return ["sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", value, str(path)]


def setup_argvs(version: Version, cluster: str, limits: NodeLimits) -> list[list[str]]:
    """mkdir the node's groups and write its CPU quota and memory limit."""
    dirs = node_dirs(version, cluster, limits.node)
    quota_us = max(1000, round(limits.cpu_quota * CPU_PERIOD_US))
    memory = (
        str(limits.memory_mb * 1024 * 1024) if limits.memory_mb is not None else None
    )
    argvs = [["mkdir", "-p", str(d)] for d in dirs]
    if version == "v2":
        (group,) = dirs
        enable = CGROUP_ROOT / "cgroup.subtree_control"
        parents = [CGROUP_ROOT / GROUP_DIR, CGROUP_ROOT / GROUP_DIR / cluster]
        argvs = [
            write_argv("+cpu +memory", enable),
            ["mkdir", "-p", str(parents[1])],
            *(
                write_argv("+cpu +memory", p / "cgroup.subtree_control")
                for p in parents
            ),
            *argvs,
            write_argv(f"{quota_us} {CPU_PERIOD_US}", group / "cpu.max"),
            write_argv(memory or "max", group / "memory.max"),
        ]
        return argvs
    cpu, mem = dirs
    return [
        *argvs,
        write_argv(str(CPU_PERIOD_US), cpu / "cpu.cfs_period_us"),
        write_argv(str(quota_us), cpu / "cpu.cfs_quota_us"),
        write_argv(memory or "-1", mem / "memory.limit_in_bytes"),
    ]


def remove_argvs(version: Version, cluster: str, nodes: list[str]) -> list[list[str]]:
    """rmdir every node's groups, then the cluster's (only empty groups go)."""
    argvs = [
        ["rmdir", str(d)] for node in nodes for d in node_dirs(version, cluster, node)
    ]
    return argvs + [["rmdir", str(d)] for d in cluster_dirs(version, cluster)]


def read_quota(version: Version, cluster: str, node: str) -> float | None:
    """The node's CPU quota in cores as installed, None when it has no group."""
    group = Path(str(node_dirs(version, cluster, node)[0]))
    try:
        if version == "v2":
            quota, period = (group / "cpu.max").read_text().split()[:2]
        else:
            quota = (group / "cpu.cfs_quota_us").read_text().strip()
            period = (group / "cpu.cfs_period_us").read_text().strip()
    except (OSError, ValueError):
        return None
    if quota in ("max", "-1"):
        return math.inf
    return int(quota) / int(period)


def node_procs(inventory: Inventory, node: str) -> tuple[str, ...]:
    """The node's ``cgroup.procs`` files when ``cluster up`` made its groups."""
    version = detect_version()
    if version is None:
        return ()
    files = procs_files(version, inventory.name, node)
    return files if all(os.path.exists(f) for f in files) else ()


def node_threads(inventory: Inventory, node: str) -> int | None:
    """The thread count for the node's installed quota (None: no group)."""
    version = detect_version()
    quota = None if version is None else read_quota(version, inventory.name, node)
    if quota is None or math.isinf(quota):
        return None
    return threads_for(quota)


def describe_limits(
    version: Version, limits: tuple[NodeLimits, ...], cores: int
) -> str:
    """One line for ``cluster up``/``status`` and the manifest's ``cpu`` detail."""
    parts = []
    for lim in limits:
        memory = f", {lim.memory_mb} MiB" if lim.memory_mb is not None else ""
        parts.append(
            f"{lim.node} {lim.cpu_quota:g} core{memory} ({lim.source},"
            f" {threads_for(lim.cpu_quota)} thread(s))"
        )
    share = default_share(cores, len(limits)) if limits else 0.0
    total = sum(lim.cpu_quota for lim in limits)
    over = (
        f"; the quotas add up to {total:g} cores, more than this machine's {cores}:"
        " nodes that train at once slow each other"
        if total > cores
        else ""
    )
    return (
        f"cgroup {version} CPU quota per node: {'; '.join(parts)}; the default share"
        f" is {cores} core(s) / ({len(limits)} nodes + 1 for the server) = {share:g}"
        + over
    )
