"""What ``inventory check`` found: one row per host and check, the report, and its
rendering as text (JSON via ``CheckReport.to_json``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from testbed.commands.checkcmd import (
    GIB,
    MIB,
)

JsonScalar = str | int | float | bool | None
Role = Literal["server", "client"]

# Checks whose failure says the host could not be checked at all.
ACCESS_CHECKS = (
    "reachable",
    "host-key",
    "authenticated",
    "time-limit",
    "internal-error",
)
# --- results ----------------------------------------------------------------------


@dataclass(frozen=True)
class CheckRow:
    """One check on one host.

    ``ok`` is True (passed), False (failed: ``message`` says what to do) or None
    (unknown or skipped: ``message`` says why). ``value`` is what was found.
    """

    host: str
    check: str
    ok: bool | None
    value: JsonScalar = None
    message: str = ""

    def __post_init__(self) -> None:
        if not self.check:
            raise ValueError(f"a check row of host {self.host!r} needs a check name")
        if self.ok is False and not self.message:
            raise ValueError(
                f"failed check {self.check!r} of host {self.host!r} needs a message "
                "saying what to do"
            )

    @property
    def group(self) -> str:
        """The table column the check belongs to (``interface:wifi`` -> ``wifi``)."""
        if self.check in ACCESS_CHECKS:
            return "ssh"
        if self.check.startswith(("interface:", "route:")):
            return self.check.split(":", 1)[1]
        if self.check.startswith("clock"):
            return "clock"
        return self.check

    def to_json(self) -> dict[str, JsonScalar]:
        """The row as a JSON-able mapping."""
        return {
            "check": self.check,
            "ok": self.ok,
            "value": self.value,
            "message": self.message,
        }


@dataclass(frozen=True)
class CheckOptions:
    """Thresholds and limits of ``check_inventory``.

    ``disk_path`` is the directory whose free space is checked on every host;
    None means the login's home directory (``/`` if it has none).
    """

    disk_path: str | None = None
    min_free_disk_bytes: int = 2 * GIB
    min_available_memory_bytes: int = 512 * MIB
    min_python: tuple[int, int] = (3, 11)
    max_clock_offset_ns: int = 10_000_000
    host_timeout_s: float = 60.0
    command_timeout_s: float = 15.0
    max_workers: int = 32

    def __post_init__(self) -> None:
        if self.disk_path is not None and not self.disk_path.startswith("/"):
            raise ValueError(
                f"disk_path must be absolute, got {self.disk_path!r}; "
                "give a directory like /home/pi"
            )
        for name in ("host_timeout_s", "command_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 s, got {getattr(self, name)!r}")
        if self.max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {self.max_workers}")
        if self.max_clock_offset_ns < 0:
            raise ValueError("max_clock_offset_ns must be >= 0")


@dataclass(frozen=True)
class CheckReport:
    """All rows of one ``inventory check``, hosts in inventory order (server first)."""

    inventory: str
    hosts: tuple[str, ...]
    roles: tuple[Role, ...]
    rows: tuple[CheckRow, ...]
    networks: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no check failed (unknown checks do not fail the report)."""
        return all(row.ok is not False for row in self.rows)

    def host_rows(self, host: str) -> tuple[CheckRow, ...]:
        """The rows of ``host``, in the order they were checked."""
        return tuple(row for row in self.rows if row.host == host)

    def host_ok(self, host: str) -> bool:
        """True when no check of ``host`` failed."""
        return all(row.ok is not False for row in self.host_rows(host))

    def failures(self) -> tuple[CheckRow, ...]:
        """The failed rows, hosts in report order."""
        return tuple(row for row in self.rows if row.ok is False)

    def to_json(self) -> dict[str, object]:
        """The report as a JSON-able mapping (for ``--format json``)."""
        return {
            "inventory": self.inventory,
            "ok": self.ok,
            "networks": list(self.networks),
            "hosts": [
                {
                    "host": host,
                    "role": role,
                    "ok": self.host_ok(host),
                    "checks": [row.to_json() for row in self.host_rows(host)],
                }
                for host, role in zip(self.hosts, self.roles, strict=True)
            ],
        }


# --- rendering --------------------------------------------------------------------

MARKS: Mapping[bool | None, str] = {True: "✓", False: "✗", None: "?"}


def columns(report: CheckReport) -> tuple[str, ...]:
    """The table's check groups: access, system, one per network, clock, tools."""
    return (
        "ssh",
        "os",
        "python",
        "disk",
        "memory",
        *report.networks,
        "clock",
        "tcpdump",
        "tc",
    )


def group_mark(rows: Sequence[CheckRow]) -> str:
    """✗ if any row failed, ? if any is unknown, ✓ if all passed, - if none ran."""
    if not rows:
        return "-"
    if any(row.ok is False for row in rows):
        return MARKS[False]
    if any(row.ok is None for row in rows):
        return MARKS[None]
    return MARKS[True]


def render_text(report: CheckReport) -> str:
    """A compact table (one line per host), then the failures and unknowns.

    Marks: ✓ passed, ✗ failed, ? unknown or skipped, - not checked (the host
    could not be reached). Each failure line says what to do.
    """
    heads = columns(report)
    name_width = max([len("host"), *(len(h) for h in report.hosts)])
    widths = [max(len(h), 1) for h in heads]
    lines = [
        "  ".join(
            [
                f"{'host':<{name_width}}",
                *(f"{h:<{w}}" for h, w in zip(heads, widths, strict=True)),
            ]
        ).rstrip()
    ]
    for host in report.hosts:
        rows = report.host_rows(host)
        cells = [
            group_mark([r for r in rows if r.group == head]).ljust(width)
            for head, width in zip(heads, widths, strict=True)
        ]
        lines.append("  ".join([f"{host:<{name_width}}", *cells]).rstrip())
    problems: list[CheckRow] = []
    said: set[tuple[str, str]] = set()
    for row in report.rows:
        # An unknown that follows a problem of its group (the route of a missing
        # interface, the offset of an unsynchronised clock) repeats it: JSON only.
        if row.ok is True or (row.ok is None and (row.host, row.group) in said):
            continue
        problems.append(row)
        said.add((row.host, row.group))
    if problems:
        lines.append("")
        for row in problems:
            lines.append(f"{MARKS[row.ok]} {row.host} {row.check}: {row.message}")
    failed = [host for host in report.hosts if not report.host_ok(host)]
    lines.append("")
    if failed:
        lines.append(
            f"{len(failed)} of {len(report.hosts)} hosts have problems: "
            + ", ".join(failed)
        )
    else:
        lines.append(f"all {len(report.hosts)} hosts passed")
    return "\n".join(lines)
