"""One run's Flower side: its folders, the SuperLink, the SuperNodes, the submitted
Flower run, and what Flower says about it (``measure`` holds what runs beside)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from instrumentation.inject_server import EVENT_LOG_KEY, RUN_ID_KEY
from instrumentation.patience import NODE_WAIT_KEY
from instrumentation.reply_backoff import REPLY_BACKOFF_KEY
from instrumentation.wake import REPLY_PULL_KEY, WAKE_KEY
from inventory.models import Host, Inventory, Network
from testbed.campaign.app_bundle import (
    BundleError,
    flatten_config,
    prepare_bundle,
    read_app_config,
)
from testbed.campaign.launch import SUPERNODE_HANDOFF_S
from testbed.campaign.model import DEFAULT_APP, Campaign
from testbed.campaign.plan import RunPlan, node_config_for
from testbed.campaign.sites import (
    NodeSite,
    start_supernode,
)
from testbed.campaign.topology import BIN_DIR, Topology
from testbed.campaign.warm import (
    WarmDecision,
    WarmNode,
    decide,
    install_shim,
    node_report,
    preload_for,
    start_zygote,
    supported_series,
    wait_zygote,
    warm_node,
    warn,
)
from testbed.commands import flower
from testbed.launch.wiring import supernode_poll_argv
from testbed.transport.executor import Background
from testbed.transport.processes import (
    ManagedProcess,
    stop_all,
    wait_for_port,
)


class RunFailed(RuntimeError):
    """A run could not complete; the message says why and where its logs are."""


NODE_FOLDERS = ("nodes", "captures", "system", "flwr")
LAUNCH_KEYS = (REPLY_PULL_KEY, WAKE_KEY, REPLY_BACKOFF_KEY)


def _flwr(
    argv: list[str], env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _run_info(env: dict[str, str], flower_run_id: str) -> dict[str, Any]:
    """Flower's record of a run (``flwr ls --run-id``), or {} if unavailable."""
    result = _flwr(flower.flwr_ls_argv(BIN_DIR, int(flower_run_id)), env, 30.0)
    try:
        runs = json.loads(result.stdout).get("runs", [])
    except json.JSONDecodeError:
        return {}
    return dict(runs[0]) if runs else {}


def _finished_elapsed(
    env: dict[str, str], flower_run_id: str, deadline_s: float = 30.0
) -> float | None:
    """Flower's ``elapsed`` for the run once Flower marks it finished.

    The ServerApp writes ``app_end`` a moment before Flower closes the run; read
    earlier, ``elapsed`` would still be growing.
    """
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        info = _run_info(env, flower_run_id)
        if str(info.get("status", "")).startswith("finished"):
            elapsed = info.get("elapsed")
            return float(elapsed) if elapsed is not None else None
        time.sleep(0.5)
    return None


def _run_status(env: dict[str, str], flower_run_id: str) -> str:
    """Flower's status string for a run (``running``, ``finished:completed``, ...)."""
    return str(_run_info(env, flower_run_id).get("status", "unknown"))


class Run:
    """The processes and files of one run (``drive.execute_run`` tears them down)."""

    def __init__(
        self,
        campaign: Campaign,
        inventory: Inventory,
        plan: RunPlan,
        out: Path,
        topology: Topology,
    ):
        self.campaign, self.inventory, self.plan = campaign, inventory, plan
        self.topology = topology
        self.network: Network = inventory.network(plan.network)
        self.dir = out / "runs" / plan.run_id
        self.events_path = self.dir / "events.jsonl"
        self.port = inventory.superlink_port
        self.address = f"{self.network.server_address}:{self.port}"
        self.cli_env = flower.flower_env(self.dir / "flwr" / "cli")
        self.launch_env = flower.launch_env(campaign.launch.superexec_poll_s)
        self.tls = topology.security.tls
        self.flower_run_id = ""
        self.finished = False
        self.elapsed_s: float | None = None
        self.warm: WarmDecision | None = (
            decide() if campaign.launch.warm_launcher else None
        )
        self.warm_nodes: dict[str, WarmNode] = {}
        self.zygotes: dict[str, Background] = {}
        self.supernodes: dict[str, Background] = {}
        self.warm_reports: dict[str, dict[str, object]] = {}

    def site(self, host: Host) -> NodeSite:
        return self.topology.sites[host.name]

    def node_dir(self, host: Host) -> str:
        """The run's folder on ``host`` (this run folder for namespaces)."""
        return self.site(host).run_dir(self.dir, self.campaign.name, self.plan.run_id)

    def prepare_nodes(self) -> None:
        """Create the run's folders on every node."""
        for host in self.inventory.clients:
            folder = self.node_dir(host)
            self.site(host).executor.run(
                ["mkdir", "-p", *(f"{folder}/{d}" for d in NODE_FOLDERS)]
            )

    def start_superlink(self, stack: ExitStack) -> ManagedProcess:
        home = self.dir / "flwr" / "superlink"
        home.mkdir(parents=True, exist_ok=True)
        security = self.topology.security
        argv = flower.superlink_argv(
            BIN_DIR,
            str(self.network.server_address),
            self.port,
            tls=(
                None
                if self.tls is None
                else flower.Tls(
                    self.tls.ca_cert, self.tls.server_cert, self.tls.server_key
                )
            ),
            supernode_auth=security.supernode_keys is not None,
        )
        proc = ManagedProcess(
            "flower-superlink",
            argv,
            self.dir / "superlink.log",
            env=flower.flower_env(home, launch=self.launch_env),
            cwd=home,
        )
        stack.callback(proc.stop)
        wait_for_port(str(self.network.server_address), self.port, 30.0, proc)
        return proc

    def register_supernodes(self) -> None:
        """Register every node's public key with the SuperLink (authentication)."""
        keys = self.topology.security.supernode_keys
        if keys is None:
            return
        for host in self.inventory.clients:
            key = keys.get(host.name)
            if key is None or not key.exists():
                raise RunFailed(
                    f"no SuperNode public key for {host.name} (looked for {key}); "
                    f"run `flowerbed cluster provision {self.inventory.path}` first"
                )
            argv = flower.flwr_supernode_register_argv(BIN_DIR, key)
            result = _flwr(argv, self.cli_env, 30.0)
            if result.returncode != 0:
                raise RunFailed(
                    f"registering {host.name}'s SuperNode key failed: "
                    f"`{flower.display(argv)}` exited {result.returncode}:\n"
                    f"{(result.stdout + result.stderr)[-1500:]}"
                )

    def _supernode_poll(self) -> Callable[[str, list[str]], list[str]] | None:
        """The ``supernode-poll`` lever's command wrapper, or None when it is off."""
        idle_s = self.campaign.launch.supernode_poll_s
        if idle_s is None:
            return None
        series = supported_series()
        return lambda python, argv: supernode_poll_argv(
            python, argv, idle_s, SUPERNODE_HANDOFF_S, series
        )

    def start_supernode(self, host: Host) -> Background:
        """The SuperNode of ``host`` (again, after a fault: its log continues)."""
        config = node_config_for(
            self.inventory, host, self.campaign.clock_offsets_ns.get(host.name, 0)
        )
        node_dir = self.node_dir(host)
        warm = self.warm_nodes.get(host.name)
        proc = start_supernode(
            self.site(host),
            self.address,
            config,
            node_dir,
            f"{node_dir}/nodes/{host.name}.log",
            self.launch_env,
            wrap_env=warm.env if warm is not None else None,
            wrap_argv=self._supernode_poll(),
        )
        self.supernodes[host.name] = proc
        return proc

    def start_supernodes(self, stack: ExitStack) -> list[Background]:
        """Every SuperNode (after its zygote, with the warm launcher); on unwinding
        the SuperNodes stop first, then the zygotes, then their logs are read."""
        zygotes: list[Background] = []
        stack.callback(self.collect_warm)
        stack.callback(stop_all, zygotes)
        zygotes += self.start_zygotes()
        procs: list[Background] = []
        stack.callback(stop_all, procs)
        for host in self.inventory.clients:
            procs.append(self.start_supernode(host))
        return procs

    def start_zygotes(self) -> list[Background]:
        """The warm launcher's zygote and shim on every node, if the lever is on
        and Flower is a tested version (else a warning: the run launches stock)."""
        if self.warm is None:
            return []
        if not self.warm.enabled:
            warn(f"warm-launcher: {self.warm.reason}")
            return []
        preload = preload_for(self.campaign.app == DEFAULT_APP)
        for host in self.inventory.clients:
            site, node_dir = self.site(host), self.node_dir(host)
            node = warm_node(site, node_dir)
            install_shim(site, node)
            home = f"{node_dir}/flwr/{host.name}"
            site.executor.run(["mkdir", "-p", home])
            self.zygotes[host.name] = start_zygote(
                site,
                node,
                home,
                f"{node_dir}/nodes/{host.name}.zygote.log",
                site.env(home, self.launch_env),
                preload,
                self.warm.series,
            )
            self.warm_nodes[host.name] = node
        for name, proc in self.zygotes.items():
            state = wait_zygote(proc)
            if state != "ready":
                warn(f"warm-launcher: the zygote on {name} is {state}; stock there")
        return list(self.zygotes.values())

    def collect_warm(self) -> None:
        """Each node's zygote report for the manifest (after the zygotes stopped)."""
        for name, proc in self.zygotes.items():
            supernode = self.supernodes.get(name)
            self.warm_reports[name] = node_report(
                proc.log_tail(100_000),
                supernode.log_tail(100_000) if supernode is not None else "",
            )

    def warm_manifest(self) -> dict[str, object] | None:
        """The run's warm-launcher record: the controller's decision, per node."""
        if self.warm is None:
            return None
        return {**self.warm.manifest(), "nodes": dict(self.warm_reports)}

    def run_config(self, declared: frozenset[str]) -> dict[str, flower.ConfigValue]:
        """Run config for the app: the campaign's workload, our keys, and the
        generic keys (rounds, strategy...) the app declares."""
        unknown = sorted(set(self.campaign.workload_dict) - declared)
        if unknown:
            raise RunFailed(
                f"the app {self.campaign.app} declares no run-config key(s) "
                f"{', '.join(unknown)} (campaign key workload); it declares: "
                f"{', '.join(sorted(declared))}"
            )
        generic: dict[str, flower.ConfigValue] = {
            "num-server-rounds": self.campaign.rounds,
            "strategy": self.campaign.strategy.name,
            "min-nodes": len(self.inventory.clients),
            "round-timeout-s": float(self.campaign.round_timeout_s),
            "strategy-parameters": json.dumps(dict(self.campaign.strategy.parameters)),
        }
        values = {k: v for k, v in generic.items() if k in declared}
        values.update(self.campaign.workload_dict)
        values[EVENT_LOG_KEY] = str(self.events_path.resolve())
        values[RUN_ID_KEY] = self.plan.run_id
        values[NODE_WAIT_KEY] = float(self.campaign.node_wait)
        values.update(self.campaign.launch.run_config())
        return values

    def submit(self) -> None:
        home = self.dir / "flwr" / "cli"
        home.mkdir(parents=True, exist_ok=True)
        run_config = self.dir / "run_config.toml"
        if self.campaign.instrument:
            bundle_dir = self.dir / "app"
            shutil.rmtree(bundle_dir, ignore_errors=True)
            try:
                bundle = prepare_bundle(self.campaign.app, bundle_dir)
            except BundleError as err:
                raise RunFailed(str(err)) from None
            app_dir, values = bundle.path, self.run_config(bundle.config_keys)
        else:  # the app exactly as written: the overhead benchmark's baseline
            declared = frozenset(
                flatten_config(
                    read_app_config(self.campaign.app / "pyproject.toml")["tool"][
                        "flwr"
                    ]["app"].get("config", {})
                )
            )
            values = self.run_config(declared)
            for key in (EVENT_LOG_KEY, RUN_ID_KEY, NODE_WAIT_KEY, *LAUNCH_KEYS):
                del values[key]
            app_dir = self.campaign.app
        run_config.write_text(flower.run_config_toml(values))
        argv = flower.flwr_run_argv(BIN_DIR, app_dir, run_config)
        result = _flwr(argv, self.cli_env, 120.0)
        try:
            self.flower_run_id = str(json.loads(result.stdout)["run-id"])
        except (json.JSONDecodeError, KeyError):
            raise RunFailed(
                f"`{flower.display(argv)}` did not start a run "
                f"(exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-2000:]}"
            ) from None

    def write_connection(self) -> None:
        """The ``flwr`` CLI's connection to this run's SuperLink."""
        home = self.dir / "flwr" / "cli"
        home.mkdir(parents=True, exist_ok=True)
        ca = self.tls.ca_cert if self.tls is not None else None
        (home / "config.toml").write_text(flower.connection_toml(self.address, ca))

    def stop_flower_run(self) -> None:
        if self.flower_run_id and not self.finished:
            _flwr(
                flower.flwr_stop_argv(BIN_DIR, int(self.flower_run_id)),
                self.cli_env,
                30.0,
            )

    def flower_status(self) -> str:
        """Flower's status of the run (``running``, ``finished:completed``, ...)."""
        return _run_status(self.cli_env, self.flower_run_id)

    def flower_elapsed(self) -> float | None:
        """Flower's own ``elapsed`` of the run, once Flower marks it finished."""
        return _finished_elapsed(self.cli_env, self.flower_run_id)

    def serverapp_log(self) -> str:
        if not self.flower_run_id:
            return ""
        argv = [
            str(BIN_DIR / "flwr"),
            "log",
            self.flower_run_id,
            flower.CONNECTION_NAME,
            "--show",
        ]
        try:
            result = _flwr(argv, self.cli_env, 30.0)
        except subprocess.TimeoutExpired:
            return ""
        (self.dir / "serverapp.log").write_text(result.stdout + result.stderr)
        return result.stdout[-3000:]
