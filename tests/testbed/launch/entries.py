"""Entry points the tests' zygotes run in place of ``flwr-clientapp``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

LEAKED: list[int] = []


def echo() -> None:
    """Report what the child was given; exit with the code after ``--exit``."""
    LEAKED.append(os.getpid())  # state a fresh process would not carry over
    data = sys.stdin.read()
    print(f"argv={sys.argv[1:]} cwd={os.getcwd()} stdin={data!r}")
    print(f"marker={os.environ.get('WARM_TEST_MARKER')} leaked={len(LEAKED)}")
    print(f"pid={os.getpid()} ppid={os.getppid()}", file=sys.stderr)
    if "--exit" in sys.argv:
        sys.exit(int(sys.argv[sys.argv.index("--exit") + 1]))


def sleeper() -> None:
    """Write this child's pid to the file after ``--pid-file``, then sleep."""
    Path(sys.argv[sys.argv.index("--pid-file") + 1]).write_text(str(os.getpid()))
    time.sleep(120)


def crash() -> None:
    """Die by SIGABRT, as a native crash would."""
    os.abort()
