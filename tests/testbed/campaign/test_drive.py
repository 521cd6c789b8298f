"""Tests of testbed/campaign/drive.py: how a run's end is read from its events."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from instrumentation.events import EventLog
from instrumentation.schema import EventKind
from testbed.campaign.drive import _wait


def _run(events_path: Path) -> Any:
    return SimpleNamespace(
        events_path=events_path,
        campaign=SimpleNamespace(rounds=3, run_deadline_s=60, instrument=True),
        plan=SimpleNamespace(run_id="ethernet-r1"),
        flower_status=lambda: "running",
        serverapp_log=lambda: "Traceback ...\nKeyError: 'mas'",
    )


def _log(path: Path, **end: Any) -> None:
    with EventLog(path, run_id="ethernet-r1") as events:
        events.append(EventKind.APP_START, flower_run_id=1, serverapp="x:app")
        events.append(
            EventKind.APP_END, start_ns=time.time_ns(), end_ns=time.time_ns(), **end
        )


def test_a_serverapp_that_returned_ends_the_run_ok(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _log(path, status="ok")

    status, reason, rounds = _wait(_run(path), [], time.monotonic() + 5, print)

    assert (status, reason, rounds) == ("ok", "", 0)


@pytest.mark.parametrize("error_type", ["KeyError", None])
def test_a_serverapp_that_raised_fails_the_run_with_its_error_and_log(
    tmp_path: Path, error_type: str | None
) -> None:
    # A ServerApp that cannot build its strategy writes app_end status=failed:
    # the run must not be reported ok.
    path = tmp_path / "events.jsonl"
    fields = {"error_type": error_type} if error_type else {}
    _log(path, status="failed", error="unknown strategy 'mas'", **fields)

    status, reason, _ = _wait(_run(path), [], time.monotonic() + 5, print)

    assert status == "failed"
    assert "unknown strategy 'mas'" in reason
    raised = reason.split(";")[0]
    assert raised.startswith(f"the ServerApp raised {error_type or 'error'}: ")
    assert "ServerApp log" in reason and "Traceback" in reason
