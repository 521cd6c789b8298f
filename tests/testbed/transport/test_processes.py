import os
import time
from pathlib import Path

import pytest

from testbed.transport.processes import (
    ManagedProcess,
    ProcessError,
    read_stamped_log,
    stop_all,
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
