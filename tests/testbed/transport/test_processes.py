import os
import socket
import sys
import time
from pathlib import Path

import pytest

from testbed.transport.processes import (
    ManagedProcess,
    ProcessError,
    read_stamped_log,
    stop_all,
    wait_for_port,
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); count it as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_output_lines_are_stamped_when_read(tmp_path: Path) -> None:
    log = tmp_path / "p.log"
    before = time.time_ns()
    proc = ManagedProcess("echoer", ["sh", "-c", "echo one; sleep 0.3; echo two"], log)
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.stop()
    lines = read_stamped_log(log)
    assert [text for _, text in lines] == ["one", "two"]
    (t1, _), (t2, _) = lines
    assert before <= t1 < t2 <= time.time_ns()
    assert 0.25 < (t2 - t1) / 1e9 < 2.0


def test_stop_kills_the_whole_group_including_grandchildren(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # the child ignores SIGTERM, like a process that will not die politely
    script = f"sh -c 'trap \"\" TERM; echo $$ > {pidfile}; sleep 300' & sleep 300"
    proc = ManagedProcess("parent", ["sh", "-c", script], tmp_path / "p.log")
    deadline = time.monotonic() + 10
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    started = time.monotonic()
    stop_all([proc], grace_s=0.5)
    assert time.monotonic() - started < 8
    assert not _alive(proc.pid)
    assert not _alive(child)


def test_a_dead_process_reports_its_log_tail(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "failer", ["sh", "-c", "echo cannot bind port 8000; exit 3"], tmp_path / "f.log"
    )
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    with pytest.raises(
        ProcessError, match=r"(?s)exited with status 3.*cannot bind port 8000"
    ):
        proc.check_alive()


def test_missing_program_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        ProcessError, match="cannot start /nonexistent/flower-superlink"
    ):
        ManagedProcess("link", ["/nonexistent/flower-superlink"], tmp_path / "x.log")


def test_wait_for_port_returns_once_the_process_listens(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listener = (
        "import socket, time; s = socket.socket(); time.sleep(0.3); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(30)"
    )
    proc = ManagedProcess("listener", [sys.executable, "-c", listener], tmp_path / "l")
    try:
        wait_for_port("127.0.0.1", port, 10.0, proc)
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    finally:
        stop_all([proc], grace_s=1.0)


def test_wait_for_port_names_a_process_that_never_listens(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = ManagedProcess(
        "mute", ["sh", "-c", "echo starting; sleep 30"], tmp_path / "m"
    )
    try:
        with pytest.raises(ProcessError, match=rf"mute did not listen on .*:{port}"):
            wait_for_port("127.0.0.1", port, 0.6, proc)
    finally:
        stop_all([proc], grace_s=1.0)
