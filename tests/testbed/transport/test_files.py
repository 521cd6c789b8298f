"""testbed.transport.files: atomic writes leave the old file or the new, never half."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from testbed.transport.files import (
    copy_atomically,
    write_atomically,
    write_json_atomically,
    write_text_atomically,
)


def test_text_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "status.json"

    write_text_atomically(path, "old")
    write_text_atomically(path, "new", mode=0o600)

    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["status.json"]


def test_a_failing_writer_leaves_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "phases.csv"
    path.write_text("a,b\n1,2\n")

    def half_then_crash(tmp: Path) -> None:
        tmp.write_text("a,b\n1")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, half_then_crash)

    assert path.read_text() == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["phases.csv"]


def test_json_and_copy(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    write_json_atomically(manifest, {"runs": [1, 2], "path": Path("/x")})
    copy = tmp_path / "out" / "copy.json"

    copy_atomically(manifest, copy, mode=0o640)

    assert json.loads(copy.read_text()) == {"runs": [1, 2], "path": "/x"}
    assert stat.S_IMODE(copy.stat().st_mode) == 0o640
