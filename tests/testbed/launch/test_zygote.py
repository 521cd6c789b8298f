"""The zygote and the shim as real processes, with test entry points for Flower's.

Each test starts a zygote serving tests/testbed/launch/entries.py, writes the shim
into a directory first on ``PATH`` (the venv's real ``flwr-clientapp`` after it)
and runs ``flwr-clientapp`` by name, as ``flower-superexec`` does.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.launch.wiring import (
    shim_env,
    write_shim,
    zygote_argv,
    zygote_events,
    zygote_report,
)

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
ENTRIES = "tests.testbed.launch.entries"


@dataclass
class Node:
    """A zygote, its log, and the environment a SuperNode would run the shim with."""

    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    socket: Path

    def events(self, kind: str) -> list[dict[str, object]]:
        return [e for e in zygote_events(self.log.read_text()) if e["event"] == kind]

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["flwr-clientapp", *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    return env


def _wait_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if '"ready"' in text or '"refused"' in text:
            return
        if proc.poll() is not None:
            return
        time.sleep(0.05)
    raise AssertionError(f"zygote not ready in 30 s:\n{log.read_text()}")


def _start(
    tmp_path: Path, entry: str, *extra: str, supported: tuple[str, ...] = ("1.42",)
) -> Node:
    sock = tmp_path / "run" / "zygote.sock"
    log = tmp_path / "zygote.log"
    env = _base_env()
    argv = zygote_argv(sys.executable, str(sock), supported_flwr=supported)
    argv += ["--entry", entry, *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
        )
    _wait_ready(proc, log)
    shim_dir = tmp_path / "shim"
    write_shim(shim_dir, sys.executable)
    env = shim_env(env, str(shim_dir), str(sock))
    env["WARM_TEST_MARKER"] = "from-the-supernode"
    return Node(proc, log, env, sock)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
            node.proc.wait(timeout=10)


def _node(
    nodes: list[Node],
    tmp_path: Path,
    entry: str,
    *extra: str,
    supported: tuple[str, ...] = ("1.42",),
) -> Node:
    node = _start(tmp_path, f"{ENTRIES}:{entry}", *extra, supported=supported)
    nodes.append(node)
    return node


def test_each_launch_is_a_forked_child_with_the_shims_io_env_cwd_and_status(
    nodes: list[Node], tmp_path: Path
) -> None:
    node = _node(nodes, tmp_path, "echo")

    first = node.run("--token", "abcdef123", "--exit", "7", stdin="hello")
    second = node.run("--token", "zzzz9999", stdin="again")

    assert first.returncode == 7, first.stderr
    assert "argv=['--token', 'abcdef123', '--exit', '7']" in first.stdout
    assert "stdin='hello'" in first.stdout
    assert f"cwd={os.getcwd()}" in first.stdout
    assert "marker=from-the-supernode" in first.stdout
    assert second.returncode == 0 and "stdin='again'" in second.stdout
    # isolation: the second child did not see the first one's module state
    assert "leaked=1" in first.stdout and "leaked=1" in second.stdout
    forks = node.events("fork")
    assert [f["token"] for f in forks] == ["abcd...", "zzzz..."]
    zygote_pid = node.proc.pid
    for fork, result in zip(forks, (first, second), strict=True):
        assert f"pid={fork['pid']} ppid={zygote_pid}" in result.stderr
    assert [e["code"] for e in node.events("exit")] == [7, 0]
    assert "flowerbed-warm" not in first.stderr + second.stderr  # no fallback


def test_a_crash_kills_one_child_and_the_shim_dies_the_same_way(
    nodes: list[Node], tmp_path: Path
) -> None:
    node = _node(nodes, tmp_path, "crash")

    result = node.run("--token", "t1")

    assert result.returncode == -signal.SIGABRT
    assert node.proc.poll() is None  # the zygote lives on
    assert [e["code"] for e in node.events("exit")] == [-signal.SIGABRT]
    assert zygote_report(node.log.read_text()).failed_exits == 1


@pytest.mark.parametrize(
    ("how", "child_dies_by"),
    [(signal.SIGTERM, signal.SIGTERM), (signal.SIGKILL, signal.SIGKILL)],
)
def test_stopping_the_shim_stops_its_child(
    nodes: list[Node], tmp_path: Path, how: int, child_dies_by: int
) -> None:
    node = _node(nodes, tmp_path, "sleeper")
    pid_file = tmp_path / "child.pid"
    shim = subprocess.Popen(
        ["flwr-clientapp", "--pid-file", str(pid_file)], env=node.env
    )
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, node.log.read_text()
        time.sleep(0.05)
    child = int(pid_file.read_text())

    shim.send_signal(how)  # SIGTERM is forwarded; SIGKILL leaves the zygote to act
    shim.wait(timeout=10)

    deadline = time.monotonic() + 10
    while not node.events("exit"):
        assert time.monotonic() < deadline, node.log.read_text()
        time.sleep(0.05)
    (exit_event,) = node.events("exit")
    assert exit_event["pid"] == child and exit_event["code"] == -child_dies_by
    assert shim.returncode == -how
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_without_a_zygote_the_shim_runs_the_real_command_and_says_why(
    tmp_path: Path,
) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / "flwr-clientapp"
    real.write_text('#!/bin/sh\necho "stock $*"\nexit 4\n')
    real.chmod(0o755)
    shim_dir = tmp_path / "shim"
    write_shim(shim_dir, sys.executable)
    base = {**os.environ, "PATH": f"{real_dir}:{os.environ['PATH']}"}
    env = shim_env(base, str(shim_dir), str(tmp_path / "absent.sock"))

    result = subprocess.run(
        ["flwr-clientapp", "--token", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 4
    assert result.stdout == "stock --token x\n"
    assert result.stderr.startswith("flowerbed-warm: zygote at ")
    assert "absent.sock unreachable" in result.stderr
    assert f"running the stock flwr-clientapp ({real})" in result.stderr


def test_an_untested_flower_version_makes_the_zygote_refuse_and_shims_fall_back(
    nodes: list[Node], tmp_path: Path
) -> None:
    node = _node(nodes, tmp_path, "echo", supported=("0.1",))

    assert node.proc.wait(timeout=10) == 3
    report = zygote_report(node.log.read_text())
    assert not report.active and report.flwr_version
    assert "not in the tested series 0.1" in report.reason
    assert not node.socket.exists()
    result = node.run("--help")  # the venv's real flwr-clientapp answers
    assert result.returncode == 0 and "usage: flwr-clientapp" in result.stdout
    assert "running the stock flwr-clientapp" in result.stderr


def test_a_launch_from_another_installation_goes_back_to_stock(
    nodes: list[Node], tmp_path: Path
) -> None:
    node = _node(nodes, tmp_path, "echo")
    other = tmp_path / "other-venv-bin"
    other.mkdir()
    (other / "flwr-clientapp").write_text("#!/bin/sh\necho other\n")
    (other / "flwr-clientapp").chmod(0o755)
    shim_dir = node.env["PATH"].split(os.pathsep)[0]
    node.env["PATH"] = os.pathsep.join([shim_dir, str(other), node.env["PATH"]])

    result = node.run("--token", "abc")

    assert result.stdout == "other\n"
    assert "refused the launch: the SuperNode's flwr-clientapp is" in result.stderr
    assert zygote_report(node.log.read_text()).refused == 1
    assert node.events("fork") == []


def test_report_of_a_serving_zygote_counts_forks(
    nodes: list[Node], tmp_path: Path
) -> None:
    node = _node(nodes, tmp_path, "echo", "--preload", "json", "--preload", "nope_x")
    for _ in range(3):
        assert node.run().returncode == 0

    report = zygote_report(node.log.read_text())

    assert report.active and report.forks == 3 and report.failed_exits == 0
    assert set(report.preloaded) == {"json"}
    assert "nope_x" in report.preload_failed
    assert report.as_manifest()["forks"] == 3


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    name = f"warm{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=20)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False, timeout=20)


@pytest.mark.root
def test_in_a_node_namespace_only_that_namespaces_launches_are_warm(
    tmp_path: Path, netns: str
) -> None:
    # Prepare: the zygote in the namespace, as the campaign starts a node's zygote.
    sock = tmp_path / "zygote.sock"
    log = tmp_path / "zygote.log"
    env = _base_env()
    argv = zygote_argv(sys.executable, str(sock), supported_flwr=("1.42",))
    argv = ["ip", "netns", "exec", netns, *argv, "--entry", f"{ENTRIES}:echo"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_ready(proc, log)
        write_shim(tmp_path / "shim", sys.executable)
        env = shim_env(env, str(tmp_path / "shim"), str(sock))

        def launch(*prefix: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*prefix, "flwr-clientapp", "--help"],  # the real one exits too
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )

        # Execute: a launch from another `ip netns exec` into the same namespace
        # (its own mount namespace), then one from the host's namespace.
        inside = launch("ip", "netns", "exec", netns)
        outside = launch()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)

    # Assert
    assert inside.returncode == 0 and "argv=['--help']" in inside.stdout
    assert "flowerbed-warm" not in inside.stderr
    assert "namespaces" in outside.stderr and "running the stock" in outside.stderr
    assert "usage: flwr-clientapp" in outside.stdout
    report = zygote_report(log.read_text())
    assert (report.forks, report.refused) == (1, 1)
