"""The warm launcher in a run: per node its socket, shim, zygote and manifest report.

The same functions serve namespaces and SSH hosts: everything goes through the
node's :class:`~testbed.campaign.sites.NodeSite` (its executor, Python and root).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.campaign.sites import NodeSite
from testbed.launch.guard import (
    TESTED_FLWR_SERIES,
    installed_flwr_version,
    warm_supported,
)
from testbed.launch.shim import LOG_PREFIX
from testbed.launch.wiring import (
    check_socket_path,
    shim_env,
    shim_text,
    write_shim,
    zygote_argv,
    zygote_events,
    zygote_report,
)
from testbed.transport.executor import Background, NetnsExecutor

# A namespace shares this machine's /run: a short path whatever the run folder.
NETNS_SOCKET_DIR = "/run/flowerbed"
PRELOAD = ("torch", "torch._dynamo", "instrumentation.inject_client")
# The built-in app's libraries (never an app's own modules: the FAB's copy is
# imported per run).
BUILTIN_PRELOAD = ("strategies.registry", "workloads")
READY_TIMEOUT_S = 120.0
# Comma-separated Flower series to trust instead of the tested ones: lets a test
# force the version guard to refuse (e.g. "0.0") and so exercise the fallback.
SERIES_ENV = "FLOWERBED_WARM_FLWR_SERIES"


@dataclass(frozen=True)
class WarmDecision:
    """Whether the run's nodes launch warm, and the sentence that says why (not)."""

    enabled: bool
    reason: str
    flwr_version: str
    series: tuple[str, ...] = TESTED_FLWR_SERIES

    def manifest(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "reason": self.reason,
            "flwr_version": self.flwr_version,
            "series": list(self.series),
        }


def supported_series(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The Flower series the warm launcher trusts: tested, or :data:`SERIES_ENV`."""
    raw = (os.environ if environ is None else environ).get(SERIES_ENV, "")
    series = tuple(s.strip() for s in raw.split(",") if s.strip())
    return series or TESTED_FLWR_SERIES


def decide(
    version: str | None = None, supported: Sequence[str] | None = None
) -> WarmDecision:
    """The controller's check of the installed Flower (arguments: for tests)."""
    version = installed_flwr_version() if version is None else version
    series = supported_series() if supported is None else tuple(supported)
    ok, reason = warm_supported(version, series)
    return WarmDecision(ok, reason, version, series)


@dataclass(frozen=True)
class WarmNode:
    """Where one node's warm launcher lives: its socket and the shim's folder."""

    socket: str
    shim_dir: str

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The SuperNode's environment with the shim first on ``PATH``."""
        return shim_env(base, self.shim_dir, self.socket)


def warm_node(site: NodeSite, node_dir: str) -> WarmNode:
    """Paths for ``site``: ``/run/flowerbed/<namespace>.sock`` in a namespace (the
    name carries the cluster's, so two clusters' nodes never share a socket),
    ``{root}/warm/<node>.sock`` over SSH; the shim goes under the run's folder."""
    name = site.host.name
    if site.root is None:
        executor = site.executor
        local = executor.namespace if isinstance(executor, NetnsExecutor) else name
        socket = f"{NETNS_SOCKET_DIR}/{local}.sock"
    else:
        socket = f"{site.root}/warm/{name}.sock"
    check_socket_path(socket)
    return WarmNode(socket=socket, shim_dir=f"{node_dir}/warm/{name}")


def preload_for(builtin_app: bool) -> tuple[str, ...]:
    """Libraries the zygote imports up front."""
    return PRELOAD + (BUILTIN_PRELOAD if builtin_app else ())


def install_shim(site: NodeSite, node: WarmNode) -> None:
    """Write the ``flwr-clientapp`` shim into ``node.shim_dir`` on the host."""
    socket_dir = node.socket.rsplit("/", 1)[0]
    site.executor.run(["mkdir", "-p", node.shim_dir, socket_dir])
    if site.root is None:
        write_shim(Path(node.shim_dir), site.python)
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "flwr-clientapp"
        local.write_text(shim_text(site.python), encoding="utf-8")
        site.executor.put(local, f"{node.shim_dir}/flwr-clientapp", mode=0o755)


def start_zygote(
    site: NodeSite,
    node: WarmNode,
    home: str,
    log: str,
    env: Mapping[str, str],
    preload: Sequence[str],
    supported: Sequence[str] = TESTED_FLWR_SERIES,
) -> Background:
    """The node's zygote, through the SuperNode's executor and environment."""
    argv = zygote_argv(site.python, node.socket, preload, supported)
    return site.executor.start(
        f"zygote on {site.host.name}", argv, log, env=dict(env), cwd=home
    )


def wait_zygote(proc: Background, timeout_s: float = READY_TIMEOUT_S) -> str:
    """Wait for the zygote's ``ready`` or ``refused`` line; return which, or
    ``"gone"``/``"timeout"`` (the shims then launch stock by themselves)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for event in zygote_events(proc.log_tail(200)):
            if event["event"] in ("ready", "refused"):
                return str(event["event"])
        if proc.poll() is not None:
            return "gone"
        if time.monotonic() > deadline:
            return "timeout"
        time.sleep(0.1)


def node_report(zygote_log: str, supernode_log: str) -> dict[str, object]:
    """One node's manifest entry: the zygote's report and the shims' fallbacks."""
    report = zygote_report(zygote_log).as_manifest()
    report["shim_fallbacks"] = sum(
        1 for line in supernode_log.splitlines() if LOG_PREFIX in line
    )
    return report


def warn(text: str) -> None:
    """A warning the user sees in the campaign's output."""
    print(f"warning: {text}", file=sys.stderr, flush=True)
