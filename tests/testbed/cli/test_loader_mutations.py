"""Property tests: mutated inventory and campaign files never give a traceback.

Random edits of the shipped files (a line deleted, duplicated or cut, a character
replaced) through `inventory validate` and `campaign check`, in-process.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from testbed.cli import app

REPO = Path(__file__).resolve().parents[3]
INVENTORY = REPO / "inventory" / "examples" / "emulated.yaml"
CAMPAIGN = REPO / "campaigns" / "demo.yaml"
CHARS = st.sampled_from(list(":-[]{}&*!|>'\"#\t\x00 ab1.\n"))


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "cut", "char"]))
        line = lines[index]
        if action == "delete":
            lines.pop(index)
        elif action == "duplicate":
            lines.insert(index, line)
        elif action == "cut":
            lines[index] = line[: draw(st.integers(0, len(line)))]
        else:
            at = draw(st.integers(0, len(line)))
            lines[index] = line[:at] + draw(CHARS) + line[at + 1 :]
        if not lines:
            lines = [""]
    return "".join(lines)


def _invoke(argv: list[str]) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output


SETTINGS = settings(
    max_examples=60,
    deadline=5000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(text=mutated(INVENTORY.read_text()))
def test_a_mutated_inventory_gives_a_result_or_a_clear_error(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    _invoke(["inventory", "validate", "--format", "json", str(path)])


@SETTINGS
@given(text=mutated(CAMPAIGN.read_text()))
def test_a_mutated_campaign_gives_a_result_or_a_clear_error(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    _invoke(["campaign", "check", str(path), "-i", str(INVENTORY), "-o", str(out)])
