"""What a problem says: what, where (file, line, host, key), and the fix.

:class:`FlowerbedError` is the base of every error a person can act on (one
family each: inventory, campaign, results, host); the command line prints it and
exits with code 2, never a traceback (testbed/cli/errors.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class FlowerbedError(Exception):
    """A problem in flowerbed's input: ``what`` went wrong, ``where``, the ``fix``."""

    def __init__(self, what: str, where: str | Path, fix: str) -> None:
        self.what = what.rstrip(". ")
        self.where = str(where)
        self.fix = fix.rstrip(". ")
        super().__init__(self._render())

    def _render(self) -> str:
        return f"{self.where}: {self.what}. Fix: {self.fix}."


class InventoryError(FlowerbedError, ValueError):
    """A problem in an inventory file: what, where (file, line, host, key), and the fix.

    ``key`` is dotted (``interfaces.wifi.ip``); ``line`` is 1-based or None when
    unknown; ``host`` is None for problems that belong to no single host.
    """

    def __init__(
        self,
        path: str | Path,
        problem: str,
        fix: str,
        *,
        host: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.host = host
        self.key = key
        self.line = line
        self.problem = problem.rstrip(". ")
        where = str(self.path) if line is None else f"{self.path}:{line}"
        super().__init__(self.problem, where, fix)

    def _render(self) -> str:
        where = str(self.path) if self.line is None else f"{self.path}:{self.line}"
        subject = []
        if self.host is not None:
            subject.append(f"host {self.host!r}")
        if self.key is not None:
            subject.append(f"key {self.key!r}")
        head = f"{where}: {', '.join(subject)}: " if subject else f"{where}: "
        return f"{head}{self.problem}. Fix: {self.fix}."


class InventoryErrors(InventoryError):
    """Several problems found in one inventory; ``errors`` holds each of them."""

    def __init__(self, errors: Sequence[InventoryError]) -> None:
        self.errors = tuple(errors)
        first = self.errors[0]
        super().__init__(
            first.path,
            f"{len(self.errors)} problems",
            "fix each problem listed",
            line=first.line,
        )

    def _render(self) -> str:
        listed = "\n".join(f"  - {err}" for err in self.errors)
        return f"{self.path}: {len(self.errors)} problems in the inventory:\n{listed}"
