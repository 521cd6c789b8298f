"""Damaged results folders: every skipped line or file is named, and marked partial."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.damage import CONVERGENCE, Damage, DataGap
from analysis.results_files import scan_event_log
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


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_results(SMALL, tmp_path_factory.mktemp("pristine"))


@pytest.fixture
def results(pristine: Path, tmp_path: Path) -> Path:
    out = tmp_path / "results"
    shutil.copytree(pristine, out)
    return out


def build(folder: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["report", "build", str(folder), *extra])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_a_gap_sentence_names_file_lines_and_what_it_touches() -> None:
    gap = DataGap(
        Path("r/events.jsonl"),
        "not valid JSON",
        "skipped",
        lines=(3, 4, 5, 9),
        runs=("wifi-r1",),
        rounds=(2,),
        affects=(CONVERGENCE,),
    )

    assert gap.sentence() == (
        "r/events.jsonl lines 3-5, 9: not valid JSON; skipped (touches run "
        "wifi-r1, round 2); computed without it: convergence and time to target."
    )


def test_two_readers_of_one_line_make_one_gap_with_both_uses(tmp_path: Path) -> None:
    log = tmp_path / "wifi-r1" / "events.jsonl"
    log.parent.mkdir()
    log.write_text('{"event":"run_start","t_ns":1}\ngarbage\n{"event":"x"}\n')
    damage = Damage()

    scan_event_log(log, ("metrics",), damage, ("a",))
    scan_event_log(log, ("fedbuff_update",), damage, ("b",))

    assert len(damage) == 1
    assert damage.gaps[0].lines == (2,)
    assert damage.gaps[0].affects == ("a", "b")


def test_a_damaged_line_of_a_kind_the_reader_ignores_affects_nothing(
    tmp_path: Path,
) -> None:
    log = tmp_path / "r1" / "events.jsonl"
    log.parent.mkdir()
    log.write_text('{"event":"phase","round":4,"node":"pi2","start_ns":1\n{}\n')
    damage = Damage()

    scan_event_log(log, ("metrics",), damage, (CONVERGENCE,))

    (gap,) = damage
    assert (gap.lines, gap.rounds, gap.nodes, gap.affects) == ((1,), (4,), ("pi2",), ())


def test_one_corrupted_event_line_is_reported_and_its_figure_marked_partial(
    results: Path,
) -> None:
    # Prepare: damage round 2's metrics line of the wifi run.
    log = results / "runs" / "wifi-r1" / "events.jsonl"
    lines = log.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"round":2' in line)
    lines[index] = lines[index][:50] + "\x00#" + lines[index][52:]
    log.write_text("\n".join(lines) + "\n")

    # Execute
    code, output = build(results)

    # Assert: the terminal, the report and data_gaps.csv say which line.
    said = f"{log} line {index + 1}: not valid JSON"
    assert code == 0
    assert f"note: {said}" in output
    assert "touches run wifi-r1, round 2" in output
    page = html.unescape((results / "report.html").read_text(encoding="utf-8"))
    findings = page[page.index("<h2>Findings</h2>") : page.index("</section>")]
    assert "Convergence and time to target are computed from partial data" in findings
    convergence = page[page.index('id="convergence"') :]
    convergence = convergence[: convergence.index("</section>")]
    assert "Partial data." in convergence
    assert "wifi (partial)" in convergence
    assert "ethernet (partial)" not in convergence
    quality = page[page.index("<h2>Data quality</h2>") :]
    assert said in quality
    gaps = pd.read_csv(results / "data_gaps.csv", dtype=str, keep_default_na=False)
    assert list(gaps["lines"]) == [str(index + 1), ""]
    assert list(gaps["rounds"]) == ["2", "2"]  # the line, then the curve's hole
    summary = (results / "summary.md").read_text(encoding="utf-8")
    assert f"Partial data: {said}" in summary


def test_strict_exits_3_on_damage_and_0_on_a_whole_folder(results: Path) -> None:
    assert build(results, "--strict")[0] == 0
    assert not (results / "data_gaps.csv").exists()
    log = results / "runs" / "ethernet-r1" / "events.jsonl"
    log.write_text(log.read_text() + '{"event":"metrics","round":4,"sc')

    code, output = build(results, "--strict")

    assert code == 3
    assert "cut short by a crash" in output


def test_a_truncated_log_says_which_rounds_are_missing(results: Path) -> None:
    log = results / "runs" / "wifi-r1" / "events.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:3]))

    code, output = build(results)

    assert code == 0
    assert f"note: {log}: ends without its run_end event" in output
    assert "everything after round 1 is missing (touches run wifi-r1, rounds 2-3)" in (
        output
    )


def test_a_deleted_log_of_a_finished_run_is_named(results: Path) -> None:
    log = results / "runs" / "wifi-r1" / "events.jsonl"
    log.unlink()

    code, output = build(results)

    assert code == 0
    assert f"note: {log}: missing, though manifest.json says the run finished" in output


def test_unreadable_optional_files_become_named_gaps(results: Path) -> None:
    (results / "system.parquet").write_bytes(b"PAR1 not really")
    (results / "transfers.csv").write_bytes(b"\xff\xfe\x00garbage\n\x00")

    code, output = build(results)

    assert code == 0
    assert f"note: {results / 'system.parquet'}: could not be read" in output
    assert "computed without it: system figures" in output
    assert f"{results / 'transfers.csv'}" in output


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("manifest.json", b'{"campaign": {"name": "x",', "not valid JSON"),
        ("manifest.json", b"[1, 2]", "expected a JSON object, got list"),
        ("phases.parquet", b"PAR1garbage", "could not be read as a phase table"),
    ],
)
def test_a_damaged_required_file_is_a_clear_error(
    results: Path, name: str, content: bytes, said: str
) -> None:
    (results / name).write_bytes(content)

    code, output = build(results)

    assert code == 2
    assert output.startswith(f"error: {results / name}")
    assert said in output
    assert "Fix:" in output


def test_report_compare_names_a_corrupted_manifest(
    results: Path, pristine: Path
) -> None:
    (results / "manifest.json").write_text('{"runs": [1,,]}')

    result = CliRunner().invoke(app, ["report", "compare", str(pristine), str(results)])

    assert result.exit_code == 2
    assert f"error: {results / 'manifest.json'}:1: not valid JSON" in result.output


@pytest.mark.parametrize("errno_name", ["EROFS", "ENOSPC", "EACCES"])
def test_an_unwritable_output_names_the_path_and_the_fix(
    results: Path, pristine: Path, monkeypatch: pytest.MonkeyPatch, errno_name: str
) -> None:
    # Root writes through chmod; the file system's answer is simulated instead.
    import errno
    import os

    real = Path.write_text

    def refuse(self: Path, *args: object, **kwargs: object) -> int:
        if self.name in ("report.html", "compare.html"):
            code = getattr(errno, errno_name)
            raise OSError(code, os.strerror(code), str(self))
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", refuse)

    code, output = build(results)
    out = results / "elsewhere"
    compared = CliRunner().invoke(
        app, ["report", "compare", str(pristine), str(results), "--out", str(out)]
    )

    assert code == 2
    assert output.startswith(f"error: cannot write {results / 'report.html'}")
    assert "Fix: report build writes report.html" in output
    assert compared.exit_code == 2, compared.output
    assert f"cannot write {out / 'compare.html'}" in compared.output
    assert "Fix: give --out a writable folder" in compared.output
