"""The executor contract: ``Executor`` and ``Background`` protocols, ``CommandError``.

Every command gets a timeout; a failure raises ``CommandError`` naming the
command, its exit code, the tail of its stderr and where it ran. The
implementations live in :mod:`testbed.transport.executor` (local, namespace)
and :mod:`testbed.transport.ssh`; :mod:`testbed.transport.processes` implements
``Background`` for this machine.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

DEFAULT_TIMEOUT_S = 30.0
_STDERR_TAIL_CHARS = 600


class CommandError(RuntimeError):
    """A command failed or timed out; the message says which, where and why."""

    def __init__(
        self,
        argv: Sequence[str],
        where: str,
        returncode: int | None,
        stderr: str,
        timeout_s: float | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.where = where
        self.returncode = returncode
        self.stderr = stderr
        self.timeout_s = timeout_s
        command = shlex.join(self.argv)
        tail = stderr.strip()[-_STDERR_TAIL_CHARS:]
        if returncode is None and timeout_s is not None:
            what = f"timed out after {timeout_s:g} s"
        elif returncode is None:
            what = "did not finish"
        else:
            what = f"failed with exit code {returncode}"
        message = f"command `{command}` {what} on {where}"
        if tail:
            message += f": {tail}"
        super().__init__(message)


@runtime_checkable
class Background(Protocol):
    """A background process started by an executor, stopped with its whole group."""

    name: str

    def poll(self) -> int | None:
        """Exit code, or None while running."""
        ...

    def check_alive(self) -> None:
        """Raise ``ProcessError`` with the log tail if the process has exited."""
        ...

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (no error if it is gone)."""
        ...

    def gone(self) -> bool:
        """Whether the process and every member of its group have exited."""
        ...

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of its log, without the stamps."""
        ...

    def reap(self) -> None:
        """Release local resources once the process is gone."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Runs commands somewhere and moves files there and back."""

    @property
    def where(self) -> str:
        """Human-readable place the commands run, for error messages."""
        ...

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion and return its result (raise if ``check``)."""
        ...

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Background:
        """Start ``argv`` in its own session; its output, each line prefixed with
        the ``time.time_ns()`` of that host when read, goes to ``log_path`` there.
        """
        ...

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        """Copy local file ``local`` to path ``remote`` on this executor's host."""
        ...

    def get(self, remote: str, local: Path) -> None:
        """Copy file ``remote`` on this executor's host to local path ``local``."""
        ...
