"""Live campaign status: the ETA, the status file, and its rendering."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from testbed.campaign.status import (
    CampaignStatus,
    describe,
    eta_s,
    read_status,
    write_status,
)

S = 1_000_000_000


def _status(**changes: object) -> CampaignStatus:
    base = CampaignStatus(
        campaign="c",
        total_runs=6,
        rounds_per_run=4,
        started_ns=0,
        pid=1,
        run_index=3,
        run_id="wifi-r1",
        network="wifi",
        repetition=1,
        round=0,
        run_started_ns=100 * S,
        finished_runs=(("eth-r1", "ok", 40.0), ("eth-r2", "ok", 60.0)),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "now_s", "expected"),
    [
        # mean run 50 s; 20 s into run 3: 30 s left + 3 more runs
        ({}, 120, 30 + 3 * 50),
        # the current run already overran the mean: nothing left for it
        ({}, 200, 0 + 3 * 50),
        # no finished run: 2 of 4 rounds took 30 s -> 60 s per run, 6 runs
        ({"finished_runs": (), "run_index": 1, "round": 2}, 130, 30 + 5 * 60),
        ({"state": "finished"}, 500, 0),
    ],
)
def test_eta(changes: dict[str, object], now_s: int, expected: float) -> None:
    assert eta_s(_status(**changes), now_s * S) == pytest.approx(expected)


def test_no_eta_before_anything_finished() -> None:
    assert eta_s(_status(finished_runs=(), run_index=1, round=0), 130 * S) is None


def test_status_file_roundtrip_and_rendering(tmp_path: Path) -> None:
    import os

    status = write_status(tmp_path, _status(pid=os.getpid(), round=2))

    data = read_status(tmp_path)
    text = describe(data, now_ns=status.updated_ns)

    assert data["run_id"] == "wifi-r1" and data["eta_s"] is not None
    assert "run 3/6: wifi-r1" in text and "round 2/4" in text
    assert "ETA" in text and "finished runs: 2 (2 ok)" in text
    assert not list(tmp_path.glob(".status.json*"))  # written atomically


def test_a_running_status_whose_process_is_gone_says_so(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_status(tmp_path, _status(pid=dead.pid))

    text = describe(read_status(tmp_path))

    assert f"the campaign process {dead.pid} is gone" in text
    assert "ETA" not in text


def test_missing_status_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        read_status(tmp_path)


def test_cli_status_json(tmp_path: Path) -> None:
    import os

    write_status(tmp_path, _status(pid=os.getpid(), state="finished"))
    flowerbed = Path(sys.executable).parent / "flowerbed"

    out = subprocess.run(
        [str(flowerbed), "campaign", "status", str(tmp_path), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )

    data = json.loads(out.stdout)
    assert data["state"] == "finished" and data["eta_s"] == 0.0
    assert data["process_alive"] is True
