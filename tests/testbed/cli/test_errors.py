"""The command line's edge: clear errors (exit 2), a crash log for bugs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from testbed.campaign.status import CampaignStatus, write_status
from testbed.cli import app
from testbed.cli.errors import BAD_INPUT, CRASHED


def status_of(folder: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["campaign", "status", str(folder)])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def valid_status(folder: Path) -> dict[str, object]:
    write_status(folder, CampaignStatus("c", 2, 3, 1, pid=1))
    loaded: dict[str, object] = json.loads((folder / "status.json").read_text())
    return loaded


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("cut", "not valid JSON"),
        ("empty", "is empty"),
        ("list", "expected a JSON object, got list"),
        ("missing-key", "key 'pid' is missing"),
        ("wrong-type", "key 'round' is 'two', not a int"),
        ("binary", "could not be read"),
        ("directory", "could not be read (Is a directory)"),
    ],
)
def test_campaign_status_on_a_damaged_status_file_is_a_clear_error(
    tmp_path: Path, damage: str, said: str
) -> None:
    # Prepare
    data = valid_status(tmp_path)
    path = tmp_path / "status.json"
    text = json.dumps(data)
    if damage == "cut":
        path.write_text(text[: len(text) // 2])
    elif damage == "empty":
        path.write_text("")
    elif damage == "list":
        path.write_text("[]")
    elif damage == "missing-key":
        path.write_text(json.dumps({k: v for k, v in data.items() if k != "pid"}))
    elif damage == "wrong-type":
        path.write_text(json.dumps({**data, "round": "two"}))
    elif damage == "binary":
        path.write_bytes(b"\xff\xfe\x00\x81")
    else:
        path.unlink()
        path.mkdir()

    # Execute
    code, output = status_of(tmp_path)

    # Assert
    assert code == BAD_INPUT
    assert output.startswith(f"error: {path}")
    assert said in output
    assert "Fix:" in output


def test_a_valid_status_still_shows(tmp_path: Path) -> None:
    valid_status(tmp_path)

    code, output = status_of(tmp_path)

    assert code == 0
    assert output.startswith("campaign c:")


def test_a_bug_goes_to_a_crash_log_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a reader that fails in a way nobody planned for.
    import testbed.campaign.status as status

    def broken(folder: Path) -> dict[str, object]:
        raise RuntimeError("planted bug")

    monkeypatch.setattr(status, "read_status", broken)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    # Execute
    code, output = status_of(tmp_path)

    # Assert
    logs = list((tmp_path / "cache" / "flowerbed").glob("crash-*.log"))
    assert code == CRASHED
    assert len(logs) == 1
    assert len(output.strip().splitlines()) == 1
    assert str(logs[0]) in output
    assert "RuntimeError: planted bug" in logs[0].read_text()
    assert "Traceback" in logs[0].read_text()


def test_a_known_error_from_any_command_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import testbed.campaign.status as status
    from analysis.damage import ResultsError

    def refuse(folder: Path) -> dict[str, object]:
        raise ResultsError("is odd", folder / "x", "do y")

    monkeypatch.setattr(status, "read_status", refuse)

    code, output = status_of(tmp_path)

    assert code == BAD_INPUT
    assert output == f"error: {tmp_path / 'x'}: is odd. Fix: do y.\n"


def test_a_permission_or_full_disk_error_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import testbed.campaign.status as status

    def denied(folder: Path) -> dict[str, object]:
        raise PermissionError(errno.EACCES, "Permission denied", str(folder / "s"))

    monkeypatch.setattr(status, "read_status", denied)

    code, output = status_of(tmp_path)

    assert code == BAD_INPUT
    assert output.startswith(f"error: {tmp_path / 's'}: Permission denied. Fix:")


def test_a_reader_that_goes_away_is_not_a_crash(tmp_path: Path) -> None:
    # Prepare: `flowerbed strategies list --format json | head -0`: the pipe's
    # read end is closed before flowerbed writes a byte.
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    cmd = [
        sys.executable,
        "-m",
        "testbed.cli",
        "strategies",
        "list",
        "--format",
        "json",
    ]

    # Execute
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    code = proc.wait(timeout=60)

    # Assert: the shell's exit code for SIGPIPE, no crash log, nothing on stderr.
    assert code == 141, stderr
    assert stderr == ""
    assert not (tmp_path / "cache" / "flowerbed").exists()
