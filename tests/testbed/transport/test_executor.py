"""testbed.transport.executor: local and namespace executors."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from testbed.transport.executor import (
    CommandError,
    LocalExecutor,
    NetnsExecutor,
)
from testbed.transport.processes import ManagedProcess


def test_command_error_names_command_place_code_and_stderr() -> None:
    with pytest.raises(CommandError) as info:
        LocalExecutor().run(["sh", "-c", "echo boom >&2; exit 3"])
    text = str(info.value)
    assert "`sh -c 'echo boom >&2; exit 3'`" in text
    assert "exit code 3" in text and "local host" in text and "boom" in text
    assert info.value.returncode == 3


def test_command_timeout_is_an_error_too() -> None:
    with pytest.raises(CommandError, match="timed out after 0.2 s"):
        LocalExecutor().run(["sleep", "5"], timeout=0.2)


def test_missing_program_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="not found"):
        LocalExecutor().run(["flowerbed-no-such-program"])


def test_start_runs_in_its_own_process_group_with_a_stamped_log(
    tmp_path: Path,
) -> None:
    log = tmp_path / "echo.log"
    proc = LocalExecutor().start("echo", ["sh", "-c", "echo hello; sleep 5"], str(log))
    assert isinstance(proc, ManagedProcess)
    try:
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
        deadline = time.monotonic() + 5
        while "hello" not in proc.log_tail() and time.monotonic() < deadline:
            time.sleep(0.05)
        stamp, _, text = log.read_text().partition(" ")
        assert text.strip() == "hello" and abs(int(stamp) - time.time_ns()) < 5e9
    finally:
        proc.stop(grace_s=0.1)
    assert proc.gone()


def test_local_put_and_get_copy_files_with_mode(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("payload")
    LocalExecutor().put(src, str(tmp_path / "sub" / "b.txt"), mode=0o600)
    copied = tmp_path / "sub" / "b.txt"
    assert copied.read_text() == "payload"
    assert copied.stat().st_mode & 0o777 == 0o600
    LocalExecutor().get(str(copied), tmp_path / "back" / "c.txt")
    assert (tmp_path / "back" / "c.txt").read_text() == "payload"


@pytest.mark.root
def test_netns_executor_names_the_namespace_in_errors() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for namespaces")
    ns = "fbt" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        executor = NetnsExecutor(ns)
        links = executor.run(["ip", "-j", "link", "show"]).stdout
        assert [link["ifname"] for link in json.loads(links)] == ["lo"]
        with pytest.raises(CommandError) as info:
            executor.run(["ip", "link", "show", "dev", "eth9"])
        assert f"network namespace {ns}" in str(info.value)
        assert info.value.argv == ("ip", "link", "show", "dev", "eth9")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
