"""The warm launcher in a run: the guard's decision, per-node paths, shim, environment,
a real zygote started through a site's executor, and the stock fallback."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from inventory.models import Host
from testbed.campaign import warm
from testbed.campaign.launch import parse_launch
from testbed.campaign.run import Run
from testbed.campaign.sites import NodeSite, ssh_site, start_supernode
from testbed.launch.guard import installed_flwr_version
from testbed.launch.wiring import SOCKET_ENV
from testbed.transport.executor import LocalExecutor, NetnsExecutor
from testbed.transport.processes import stop_all

HOST = Host(name="node1", ansible_host="10.0.0.11")
VENV_BIN = str(Path(sys.executable).parent)


def _netns_site() -> NodeSite:
    return NodeSite(HOST, "netns", LocalExecutor(), bin_dir=VENV_BIN)


def test_the_tested_flower_runs_warm_and_another_falls_back() -> None:
    assert warm.decide("1.42.0").enabled
    refused = warm.decide("1.43.0")
    assert not refused.enabled
    assert "launching stock" in refused.reason
    assert refused.manifest()["flwr_version"] == "1.43.0"


def test_the_series_override_forces_the_guard_to_refuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert warm.supported_series({}) == ("1.42",)
    monkeypatch.setenv(warm.SERIES_ENV, "0.0, 9.9")
    assert warm.supported_series() == ("0.0", "9.9")
    decision = warm.decide(installed_flwr_version())
    assert not decision.enabled
    assert decision.series == ("0.0", "9.9")


def test_socket_paths_are_short_and_absolute_on_every_transport() -> None:
    netns = warm.warm_node(_netns_site(), "/tmp/a/very/long/run/folder" * 5)
    assert netns.socket == "/run/flowerbed/node1.sock"
    in_ns = NodeSite(HOST, "netns", NetnsExecutor("fbe12ab-node1"), bin_dir="/v")
    assert warm.warm_node(in_ns, "/r").socket == "/run/flowerbed/fbe12ab-node1.sock"
    assert netns.shim_dir.endswith("/warm/node1")
    ssh = warm.warm_node(ssh_site(HOST, LocalExecutor(), "/home/pi"), "/r")
    assert (
        ssh.socket
        == f"{ssh_site(HOST, LocalExecutor(), '/home/pi').root}/warm/node1.sock"
    )
    long_home = "/home/" + "p" * 120
    with pytest.raises(ValueError, match="107 bytes"):
        warm.warm_node(ssh_site(HOST, LocalExecutor(), long_home), "/r")


def test_the_supernode_env_puts_the_shim_first_and_changes_nothing_else() -> None:
    node = warm.WarmNode(socket="/run/flowerbed/node1.sock", shim_dir="/r/warm/node1")
    base = {"PATH": "/v/bin:/usr/bin", "FLWR_HOME": "/h"}
    env = node.env(base)
    assert env["PATH"] == "/r/warm/node1:/v/bin:/usr/bin"
    assert env[SOCKET_ENV] == "/run/flowerbed/node1.sock"
    assert {k: v for k, v in env.items() if k not in ("PATH", SOCKET_ENV)} == {
        "FLWR_HOME": "/h"
    }


def test_preload_never_names_an_app_module() -> None:
    assert warm.preload_for(False) == warm.PRELOAD
    assert set(warm.preload_for(True)) - set(warm.PRELOAD) == {
        "strategies.registry",
        "workloads",
    }


@pytest.mark.parametrize("transport", ["netns", "ssh"])
def test_the_shim_is_installed_executable_on_every_transport(
    transport: str, tmp_path: Path
) -> None:
    if transport == "ssh":
        site = ssh_site(HOST, LocalExecutor(), str(tmp_path))
        node = warm.WarmNode(f"{site.root}/warm/node1.sock", str(tmp_path / "s"))
    else:
        site = _netns_site()
        node = warm.WarmNode(str(tmp_path / "z" / "n.sock"), str(tmp_path / "s"))
    warm.install_shim(site, node)
    shim = tmp_path / "s" / "flwr-clientapp"
    assert os.access(shim, os.X_OK)
    assert shim.read_text().startswith(f"#!{site.python} -IS\n")
    assert Path(node.socket).parent.is_dir()


class _RecordingExecutor(LocalExecutor):
    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Any:
        self.started.append({"name": name, "env": dict(env or {})})
        return None


def test_start_supernode_applies_the_warm_env(tmp_path: Path) -> None:
    executor = _RecordingExecutor()
    site = NodeSite(HOST, "netns", executor, bin_dir="/v/bin")
    node = warm.WarmNode("/run/flowerbed/node1.sock", "/r/warm/node1")
    start_supernode(site, "1.2.3.4:9092", {}, str(tmp_path), "log", None, node.env)
    start_supernode(site, "1.2.3.4:9092", {}, str(tmp_path), "log")
    warm_env, stock_env = (s["env"] for s in executor.started)
    assert warm_env[SOCKET_ENV] == node.socket
    assert warm_env["PATH"].split(":")[0] == node.shim_dir
    assert SOCKET_ENV not in stock_env


@pytest.fixture
def short_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fbw") as folder:
        yield Path(folder)


@pytest.mark.parametrize(
    ("series", "expected", "active"),
    [(("1.42",), "ready", True), (("0.0",), "refused", False)],
)
def test_a_real_zygote_reports_ready_or_refused(
    short_dir: Path, series: tuple[str, ...], expected: str, active: bool
) -> None:
    site = _netns_site()
    node = warm.WarmNode(str(short_dir / "n.sock"), str(short_dir / "shim"))
    env = dict(os.environ)
    proc = warm.start_zygote(
        site, node, str(short_dir), str(short_dir / "z.log"), env, (), series
    )
    try:
        assert warm.wait_zygote(proc, timeout_s=60.0) == expected
    finally:
        stop_all([proc])
    report = warm.node_report(
        (short_dir / "z.log").read_text(), "x\nflowerbed-warm: refused\n"
    )
    assert report["active"] is active
    assert report["forks"] == 0
    assert report["shim_fallbacks"] == 1


def test_an_unsupported_flower_falls_back_to_stock_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run: Any = SimpleNamespace(
        warm=warm.decide("1.43.0"), zygotes={}, warm_reports={}, supernodes={}
    )
    assert Run.start_zygotes(run) == []
    assert "warning: warm-launcher: flwr 1.43.0 is not in the tested" in (
        capsys.readouterr().err
    )
    Run.collect_warm(run)
    record = Run.warm_manifest(run)
    assert record is not None
    assert record["enabled"] is False
    assert record["nodes"] == {}
    # the lever stays listed: the manifest says it was asked for and fell back
    assert "warm-launcher" in parse_launch("low-latency", ["warm-launcher"]).levers


class _Proc:
    def __init__(self, name: str, order: list[str]) -> None:
        self.name, self.order, self.stopped = name, order, False

    def gone(self) -> bool:
        return self.stopped

    def signal(self, sig: int) -> None:
        self.order.append(f"{self.name} {sig}")
        self.stopped = True

    def reap(self) -> None:
        pass


@pytest.mark.parametrize("fails", [False, True])
def test_supernodes_stop_before_zygotes_then_logs_are_read(fails: bool) -> None:
    order: list[str] = []

    def collect() -> None:
        order.append("collect")

    run: Any = SimpleNamespace(
        inventory=SimpleNamespace(clients=[HOST]),
        start_zygotes=lambda: [_Proc("zygote", order)],
        start_supernode=lambda host: _Proc("supernode", order),
        collect_warm=collect,
    )
    with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
        with contextlib.ExitStack() as stack:
            Run.start_supernodes(run, stack)
            if fails:
                raise RuntimeError("the run failed")
    assert order == ["supernode 15", "zygote 15", "collect"]
