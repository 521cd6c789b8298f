"""A detached process group on a remote host, watched and signalled through its
executor (the ``Background`` protocol over SSH)."""

from __future__ import annotations

import logging

from testbed.commands.remote import group_alive_argv, signal_argv, status_argv
from testbed.transport.base import CommandError, Executor
from testbed.transport.known_hosts import SSHError
from testbed.transport.processes import ProcessError

log = logging.getLogger(__name__)

_KILLED_RC = 128 + 9


class SSHBackground:
    """A detached process group on an SSH host (the ``Background`` protocol)."""

    def __init__(self, name: str, executor: Executor, pgid: int, log_path: str) -> None:
        self.name = name
        self.executor = executor
        self.pgid = pgid
        self.log_path = log_path

    def __repr__(self) -> str:
        """Name, group and host."""
        return (
            f"SSHBackground({self.name!r}, pgid {self.pgid} on {self.executor.where})"
        )

    def _status(self) -> str:
        return self.executor.run(
            status_argv(self.pgid, self.log_path), timeout=15.0
        ).stdout.strip()

    def poll(self) -> int | None:
        """Exit code (``.rc``; 137 if killed before writing it), None while running."""
        status = self._status()
        if status.startswith("rc "):
            return int(status[3:])
        return None if status == "running" else _KILLED_RC

    def check_alive(self) -> None:
        """Raise ``ProcessError`` with the remote log tail if the process exited."""
        code = self.poll()
        if code is not None:
            raise ProcessError(
                f"{self.name} exited with status {code} on {self.executor.where}; "
                f"last lines of {self.log_path} there:\n{self.log_tail()}"
            )

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole remote group; no error if it is gone."""
        try:
            self.executor.run(signal_argv(self.pgid, sig), check=False, timeout=15.0)
        except (SSHError, CommandError) as err:
            log.warning("%s: cannot signal group %d: %s", self.name, self.pgid, err)

    def gone(self) -> bool:
        """Whether no member of the group is left (True if the host is unreachable)."""
        try:
            result = self.executor.run(
                group_alive_argv(self.pgid), check=False, timeout=15.0
            )
        except (SSHError, CommandError) as err:
            log.warning(
                "%s: cannot reach %s to check group %d (its pid file is %s.pid): %s",
                self.name,
                self.executor.where,
                self.pgid,
                self.log_path,
                err,
            )
            return True
        return result.returncode != 0

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the remote log, without the stamps."""
        result = self.executor.run(
            ["tail", "-n", str(lines), "--", self.log_path], check=False, timeout=15.0
        )
        return "\n".join(line.partition(" ")[2] for line in result.stdout.splitlines())

    def reap(self) -> None:
        """Nothing to release locally; the leader removes its fifo itself."""
