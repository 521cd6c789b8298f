"""The supernode-poll lever: the SuperNode's fixed sleeps shortened, nothing else."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from testbed.launch import supernode_poll
from testbed.launch.supernode_poll import (
    ACTIVE_PREFIX,
    INACTIVE_PREFIX,
    ShortSleeps,
    patch_loop,
)
from testbed.launch.wiring import supernode_poll_argv

REPO = Path(__file__).resolve().parents[3]


class _Clock(types.ModuleType):
    """A stand-in ``time`` that records sleeps."""

    def __init__(self) -> None:
        super().__init__("time")
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def monotonic(self) -> float:
        return 42.0


def test_only_the_two_fixed_sleeps_are_shortened() -> None:
    clock = _Clock()
    sleeps = ShortSleeps(clock, idle_s=0.2, handoff_s=0.05)
    for seconds in (3, 0.5, 1.0, 0.25):
        sleeps.sleep(seconds)
    assert clock.slept == [0.2, 0.05, 1.0, 0.25]
    assert sleeps.monotonic() == 42.0  # everything else is the real module's


def test_patch_loop_replaces_the_loops_time_only() -> None:
    loop = types.ModuleType("loop")
    loop.time = _Clock()  # type: ignore[attr-defined]
    patch_loop(loop, 0.1, 0.05)
    assert isinstance(loop.time, ShortSleeps)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="no module-level `time`"):
        patch_loop(types.ModuleType("bare"), 0.1, 0.05)


def test_argv_wraps_the_supernodes_own_arguments() -> None:
    argv = ["/venv/bin/flower-supernode", "--superlink", "10.0.0.1:9092", "--insecure"]
    wrapped = supernode_poll_argv("/venv/bin/python", argv, 0.2, 0.05, ("1.42",))
    assert wrapped == [
        "/venv/bin/python",
        "-m",
        "testbed.launch.supernode_poll",
        "--idle-s",
        "0.2",
        "--handoff-s",
        "0.05",
        "--supported",
        "1.42",
        "--",
        "--superlink",
        "10.0.0.1:9092",
        "--insecure",
    ]
    with pytest.raises(ValueError, match="empty"):
        supernode_poll_argv("/venv/bin/python", [], 0.2, 0.05)


def test_bad_intervals_are_refused() -> None:
    with pytest.raises(SystemExit):
        supernode_poll.main(["--idle-s", "0", "--handoff-s", "0.05", "--", "--help"])


def _run(*supported: str) -> subprocess.CompletedProcess[str]:
    flags = [arg for series in supported for arg in ("--supported", series)]
    return subprocess.run(
        [sys.executable, "-m", "testbed.launch.supernode_poll"]
        + ["--idle-s", "0.2", "--handoff-s", "0.05", *flags, "--", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_a_real_supernode_starts_through_it_on_a_tested_flower() -> None:
    done = _run()
    assert done.returncode == 0, done.stderr
    assert ACTIVE_PREFIX in done.stderr and "idle sleep 3 -> 0.2 s" in done.stderr
    assert "--superlink" in done.stdout  # flower-supernode's own help


def test_an_untested_flower_runs_the_supernode_unchanged_and_says_so() -> None:
    done = _run("9.9")
    assert done.returncode == 0, done.stderr
    assert INACTIVE_PREFIX in done.stderr and "9.9" in done.stderr
    assert ACTIVE_PREFIX not in done.stderr
