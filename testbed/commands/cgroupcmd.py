"""Starting a command inside cgroups: the wrapper every emulated node's process uses.

Pure argv building (the executor quotes each argument); the groups themselves
are planned in :mod:`testbed.emulation.cgroups`.
"""

from __future__ import annotations

from collections.abc import Sequence

JOIN_FAILED_EXIT = 125


def join_argv(procs: Sequence[str], argv: Sequence[str]) -> list[str]:
    """``argv`` run by a shell that first moves itself into the groups ``procs``
    (their ``cgroup.procs`` files, paths without spaces).

    The shell execs ``argv``, so the process and everything it starts stay in
    the groups; a group it cannot join stops it with exit code 125 and says which.
    """
    if not procs:
        return list(argv)
    script = (
        'for f in $1; do echo $$ > "$f" || { echo "cannot join cgroup $f" >&2;'
        f' exit {JOIN_FAILED_EXIT}; }}; done; shift; exec "$@"'
    )
    return ["sh", "-c", script, "sh", " ".join(procs), *argv]
