"""The one place that reads a results folder's files, recording what it skipped.

Each reader either reads its file whole, records a :class:`analysis.damage.DataGap`
(which file, which lines, which runs, rounds and nodes) and goes on with what it
could read, or, for a file nothing can be built without (``phases.parquet``, a
``manifest.json`` that is there but unreadable), raises
:class:`analysis.damage.ResultsError` naming the file and the fix.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.damage import Damage, DataGap, ResultsError
from instrumentation.schema import EventKind

if TYPE_CHECKING:  # pandas is imported where used: `campaign status` stays light.
    import pandas as pd

logger = logging.getLogger(__name__)

# Read what the damaged line belonged to, when the line itself is not JSON.
_EVENT = re.compile(rb'"event"\s*:\s*"([a-z_]{1,40})"')
_ROUND = re.compile(rb'"round"\s*:\s*(\d{1,9})\b')
_NODE = re.compile(rb'"node"\s*:\s*"([^"\\]{1,100})"')
_FIX_RERUN = (
    "restore the file from a copy, or run the campaign again (`flowerbed campaign run`)"
)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def record(damage: Damage | None, gap: DataGap) -> None:
    """Add ``gap`` to ``damage``; a reader given no collector logs it instead."""
    if damage is None:
        logger.warning("%s", gap.sentence())
    else:
        damage.add(gap)


def read_json_object(path: Path, fix: str = _FIX_RERUN) -> dict[str, Any]:
    """A JSON object file; :class:`ResultsError` names the file, line and fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"could not be read ({_reason(exc)})", path, fix) from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"not valid JSON ({exc.msg})", f"{path}:{exc.lineno}", fix
        ) from exc
    except RecursionError as exc:
        raise ResultsError("nested too deeply to read", path, fix) from exc
    if not isinstance(value, dict):
        raise ResultsError(
            f"expected a JSON object, got {type(value).__name__}", path, fix
        )
    return value


def read_manifest(results_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """``manifest.json`` and notes: a missing one is a note, a damaged one an error."""
    path = Path(results_dir) / "manifest.json"
    if not path.exists():
        return {}, [
            f"No manifest at {path}: campaign, link profiles and runs are unknown."
        ]
    manifest = read_json_object(
        path,
        "restore it from a copy, or delete it to build the report without it "
        "(campaign, link profiles and run statuses then show as unknown)",
    )
    return manifest, []


def read_phase_table(path: Path) -> pd.DataFrame:
    """``phases.parquet``, or :class:`ResultsError` naming it and the fix."""
    from analysis.phases import read_phases

    if not path.is_file():
        raise ResultsError(
            "no phase table" + (" (it is a directory)" if path.is_dir() else ""),
            path,
            "run `flowerbed campaign run` first (it writes phases.parquet and "
            "manifest.json into the results folder)",
        )
    try:
        return read_phases(path)
    except ResultsError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        # pyarrow's ArrowInvalid is a ValueError: a cut or overwritten file.
        raise ResultsError(
            f"could not be read as a phase table ({_reason(exc)})", path, _FIX_RERUN
        ) from exc


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _damaged_lines_gap(
    path: Path,
    lines: Sequence[bytes],
    numbers: Sequence[int],
    problem: str,
    kinds: Sequence[str],
    affects: Sequence[str],
) -> DataGap:
    """One gap for skipped event-log lines, with what they belonged to."""
    rounds = sorted({int(m.group(1)) for raw in lines for m in _ROUND.finditer(raw)})
    nodes = sorted({m.group(1).decode("utf-8", "replace") for raw in lines
                    for m in _NODE.finditer(raw)})  # fmt: skip
    named = [m.group(1).decode() for raw in lines for m in _EVENT.finditer(raw)]
    # A line whose kind is readable and not one the reader wants changes nothing
    # the reader computes; one whose kind is unreadable might have.
    relevant = len(named) < len(lines) or any(k in kinds for k in named)
    return DataGap(
        path=path,
        problem=problem,
        skipped="skipped",
        lines=tuple(numbers),
        runs=(path.parent.name,),
        rounds=tuple(rounds),
        nodes=tuple(nodes),
        affects=tuple(affects) if relevant else (),
    )


def scan_event_log(
    path: Path,
    kinds: Sequence[str],
    damage: Damage | None,
    affects: Sequence[str] = (),
    valid: Callable[[Mapping[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """The events of ``kinds`` in one ``events.jsonl``; every damaged line recorded.

    ``valid`` checks an event of ``kinds`` (its fields' types); one it rejects is
    skipped and recorded like a damaged line.

    Lines of other kinds are only checked to look like a JSON object (a long
    campaign's logs hold millions of events read elsewhere); those that do not,
    and every line of ``kinds``, are parsed. A line that is not a JSON object is
    skipped and recorded: "cut short by a crash" when it is the unterminated last
    line or the ``log_repaired`` event follows it, else "not valid JSON".
    """
    run = path.parent.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        record(
            damage,
            DataGap(
                path,
                f"could not be read ({_reason(exc)})",
                "not read",
                runs=(run,),
                affects=tuple(affects),
            ),
        )
        return []
    lines = data.split(b"\n")
    last_is_cut = lines[-1] != b""
    markers = [f'"{kind}"'.encode() for kind in kinds]
    events: list[dict[str, Any]] = []
    bad: list[int] = []
    invalid: list[int] = []
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        wanted = any(marker in line for marker in markers)
        if not wanted and line[:1] == b"{" and line[-1:] == b"}":
            continue
        parsed = _parse(line)
        if parsed is None:
            bad.append(index)
        elif parsed.get("event") in kinds:
            if valid is None or valid(parsed):
                events.append(parsed)
            else:
                invalid.append(index)
    cut: list[int] = []
    corrupt: list[int] = []
    for index in bad:
        following = _parse(lines[index + 1]) if index + 1 < len(lines) else None
        repaired = following is not None and (
            following.get("event") == EventKind.LOG_REPAIRED
        )
        is_last = index == len(lines) - 1
        (cut if (is_last and last_is_cut) or repaired else corrupt).append(index)
    for indices, problem in (
        (cut, "cut short by a crash"),
        (corrupt, "not valid JSON (damaged in the middle of the log)"),
        (invalid, "events with a field of the wrong type (docs/events.md)"),
    ):
        if indices:
            record(
                damage,
                _damaged_lines_gap(
                    path,
                    [lines[i] for i in indices],
                    [i + 1 for i in indices],
                    problem,
                    kinds,
                    affects,
                ),
            )
    return events


def check_log_complete(
    path: Path,
    events: Sequence[Mapping[str, Any]],
    run: Mapping[str, Any] | None,
    damage: Damage | None,
    affects: Sequence[str] = (),
) -> None:
    """Record a gap when a run the manifest calls finished has a log without its end.

    ``events`` are the log's events read with ``run_end`` among the kinds; ``run``
    is the manifest's entry for the run (None: unknown, nothing to check).
    """
    if run is None or run.get("status") != "ok":
        return
    if any(e.get("event") == EventKind.RUN_END for e in events):
        return
    seen = [r for e in events if isinstance(r := e.get("round"), int) and r >= 0]
    last = max(seen, default=0)
    completed = run.get("rounds_completed")
    missing: tuple[int, ...] = ()
    if isinstance(completed, int) and completed > last:
        missing = tuple(range(last + 1, min(completed, last + 10_000) + 1))
    record(
        damage,
        DataGap(
            path,
            "ends without its run_end event, though manifest.json says the run "
            "finished: the log was cut or truncated",
            f"everything after round {last} is missing" if seen else "events missing",
            runs=(str(run.get("run_id", path.parent.name)),),
            rounds=missing,
            affects=tuple(affects),
        ),
    )


def manifest_runs(manifest: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The manifest's runs by run id (entries that are not objects are ignored)."""
    runs = manifest.get("runs")
    return {
        str(run["run_id"]): run
        for run in (runs if isinstance(runs, list) else [])
        if isinstance(run, Mapping) and run.get("run_id")
    }


def missing_run_logs(
    results_dir: Path,
    manifest: Mapping[str, Any],
    damage: Damage | None,
    affects: Sequence[str] = (),
) -> None:
    """Record a gap for each finished run of the manifest without an event log."""
    for run_id, run in manifest_runs(manifest).items():
        if run.get("status") != "ok" or "/" in run_id or run_id in (".", ".."):
            continue
        path = Path(results_dir) / "runs" / run_id / "events.jsonl"
        if not path.exists():
            record(
                damage,
                DataGap(
                    path,
                    "missing, though manifest.json says the run finished",
                    "the run is left out",
                    runs=(run_id,),
                    affects=tuple(affects),
                ),
            )


def read_csv_table(
    path: Path,
    required: Sequence[str],
    damage: Damage | None = None,
    affects: Sequence[str] = (),
) -> tuple[pd.DataFrame | None, str]:
    """A CSV with ``required`` columns, or None and a note saying what is wrong.

    An absent file is only a note (it is optional); one that is there but cannot
    be read, or lacks a column, is also recorded as a gap.
    """
    import pandas as pd

    if not path.exists():
        return None, f"No {path.name} in the results folder."
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        problem = f"could not be read ({_reason(exc)})"
    else:
        missing = [c for c in required if c not in table.columns]
        if not missing:
            return table, ""
        problem = f"lacks columns {missing}"
    record(damage, DataGap(path, problem, "not read", affects=tuple(affects)))
    return None, f"{path} {problem}; nothing shown from it."


def read_optional_parquet(
    path: Path,
    damage: Damage | None,
    affects: Sequence[str] = (),
    **kwargs: Any,
) -> pd.DataFrame | None:
    """An optional parquet table; None (and a recorded gap) when it cannot be read."""
    import pandas as pd

    try:
        return pd.read_parquet(path, engine="pyarrow", **kwargs)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        record(
            damage,
            DataGap(
                path,
                f"could not be read ({_reason(exc)})",
                "not read",
                affects=tuple(affects),
            ),
        )
        return None
