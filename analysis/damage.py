"""Damaged results: what a reader of a results folder skipped, and what it touches.

Every reader of a results folder (analysis/results_files.py) either reads a file
whole or records a :class:`DataGap` here: which file, which lines, and which
runs, rounds and nodes the gap touches. ``report build`` shows each gap in the
report (data quality, and Findings when a figure depends on it), prints it on the
terminal and, with ``--strict``, exits non-zero; a figure computed from partial
data is marked as partial where it is shown (docs/report.md, "Data quality").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from inventory.errors import FlowerbedError


class ResultsError(FlowerbedError, ValueError):
    """A results file that cannot be read at all: names the file and what to do."""


def _spans(numbers: Sequence[int]) -> str:
    """``1, 3-5, 9`` for [1, 3, 4, 5, 9]."""
    parts: list[str] = []
    ordered = sorted(set(numbers))
    start = prev = ordered[0]
    for n in [*ordered[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def _listed(noun: str, values: Sequence[object]) -> str:
    if not values:
        return ""
    if all(isinstance(v, int) for v in values):
        return f"{noun}{'s' if len(values) > 1 else ''} {_spans(values)}"  # type: ignore[arg-type]
    return f"{noun}{'s' if len(values) > 1 else ''} {', '.join(map(str, values))}"


@dataclass(frozen=True)
class DataGap:
    """One damaged results file: what was skipped and what the gap touches.

    ``problem`` says what is wrong with the file (``not valid JSON``); ``skipped``
    what the reader did about it (``the lines were skipped``, ``not read``);
    ``lines`` are 1-based; ``runs``, ``rounds`` and ``nodes`` are what the skipped
    data belonged to, as far as can be told (empty: unknown or all);
    ``affects`` names the report's figures and tables computed without it.
    """

    path: Path
    problem: str
    skipped: str
    lines: tuple[int, ...] = ()
    runs: tuple[str, ...] = ()
    rounds: tuple[int, ...] = ()
    nodes: tuple[str, ...] = ()
    affects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.problem or not self.skipped:
            raise ValueError("DataGap needs a problem and what was skipped")
        if any(n < 1 for n in self.lines):
            raise ValueError(f"DataGap lines are 1-based, got {self.lines}")

    def touches(self) -> str:
        """``run wifi-r1, round 3, node client2``; empty when nothing is known."""
        parts = [
            _listed("run", self.runs),
            _listed("round", self.rounds),
            _listed("node", self.nodes),
        ]
        return ", ".join(p for p in parts if p)

    def sentence(self) -> str:
        """One sentence for a person: file, lines, problem, what was skipped."""
        where = str(self.path)
        if self.lines:
            where += f" {_listed('line', self.lines)}"
        text = f"{where}: {self.problem}; {self.skipped}"
        touched = self.touches()
        if touched:
            text += f" (touches {touched})"
        if self.affects:
            text += f"; computed without it: {', '.join(self.affects)}"
        return text + "."

    def to_record(self) -> dict[str, str]:
        """A flat row for ``data_gaps.csv``."""
        return {
            "file": str(self.path),
            "lines": _spans(self.lines) if self.lines else "",
            "problem": self.problem,
            "skipped": self.skipped,
            "runs": " ".join(self.runs),
            "rounds": _spans(self.rounds) if self.rounds else "",
            "nodes": " ".join(self.nodes),
            "affects": "; ".join(self.affects),
        }


@dataclass
class Damage:
    """The gaps found while reading one results folder, in the order found.

    The same gap recorded by two readers of one file is kept once.
    """

    gaps: list[DataGap] = field(default_factory=list)

    def add(self, gap: DataGap) -> None:
        """Keep ``gap``; one already kept for the same file and lines gains its
        ``affects`` (two readers of one file each say what they computed)."""
        for index, kept in enumerate(self.gaps):
            if replace(kept, affects=gap.affects) == gap:
                merged = tuple(dict.fromkeys((*kept.affects, *gap.affects)))
                self.gaps[index] = replace(kept, affects=merged)
                return
        self.gaps.append(gap)

    def extend(self, gaps: Iterable[DataGap]) -> None:
        for gap in gaps:
            self.add(gap)

    def __iter__(self) -> Iterator[DataGap]:
        return iter(self.gaps)

    def __len__(self) -> int:
        return len(self.gaps)

    def __bool__(self) -> bool:
        return bool(self.gaps)

    def partial_runs(self, affecting: str | None = None) -> set[str]:
        """Run ids a gap touches (only gaps that affect ``affecting``, if given)."""
        return {
            run
            for gap in self.gaps
            if affecting is None or affecting in gap.affects
            for run in gap.runs
        }

    def affecting(self, what: str) -> list[DataGap]:
        """The gaps a figure or table named ``what`` was computed without."""
        return [gap for gap in self.gaps if what in gap.affects]

    def sentences(self) -> list[str]:
        return [gap.sentence() for gap in self.gaps]


# What the report computes from each kind of file, for DataGap.affects.
CONVERGENCE = "convergence and time to target"
ASYNCHRONY = "asynchronous timeline"
SYSTEM = "system figures"
TRANSFERS = "transfer tables and link-busy quantities"
LINK_VERDICTS = "link-or-host verdicts"
