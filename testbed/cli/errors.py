"""The command line's edge: a known problem becomes a message, a bug a crash log.

Every ``flowerbed`` command runs inside :class:`EdgeGroup`. An error a person can
act on (:class:`inventory.errors.FlowerbedError`: inventory, campaign, results;
or a host family error: SSH, lab, emulated cluster) is printed as one
``error:`` line and exits with :data:`BAD_INPUT`. A file that cannot be written
(read-only, full disk) names the path and the fix. Anything else is a bug: its
traceback goes to a crash log (``$XDG_CACHE_HOME/flowerbed``, else
``~/.cache/flowerbed``) and the command prints one line naming that file and
exits with :data:`CRASHED`. No command prints a Python traceback.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from inventory.errors import FlowerbedError

BAD_INPUT = 2
# ``report build --strict`` on a results folder with damaged files.
DAMAGED_RESULTS = 3
CRASHED = 70  # EX_SOFTWARE (sysexits.h)
SIGPIPE_EXIT = 141  # 128 + SIGPIPE, what a shell reports for `| head`

# errno values that mean "this place cannot take the file", with the fix.
_WRITE_FIXES = {
    errno.EACCES: "check its permissions, or choose another location",
    errno.EPERM: "check its permissions, or choose another location",
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.ENOSPC: "the disk is full; free space there, or choose another location",
    errno.EDQUOT: "the disk quota is used up; free space, or choose another location",
}


def say_error(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)


def output_error(exc: OSError, fix: str = "") -> str | None:
    """The message for an OSError writing output, or None if it is another one."""
    hint = _WRITE_FIXES.get(exc.errno or 0)
    if hint is None:
        return None
    where = exc.filename if exc.filename is not None else "the output location"
    return f"cannot write {where}: {exc.strerror}. Fix: {fix or hint}."


def _host_errors() -> tuple[type[BaseException], ...]:
    """The host family (imported only once one is being handled)."""
    from testbed.emulation.errors import EmulationError
    from testbed.lab.access import LabError
    from testbed.transport.known_hosts import SSHError

    return (SSHError, LabError, EmulationError)


def crash_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "flowerbed"


def write_crash_log(exc: BaseException, argv: list[str]) -> Path:
    """Write ``exc``'s traceback to a new crash log and return its path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = f"{' '.join(argv)}\n\n" + "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    )
    for folder in (crash_dir(), Path(tempfile.gettempdir()) / "flowerbed"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"crash-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    raise exc  # nowhere to write: the traceback is the last place left


class EdgeGroup(TyperGroup):
    """The top-level command group, turning every error into a message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except FlowerbedError as exc:
            say_error(str(exc))
            ctx.exit(BAD_INPUT)
        except BrokenPipeError:
            # The reader went away (`flowerbed ... | head`): not a bug, and
            # nothing left to say. Quiet the final flush as a shell tool would.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(SIGPIPE_EXIT)
        except OSError as exc:
            # Reading or writing: the edge cannot tell which, so it says neither.
            hint = _WRITE_FIXES.get(exc.errno or 0)
            if hint is None:
                self._crash(ctx, exc)
            where = exc.filename if exc.filename is not None else "a file"
            say_error(f"{where}: {exc.strerror}. Fix: {hint}.")
            ctx.exit(BAD_INPUT)
        except Exception as exc:  # noqa: BLE001 - the edge: every bug is logged
            if isinstance(exc, _host_errors()):
                say_error(str(exc))
                ctx.exit(BAD_INPUT)
            self._crash(ctx, exc)

    @staticmethod
    def _crash(ctx: click.Context, exc: BaseException) -> None:
        path = write_crash_log(exc, sys.argv)
        say_error(
            f"flowerbed failed unexpectedly ({type(exc).__name__}: "
            f"{str(exc)[:200]}); the traceback is in {path}; please report it with "
            "that file"
        )
        ctx.exit(CRASHED)
