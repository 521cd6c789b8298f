"""Processes an interrupted campaign left behind, found and stopped before it resumes.

When flowerbed itself is killed (SIGKILL, a reboot of a shell, a lost terminal), the
processes it started in their own sessions live on: SuperLink, SuperNodes and
their Flower children, tcpdump, samplers, clock responders. Locally they are found
by their working directory or an argument inside the campaign's results folder
(every one of them has one); on SSH nodes by the ``*.pid`` files that
``SSHExecutor.start`` writes beside each log. Nothing else is touched.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from testbed.campaign.sites import NodeSite


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def belongs_to(folder: Path, cmdline: list[str], cwd: str) -> bool:
    """Whether a process with ``cmdline`` and ``cwd`` works inside ``folder``."""
    root = str(folder.resolve())
    inside = (cwd + "/").startswith(root + "/")
    return inside or any(root + "/" in arg or arg == root for arg in cmdline)


def local_leftovers(folder: Path) -> dict[int, list[str]]:
    """pid -> command line of this machine's processes working in ``folder``."""
    found = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        cmdline = _cmdline(pid)
        if cmdline and belongs_to(folder, cmdline, _cwd(pid)):
            found[pid] = cmdline
    return found


def stop_local(folder: Path) -> list[str]:
    """SIGKILL every process (and its group) working in ``folder``; describe them."""
    stopped = []
    for pid, cmdline in local_leftovers(folder).items():
        try:
            pgid = os.getpgid(pid)
            if pgid != os.getpgid(0):
                os.killpg(pgid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        stopped.append(f"pid {pid}: {' '.join(cmdline)[:120]}")
    return stopped


def stop_remote(site: NodeSite, campaign: str) -> list[str]:
    """Kill the process groups named by the ``*.pid`` files of ``campaign``'s runs
    on a node reached over SSH; remove the pid files."""
    if site.root is None:
        return []
    folder = f"{site.root}/runs/{campaign}"
    script = (
        'find "$1" -name "*.pid" 2>/dev/null | while read -r f; do '
        'g=$(cat "$f"); case "$g" in ""|*[!0-9]*) continue;; esac; '
        'if kill -s KILL -- "-$g" 2>/dev/null; then echo "$f $g"; fi; rm -f "$f"; '
        "done"
    )
    # the login started these processes, so it may kill them without sudo
    result = site.executor.run(
        ["sh", "-c", script, "reap", folder], check=False, timeout=60.0
    )
    return [
        f"{site.host.name}: process group {line.split()[-1]} ({line.split()[0]})"
        for line in result.stdout.splitlines()
        if line.strip()
    ]
