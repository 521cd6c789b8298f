"""Bandwidth traces: a link's rate over time, read from a Mahimahi or CSV file.

Two formats (docs/emulation.md, "Bandwidth traces"):

- **Mahimahi**: one integer per line, a millisecond timestamp at which one
  1500-byte packet may leave; timestamps never decrease, and the trace loops
  after the last one (its period). The opportunities are counted in bins of
  ``MAHIMAHI_BIN_S`` (100 ms): a bin with n of them carries n * 12,000 bit.
- **CSV**: rows ``t_s,mbit_s`` (a header line is optional), ``t_s`` starting at
  0 and increasing; each rate holds until the next row, the last one as long as
  the step before it, and the trace then loops.

The format is told by the content: a comma on the first data line means CSV.
Both become a :class:`BandwidthTrace`, a loop of (start, rate) steps. A rate
of 0 (an outage) is kept in the trace and replayed as ``MIN_RATE_MBIT``: HTB
needs a rate above zero. Pure: parsing takes text, reading takes a path.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from inventory.errors import FlowerbedError

TraceFormat = Literal["mahimahi", "csv"]
MAHIMAHI_PACKET_BITS = 1500 * 8
MAHIMAHI_BIN_S = 0.1
# HTB refuses a rate of 0; an outage is replayed as this (about one packet in 1.2 s).
MIN_RATE_MBIT = 0.01
MAX_TRACE_BYTES = 32 * 2**20


class TraceError(FlowerbedError, ValueError):
    """A trace file that cannot be read: the file, the line (1-based) and the fix."""

    def __init__(
        self, path: str | Path, problem: str, fix: str, line: int | None = None
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.key: str | None = None  # the profile key naming the file, once known
        self.problem = problem.rstrip(". ")
        where = str(self.path) if line is None else f"{self.path}:{line}"
        super().__init__(problem, where, fix)


@dataclass(frozen=True)
class TraceStep:
    """From ``start_s`` (seconds into the loop) the link carries ``mbit`` Mbit/s."""

    start_s: float
    mbit: float


@dataclass(frozen=True)
class BandwidthTrace:
    """A looping rate schedule: steps from 0 s, each until the next, for ``period_s``.

    ``path`` is where it was read from, ``format`` how, ``digest`` the SHA-256 of
    the file (so a manifest names exactly which trace ran).
    """

    path: str
    format: TraceFormat
    steps: tuple[TraceStep, ...]
    period_s: float
    digest: str = ""

    def __post_init__(self) -> None:
        if not self.steps or self.steps[0].start_s != 0:
            raise ValueError("a trace needs steps, the first at 0 s")
        starts = [s.start_s for s in self.steps]
        if any(b <= a for a, b in zip(starts, starts[1:], strict=False)):
            raise ValueError("trace steps must start at increasing times")
        if not self.period_s > starts[-1]:
            raise ValueError(
                f"the period {self.period_s!r} s must end after the last step"
            )
        if any(not (s.mbit >= 0 and math.isfinite(s.mbit)) for s in self.steps):
            raise ValueError("trace rates must be finite and >= 0")

    def rate_at(self, t_s: float) -> float:
        """The rate (Mbit/s) at ``t_s`` seconds, the trace looping."""
        where = t_s % self.period_s
        i = bisect.bisect_right([s.start_s for s in self.steps], where) - 1
        return self.steps[max(i, 0)].mbit

    def durations(self) -> tuple[float, ...]:
        """How long each step lasts within one loop."""
        ends = [s.start_s for s in self.steps[1:]] + [self.period_s]
        return tuple(end - s.start_s for s, end in zip(self.steps, ends, strict=True))

    @property
    def mean_mbit(self) -> float:
        """The time-weighted mean rate over one loop."""
        total = sum(
            s.mbit * d for s, d in zip(self.steps, self.durations(), strict=True)
        )
        return total / self.period_s

    def mean_between(self, start_s: float, end_s: float) -> float:
        """The time-weighted mean rate from ``start_s`` to ``end_s`` (looping)."""
        if not end_s > start_s:
            raise ValueError(f"need end > start, got {start_s!r}..{end_s!r}")
        total, t = 0.0, start_s
        starts = [s.start_s for s in self.steps]
        while t < end_s:
            offset = t % self.period_s
            i = max(bisect.bisect_right(starts, offset) - 1, 0)
            step_end = starts[i + 1] if i + 1 < len(starts) else self.period_s
            until = min(end_s, t + (step_end - offset))
            if until <= t:  # float rounding at a step's edge
                until = min(end_s, math.nextafter(t, math.inf))
            total += self.steps[i].mbit * (until - t)
            t = until
        return total / (end_s - start_s)

    def summary(self) -> dict[str, object]:
        """A JSON-ready description (for manifests): no steps, just their shape."""
        rates = [s.mbit for s in self.steps]
        return {
            "path": self.path,
            "format": self.format,
            "period_s": self.period_s,
            "steps": len(self.steps),
            "mean_mbit": round(self.mean_mbit, 4),
            "min_mbit": min(rates),
            "max_mbit": max(rates),
            "sha256": self.digest,
        }


def _merge(steps: list[tuple[float, float]]) -> tuple[TraceStep, ...]:
    """Steps with consecutive equal rates merged into one."""
    merged: list[TraceStep] = []
    for start, mbit in steps:
        if merged and merged[-1].mbit == mbit:
            continue
        merged.append(TraceStep(start, mbit))
    return tuple(merged)


def _data_lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of every line that is not blank or a comment."""
    return [
        (number, stripped)
        for number, raw in enumerate(text.splitlines(), start=1)
        if (stripped := raw.strip()) and not stripped.startswith("#")
    ]


def parse_mahimahi(text: str, path: str | Path = "<trace>") -> BandwidthTrace:
    """Parse a Mahimahi trace (one packet timestamp in ms per line).

    Raises
    ------
    TraceError
        For a line that is not a whole number of ms, a timestamp smaller than the
        one before, or a trace whose last timestamp is 0 (no period).
    """
    times: list[int] = []
    for number, line in _data_lines(text):
        if not line.isdigit():
            raise TraceError(
                path,
                f"{line[:40]!r} is not a timestamp: a Mahimahi trace has one whole "
                "number of milliseconds per line",
                "write one integer per line (the ms at which one 1500-byte packet "
                "may leave), or give a CSV of t_s,mbit_s with a comma on every line",
                number,
            )
        value = int(line)
        if times and value < times[-1]:
            raise TraceError(
                path,
                f"timestamp {value} ms comes after {times[-1]} ms: Mahimahi "
                "timestamps never decrease",
                "sort the lines by timestamp",
                number,
            )
        times.append(value)
    if not times:
        raise TraceError(
            path,
            "the trace has no timestamps",
            "give one ms timestamp per line, or a CSV of t_s,mbit_s",
            1,
        )
    period_ms = times[-1]
    if period_ms <= 0:
        raise TraceError(
            path,
            "the last timestamp is 0 ms, so the trace has no length to loop over",
            "end the trace with the timestamp (ms) at which it repeats",
            len(text.splitlines()),
        )
    bin_ms = round(MAHIMAHI_BIN_S * 1000)
    bins = math.ceil(period_ms / bin_ms)
    counts = [0] * bins
    for value in times:
        # A timestamp equal to the period belongs to the next loop's 0 ms.
        counts[(value % period_ms) // bin_ms] += 1
    steps = []
    for i, count in enumerate(counts):
        width_ms = min(bin_ms, period_ms - i * bin_ms)
        mbit = count * MAHIMAHI_PACKET_BITS / (width_ms / 1000) / 1e6
        steps.append((i * bin_ms / 1000, mbit))
    return BandwidthTrace(
        str(path), "mahimahi", _merge(steps), period_ms / 1000, _digest(text)
    )


def _number(cell: str, path: str | Path, number: int, what: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise TraceError(
            path,
            f"{what} {cell.strip()[:30]!r} is not a number >= 0",
            "write each row as t_s,mbit_s with plain numbers, e.g. 0.5,12.3",
            number,
        )
    return value


def parse_csv(text: str, path: str | Path = "<trace>") -> BandwidthTrace:
    """Parse a CSV trace of ``t_s,mbit_s`` rows (header optional).

    Raises
    ------
    TraceError
        For a row without exactly two cells, a value that is not a number >= 0, a
        first time that is not 0, or times that do not increase.
    """
    rows: list[tuple[float, float]] = []
    lines = _data_lines(text)
    for index, (number, line) in enumerate(lines):
        cells = line.split(",")
        if index == 0 and cells and not _is_number(cells[0]):
            continue  # the header
        if len(cells) != 2:
            raise TraceError(
                path,
                f"row has {len(cells)} cell(s), a CSV trace has two: t_s,mbit_s",
                "write each row as t_s,mbit_s, e.g. 0.5,12.3",
                number,
            )
        t_s = _number(cells[0], path, number, "t_s")
        mbit = _number(cells[1], path, number, "mbit_s")
        if not rows and t_s != 0:
            raise TraceError(
                path,
                f"the first row starts at t_s={t_s:g}, not 0",
                "start the trace at t_s = 0 (shift every t_s by the first one)",
                number,
            )
        if rows and t_s <= rows[-1][0]:
            raise TraceError(
                path,
                f"t_s={t_s:g} does not come after the row before (t_s={rows[-1][0]:g})",
                "sort the rows by t_s and give each time once",
                number,
            )
        rows.append((t_s, mbit))
    if not rows:
        raise TraceError(
            path,
            "the trace has no rows",
            "give rows of t_s,mbit_s, starting at t_s = 0",
            1,
        )
    last = rows[-1][0] - rows[-2][0] if len(rows) > 1 else 1.0
    return BandwidthTrace(
        str(path), "csv", _merge(rows), rows[-1][0] + last, _digest(text)
    )


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def detect_format(text: str) -> TraceFormat:
    """``csv`` when the first data line has a comma, else ``mahimahi``."""
    lines = _data_lines(text)
    return "csv" if lines and "," in lines[0][1] else "mahimahi"


def parse_trace(text: str, path: str | Path = "<trace>") -> BandwidthTrace:
    """Parse either format, told apart by :func:`detect_format`."""
    if detect_format(text) == "csv":
        return parse_csv(text, path)
    return parse_mahimahi(text, path)


def read_trace(path: str | Path) -> BandwidthTrace:
    """Read and parse the trace file at ``path``.

    Raises
    ------
    TraceError
        For a missing, unreadable, binary or oversized file, or a malformed trace.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_TRACE_BYTES + 1)
    except FileNotFoundError:
        raise TraceError(
            path,
            "trace file not found",
            "check the path (a relative one is relative to the inventory file), or "
            "start from inventory/examples/traces/ (bench/make_traces.py makes them)",
        ) from None
    except OSError as err:
        raise TraceError(
            path,
            f"cannot read the trace file: {err.strerror}",
            "check the path and its permissions",
        ) from None
    if len(data) > MAX_TRACE_BYTES:
        raise TraceError(
            path,
            f"the trace file is larger than {MAX_TRACE_BYTES // 2**20} MiB",
            "check that the path names the trace, or shorten the trace",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TraceError(
            path,
            "is not UTF-8 text (a binary file?)",
            "give a Mahimahi trace or a CSV of t_s,mbit_s as text",
            data[: err.start].count(b"\n") + 1,
        ) from None
    return parse_trace(text, path)


def phase_offset_s(node: str, period_s: float) -> float:
    """Where in the loop ``node`` starts: a fraction of the period hashed from its
    name, so nodes replaying one trace do not fade in lockstep (deterministic)."""
    fraction = int(hashlib.sha256(node.encode()).hexdigest()[:8], 16) / 2**32
    return fraction * period_s
