"""Random damage to a results folder: `report build` never prints a traceback or
hangs; it gives a clear error (exit 2), or notes the damage (exit 3 with --strict),
or, with no note, the same numbers as the whole folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from analysis.synthetic import SyntheticCampaign, write_synthetic_results
from testbed.cli import app

SMALL = SyntheticCampaign(
    uplink_s={"ethernet": 0.1, "wifi": 0.5},
    downlink_s={"ethernet": 0.08, "wifi": 0.3},
    nodes=2,
    rounds=3,
    repetitions=1,
    straggler=None,
)
FILES = (
    "runs/wifi-r1/events.jsonl",
    "runs/ethernet-r1/events.jsonl",
    "manifest.json",
    "phases.parquet",
    "system.parquet",
)
# The tables whose numbers must not change without a note.
NUMBERS = ("study.csv", "convergence.csv", "time_to_target.csv", "learning.csv")
GARBAGE = (b"", b"[]", b'"x"', b"null", b"\xff\xfe\x00", b"{", b"}\n{", b"[" * 5000)


def _mutate(path: Path, action: str, where: float, garbage: bytes) -> None:
    data = path.read_bytes()
    if action == "truncate":
        path.write_bytes(data[: int(len(data) * where)])
    elif action == "garbage-line":
        lines = data.split(b"\n")
        lines[min(int(len(lines) * where), len(lines) - 1)] = garbage
        path.write_bytes(b"\n".join(lines))
    elif action == "replace":
        path.write_bytes(garbage)
    elif action == "delete":
        path.unlink()
    else:  # a directory where the file was
        path.unlink()
        path.mkdir()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = write_synthetic_results(SMALL, tmp_path_factory.mktemp("whole"))
    pristine = tmp_path_factory.mktemp("pristine") / "results"
    shutil.copytree(folder, pristine)
    result = CliRunner().invoke(app, ["report", "build", str(folder), "--strict"])
    assert result.exit_code == 0, result.output
    return pristine, {n: (folder / n).read_text() for n in NUMBERS}


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.sampled_from(FILES),
    action=st.sampled_from(
        ("truncate", "garbage-line", "replace", "delete", "directory")
    ),
    where=st.floats(0.0, 1.0),
    garbage=st.sampled_from(GARBAGE),
)
def test_damage_gives_an_error_a_note_or_the_same_numbers(
    baseline: tuple[Path, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    action: str,
    where: float,
    garbage: bytes,
) -> None:
    # Prepare
    pristine, numbers = baseline
    folder = tmp_path_factory.mktemp("damaged") / "results"
    shutil.copytree(pristine, folder)
    _mutate(folder / name, action, where, garbage)

    # Execute
    result = CliRunner().invoke(app, ["report", "build", str(folder), "--strict"])

    # Assert
    output = result.output
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code in (0, 2, 3), output
    if result.exit_code == 2:
        assert output.startswith("error: "), output
        assert str(folder) in output
    elif result.exit_code == 3:
        assert "note: " in output
    else:
        for table in NUMBERS:
            assert (folder / table).read_text() == numbers[table], (table, output)


def test_the_whole_folder_reads_without_a_note(
    baseline: tuple[Path, dict[str, str]],
) -> None:
    _, numbers = baseline

    assert len(pd.read_csv(pd.io.common.StringIO(numbers["convergence.csv"])))
