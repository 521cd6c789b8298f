"""Executors: where a command runs (this machine, a network namespace).

Both implement :class:`~testbed.transport.base.Executor`: run a command to its
end, start a background process (its own process group, line-stamped log on that
host), put a file and get a file. ``testbed/transport/ssh.py`` holds the SSH
implementation.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from testbed.commands.cgroupcmd import join_argv
from testbed.transport.base import (
    DEFAULT_TIMEOUT_S,
    Background,
    CommandError,
    Executor,
)
from testbed.transport.files import copy_atomically
from testbed.transport.processes import ManagedProcess

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Background",
    "CommandError",
    "Executor",
    "LocalExecutor",
    "NetnsExecutor",
]


def _merged_env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    if env is None:
        return None
    return {**os.environ, **env}


class LocalExecutor:
    """Runs commands on this machine, in the namespace the caller lives in."""

    @property
    def where(self) -> str:
        """Human-readable place the commands run."""
        return "local host"

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to the end; raise ``CommandError`` if it fails and ``check``."""
        argv = list(argv)
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=_merged_env(env),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else ""
            raise CommandError(argv, self.where, None, stderr, timeout) from exc
        except FileNotFoundError as exc:
            raise CommandError(argv, self.where, 127, f"{argv[0]}: not found") from exc
        if check and result.returncode != 0:
            raise CommandError(argv, self.where, result.returncode, result.stderr)
        return result

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Background:
        """Start ``argv`` here as a :class:`ManagedProcess`."""
        return ManagedProcess(
            name, argv, Path(log_path), env=env, cwd=Path(cwd) if cwd else None
        )

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        """Copy ``local`` to ``remote`` on this machine (atomically, via rename)."""
        copy_atomically(local, Path(remote), mode)

    def get(self, remote: str, local: Path) -> None:
        """Copy ``remote`` on this machine to ``local``."""
        copy_atomically(Path(remote), local)


class NetnsExecutor:
    """Runs commands inside network namespace ``namespace`` via ``ip netns exec``.

    ``inner`` runs the prefixed command (this machine by default; later an SSH host).
    """

    def __init__(
        self,
        namespace: str,
        inner: Executor | None = None,
        cgroup_procs: Sequence[str] = (),
    ) -> None:
        if not namespace or "/" in namespace or namespace.strip() != namespace:
            raise ValueError(f"invalid network namespace name {namespace!r}")
        self.namespace = namespace
        self.inner: Executor = inner if inner is not None else LocalExecutor()
        # The emulated node's cgroup.procs files: every command joins them first
        # (testbed/emulation/cgroups.py), so the node's CPU limit covers it.
        self.cgroup_procs = tuple(cgroup_procs)

    @property
    def where(self) -> str:
        """Human-readable place the commands run."""
        return f"network namespace {self.namespace} on {self.inner.where}"

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """Return ``argv`` prefixed so it runs inside the namespace (and the
        node's cgroups, when it has them: joined before entering the namespace,
        since ``ip netns exec`` remounts /sys, where the cgroup files are)."""
        return join_argv(
            self.cgroup_procs, ["ip", "netns", "exec", self.namespace, *argv]
        )

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace; errors name the namespace."""
        try:
            return self.inner.run(
                self.wrap(argv), check=check, timeout=timeout, env=env
            )
        except CommandError as exc:
            raise CommandError(
                argv, self.where, exc.returncode, exc.stderr, exc.timeout_s
            ) from exc

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Background:
        """Start ``argv`` inside the namespace, in its own session."""
        return self.inner.start(name, self.wrap(argv), log_path, env=env, cwd=cwd)

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        """Namespaces share the file system of ``inner``'s host."""
        self.inner.put(local, remote, mode)

    def get(self, remote: str, local: Path) -> None:
        """Namespaces share the file system of ``inner``'s host."""
        self.inner.get(remote, local)
