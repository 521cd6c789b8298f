"""Where a campaign's node-side work happens: one ``NodeSite`` per client.

A site pairs a client with the executor that reaches it (its network namespace on
the emulated cluster, or SSH on a lab host or an SSH-reachable emulated node),
the Flower and Python binaries there, and the folder its run files go to. The
runner starts everything on a node through its site, so the same code drives
namespaces and real Pis. Files a node writes into a folder of this machine's disk
(namespaces) need no fetching; the others are fetched after each run.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from instrumentation.capture import CaptureError, tcpdump_argv
from instrumentation.clock import probe_argv
from inventory.models import Host, Inventory
from testbed.commands import flower
from testbed.emulation import cgroups
from testbed.emulation.naming import node_namespace
from testbed.transport.executor import Background, CommandError, Executor, NetnsExecutor
from testbed.transport.processes import ProcessError, stop_all

Transport = Literal["netns", "ssh"]
CAPTURE_START_TIMEOUT_S = 15.0
REMOTE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class NodeSite:
    """A client as a campaign reaches it.

    ``bin_dir`` holds ``flower-supernode`` and ``python`` on the host; ``root``
    is the absolute folder for run files on the host (None: the run folder on
    this machine, for namespaces); ``ca_cert`` and ``auth_key`` are paths on the
    host for TLS and SuperNode authentication; ``emulated`` marks a namespace of
    this machine (its CPU and memory are the host's).
    """

    host: Host
    transport: Transport
    executor: Executor
    bin_dir: str
    root: str | None = None
    emulated: bool = False
    privileged: bool = True
    ca_cert: str | None = None
    auth_key: str | None = None
    # torch/OpenMP threads for the node's CPU share (None: the app decides).
    threads: int | None = None

    @property
    def python(self) -> str:
        """The Python of flowerbed's environment on the host."""
        return f"{self.bin_dir}/python"

    @property
    def fetch_needed(self) -> bool:
        """Whether run files live on another disk and must be fetched."""
        return self.root is not None

    def run_dir(self, local_run_dir: Path, campaign: str, run_id: str) -> str:
        """The folder of one run's files on the host."""
        if self.root is None:
            return str(local_run_dir)
        return str(PurePosixPath(self.root) / "runs" / campaign / run_id)

    def sudo(self, argv: list[str]) -> list[str]:
        """``argv`` with ``sudo -n`` when the login is not root."""
        return argv if self.privileged else ["sudo", "-n", *argv]

    def env(
        self, flwr_home: str, launch: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Environment of Flower processes on the host (``launch``: the launch
        mode's settings, :func:`flower.launch_env`; the same on every transport)."""
        threads = (
            {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
            if self.threads is not None
            else {}
        )
        if self.root is None:
            env = flower.flower_env(
                Path(flwr_home), bin_dir=Path(self.bin_dir), launch=launch
            )
            return {**env, **threads}
        env = flower.flower_env(
            Path(flwr_home),
            base={"PATH": REMOTE_PATH},
            bin_dir=Path(self.bin_dir),
            launch=launch,
        )
        return {**env, **threads}


def netns_site(inventory: Inventory, host: Host, bin_dir: Path) -> NodeSite:
    """A client of the emulated cluster reached through its namespace."""
    return NodeSite(
        host=host,
        transport="netns",
        executor=NetnsExecutor(
            node_namespace(inventory, host.name),
            cgroup_procs=cgroups.node_procs(inventory, host.name),
        ),
        bin_dir=str(bin_dir),
        emulated=True,
        threads=cgroups.node_threads(inventory, host.name),
    )


def ssh_site(
    host: Host,
    executor: Executor,
    home: str,
    emulated: bool = False,
    tls: bool = True,
    auth: bool = True,
) -> NodeSite:
    """A provisioned client reached over SSH; paths follow ``cluster provision``."""
    base = host.flowerbed_dir
    if not base.startswith("/"):
        base = f"{home.rstrip('/')}/{base}"
    return NodeSite(
        host=host,
        transport="ssh",
        executor=executor,
        bin_dir=f"{base}/venv/bin",
        root=base,
        emulated=emulated,
        privileged=(host.ansible_user or "root") == "root",
        ca_cert=f"{base}/tls/ca.crt" if tls else None,
        auth_key=f"{base}/keys/supernode" if auth else None,
    )


class NodeCapture:
    """tcpdump on a node's interface under test, started through its site."""

    def __init__(
        self, site: NodeSite, interface: str, pcap: str, port: int, log: str
    ) -> None:
        self.site, self.pcap, self.log = site, pcap, log
        self.argv = site.sudo(tcpdump_argv(interface, Path(pcap), port))
        self.proc: Background | None = None

    def start(self, timeout_s: float = CAPTURE_START_TIMEOUT_S) -> None:
        """Start tcpdump and wait until it reports listening."""
        self.proc = self.site.executor.start(
            f"tcpdump on {self.site.host.name}", self.argv, self.log
        )
        deadline = time.monotonic() + timeout_s
        while "listening on" not in self.proc.log_tail(10):
            if self.proc.poll() is not None:
                raise CaptureError(
                    f"tcpdump on {self.site.host.name} exited before listening: "
                    f"{self.proc.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise CaptureError(
                    f"tcpdump on {self.site.host.name} did not report 'listening "
                    f"on' within {timeout_s:g} s: {self.proc.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self) -> str:
        """Stop tcpdump (SIGINT first, so it writes its counters); return its log."""
        if self.proc is None:
            return ""
        self.proc.signal(signal.SIGINT)
        deadline = time.monotonic() + 5.0
        while not self.proc.gone() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop_all([self.proc], grace_s=2.0)
        return self.proc.log_tail(20)


def start_sampler(
    site: NodeSite, interval_s: float, out: str, log: str, nics: list[str]
) -> Background:
    """The system sampler on a node."""
    argv = [site.python, "-m", "instrumentation.system", "--interval", str(interval_s)]
    argv += ["--out", out, "--host", site.host.name, "--interfaces", ",".join(nics)]
    if site.emulated:
        argv.append("--shared-host")
    return site.executor.start(f"system sampler on {site.host.name}", argv, log)


def probe_clock(
    site: NodeSite,
    server_address: str,
    port: int,
    samples: int,
    injected_offset_ns: int,
) -> dict[str, Any]:
    """One NTP-style probe from the node; a ``clock`` event's measured fields."""
    argv = probe_argv(
        server_address,
        port,
        samples=samples,
        inject_offset_ns=injected_offset_ns,
        python=site.python,
    )
    try:
        result = site.executor.run(argv, check=False, timeout=30.0)
    except CommandError as err:
        return {"error": str(err)}
    if result.returncode != 0:
        return {"error": result.stderr.strip()[-500:]}
    estimate = json.loads(result.stdout)
    return {
        "offset_ns": int(estimate["offset_ns"]),
        "uncertainty_ns": int(estimate["uncertainty_ns"]),
        "rtt_ns": int(estimate["rtt_ns"]),
        "samples_used": int(estimate["samples_used"]),
    }


def start_supernode(
    site: NodeSite,
    superlink: str,
    node_config: Mapping[str, flower.ConfigValue],
    node_dir: str,
    log: str,
    launch: Mapping[str, str] | None = None,
    wrap_env: Callable[[Mapping[str, str]], dict[str, str]] | None = None,
    wrap_argv: Callable[[str, list[str]], list[str]] | None = None,
) -> Background:
    """A SuperNode on the node, with TLS and authentication when the site has them,
    and ``launch`` (:func:`flower.launch_env`) in its environment; ``wrap_env``
    rewrites that environment (the warm launcher's shim on ``PATH``) and
    ``wrap_argv(python, argv)`` its command (the ``supernode-poll`` lever)."""
    argv = flower.supernode_argv(
        Path(site.bin_dir),
        superlink,
        node_config,
        root_certificates=Path(site.ca_cert) if site.ca_cert else None,
        auth_private_key=Path(site.auth_key) if site.auth_key else None,
    )
    if wrap_argv is not None:
        argv = wrap_argv(site.python, argv)
    home = f"{node_dir}/flwr/{site.host.name}"
    site.executor.run(["mkdir", "-p", home])
    env = site.env(home, launch)
    return site.executor.start(
        f"flower-supernode on {site.host.name}",
        argv,
        log,
        env=wrap_env(env) if wrap_env is not None else env,
        cwd=home,
    )


def fetch(site: NodeSite, remote_dir: str, local_dir: Path, rel: str) -> bool:
    """Copy ``remote_dir/rel`` from the node into ``local_dir/rel``; False if absent."""
    if not site.fetch_needed:
        return (local_dir / rel).exists()
    try:
        site.executor.get(f"{remote_dir}/{rel}", local_dir / rel)
    except (OSError, CommandError, ProcessError):
        return False
    return True
