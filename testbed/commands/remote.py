"""Pure builders of the shell commands run on a remote host over SSH: quoting,
environment, timeouts, detached process groups, authorized_keys.

Every word is ``shlex.quote``-d or passed as a positional parameter to a fixed
script, so no argument is ever read by a shell as code. The remote side needs
only a POSIX ``sh``, coreutils and ``setsid`` (util-linux).
"""

from __future__ import annotations

import re
import shlex
import signal as signal_module
from collections.abc import Mapping, Sequence

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Seconds the remote `timeout` wrapper waits beyond our own deadline, so the
# local side always fires first and the remote one only cleans up strays.
_REMOTE_TIMEOUT_GRACE_S = 1.0
# Not the last command, so sh cannot exec "$@" in place and must report its status.
_EXIT_CODE_SCRIPT = '"$@"; exit $?'


def env_prefix(env: Mapping[str, str] | None) -> list[str]:
    """``["env", "K=V", ...]`` for ``env`` (empty when there is none)."""
    if not env:
        return []
    for key in env:
        if not _ENV_NAME.fullmatch(key):
            raise ValueError(f"invalid environment variable name {key!r}")
    return ["env", *(f"{k}={v}" for k, v in env.items())]


def remote_command(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> str:
    """The shell command line that runs ``argv`` literally on the remote host.

    Every word is ``shlex.quote``-d; ``timeout_s`` wraps the command in
    coreutils ``timeout`` so a command we gave up on does not linger. An outer
    ``sh`` turns death by signal N into exit code 128+N: sshd would report it as
    an ``exit-signal``, which paramiko drops.
    """
    if not argv:
        raise ValueError("empty command")
    words = list(argv)
    if env and "=" in words[0]:
        raise ValueError(
            f"command name {words[0]!r} contains '=' (env would misread it)"
        )
    words = env_prefix(env) + words
    if timeout_s is not None:
        remote_s = timeout_s + _REMOTE_TIMEOUT_GRACE_S
        words = ["timeout", "-k", "2", f"{remote_s:.3f}", *words]
    return shlex.join(["sh", "-c", _EXIT_CODE_SCRIPT, "sh", *words])


# The detached leader: its pid is its process group (setsid). It traps
# TERM/INT/HUP so it survives stop_all's SIGTERM long enough to record the
# command's exit code; the command itself gets default signal dispositions
# (caught traps reset on exec). The stamper ignores those signals so the last
# lines of a stopping process still reach the log.
_LEADER_SCRIPT = r"""log=$1; shift
echo $$ > "$log.pid.tmp" && mv -f -- "$log.pid.tmp" "$log.pid"
trap : TERM INT HUP
( trap '' TERM INT HUP
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s %s\n' "$(date +%s%N)" "$line"
  done ) < "$log.fifo" >> "$log" &
"$@" > "$log.fifo" 2>&1 < /dev/null
rc=$?
echo "$rc" > "$log.rc.tmp" && mv -f -- "$log.rc.tmp" "$log.rc"
wait
rm -f -- "$log.fifo"
"""

_START_SCRIPT = r"""set -e
log=$1; cwd=$2; leader=$3; shift 3
for tool in setsid mkfifo date; do
  command -v "$tool" > /dev/null || { echo "$tool not on the host" >&2; exit 127; }
done
case $log in /*) ;; *) log=$PWD/$log ;; esac
mkdir -p -- "$(dirname -- "$log")"
rm -f -- "$log.rc" "$log.pid" "$log.fifo"
mkfifo -- "$log.fifo"
if [ -n "$cwd" ]; then cd -- "$cwd"; fi
setsid sh -c "$leader" sh "$log" "$@" < /dev/null > /dev/null 2>&1 &
i=0
while [ ! -s "$log.pid" ]; do
  i=$((i + 1))
  if [ "$i" -gt 200 ]; then echo "no pid file after 10 s" >&2; exit 1; fi
  sleep 0.05
done
cat -- "$log.pid"
"""


def start_argv(
    argv: Sequence[str],
    log_path: str,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> list[str]:
    """argv that starts ``argv`` detached with a stamped log, printing its pgid."""
    if not argv:
        raise ValueError("empty command")
    if not log_path:
        raise ValueError("empty log path")
    command = env_prefix(env) + list(argv)
    return [
        "sh",
        "-c",
        _START_SCRIPT,
        "sh",
        log_path,
        cwd or "",
        _LEADER_SCRIPT,
        *command,
    ]


def signal_argv(pgid: int, sig: int) -> list[str]:
    """argv that sends ``sig`` to process group ``pgid`` (POSIX ``kill -s``)."""
    if pgid <= 1:
        raise ValueError(f"refusing to signal process group {pgid}")
    name = "0" if sig == 0 else signal_module.Signals(sig).name.removeprefix("SIG")
    return ["kill", "-s", name, "--", f"-{pgid}"]


# Exit 0 while group $1 has a member that is not a zombie: zombies wait for a
# reaper (slow under some init processes) but have exited. Without a ps that
# knows -o pgid,stat (busybox) fall back to kill -0, which counts zombies too.
_GROUP_ALIVE = (
    'if procs=$(ps -A -o pgid= -o stat= 2>/dev/null) && [ -n "$procs" ]; then '
    'printf "%s\\n" "$procs" | awk -v g="$1" '
    "'$1 == g && $2 !~ /^Z/ { alive = 1 } END { exit !alive }'; "
    'else kill -s 0 -- "-$1" 2>/dev/null; fi'
)


def group_alive_argv(pgid: int) -> list[str]:
    """argv exiting 0 while process group ``pgid`` has a live (non-zombie) member."""
    if pgid <= 1:
        raise ValueError(f"invalid process group {pgid}")
    return ["sh", "-c", _GROUP_ALIVE, "sh", str(pgid)]


def status_argv(pgid: int, log_path: str) -> list[str]:
    """argv printing ``rc N`` once the process wrote its exit code, else
    ``running`` while its group lives, else ``gone``."""
    script = (
        'if [ -f "$2.rc" ]; then echo "rc $(cat -- "$2.rc")"; '
        f"elif {_GROUP_ALIVE}; then echo running; else echo gone; fi"
    )
    return ["sh", "-c", script, "sh", str(pgid), log_path]


_AUTHORIZE_SCRIPT = r"""set -e
key=$1; file=$2
umask 077
mkdir -p -- "$(dirname -- "$file")"
touch -- "$file"
set -f
set -- $key
if grep -qF -- "$1 $2" "$file"; then echo present; exit 0; fi
if [ -n "$(tail -c 1 -- "$file")" ]; then echo >> "$file"; fi
printf '%s\n' "$key" >> "$file"
echo added
"""


def authorize_key_argv(public_key: str, authorized_keys: str) -> list[str]:
    """argv that appends ``public_key`` to ``authorized_keys`` unless it is there."""
    fields = public_key.split()
    if len(fields) < 2 or "\n" in public_key.strip() or "PRIVATE KEY" in public_key:
        raise ValueError(
            "public_key must be one OpenSSH public key line ('TYPE BASE64 [comment]')"
        )
    return ["sh", "-c", _AUTHORIZE_SCRIPT, "sh", public_key.strip(), authorized_keys]
