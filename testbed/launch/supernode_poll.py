"""A SuperNode with shorter fixed sleeps: the ``supernode-poll`` lever's entry point.

Flower 1.42's SuperNode loop (``flwr/supernode/start_client_internal.py``) sleeps
a fixed 3 s after every poll that found no message, and waits in fixed 0.5 s steps
for the ClientApp's reply and for each object of it. None of the three is
configurable: a node that has replied and polled once more sleeps up to 3 s past
its next instruction (``dispatch_wait``), and up to 0.5 s past its reply
(``reply_handoff``). This entry point runs the very same SuperNode
(``flwr.supernode.cli:flower_supernode``, with its arguments unchanged) after
handing that one module a ``time`` whose ``sleep`` turns those waits into
``--idle-s`` and ``--handoff-s``; every other call goes to the real ``time``.

It relies on a Flower internal, so it changes nothing on a Flower series it was
not tested with (testbed/launch/guard.py): it then starts the SuperNode as it is
and says so in one line on stderr, which lands in the node's log (the campaign
reports it). The line it prints when active starts with :data:`ACTIVE_PREFIX`.

    python -m testbed.launch.supernode_poll --idle-s 0.2 --handoff-s 0.05 \\
        [--supported 1.42] -- --superlink HOST:PORT ...
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from testbed.launch.guard import TESTED_FLWR_SERIES, warm_supported

LOOP_MODULE = "flwr.supernode.start_client_internal"
# The fixed sleeps of that module in flwr 1.42: after an empty poll, and while
# waiting for the ClientApp's reply or one of its objects.
IDLE_SLEEP_S = 3.0
HANDOFF_SLEEP_S = 0.5
ACTIVE_PREFIX = "flowerbed supernode-poll: active"
INACTIVE_PREFIX = "flowerbed supernode-poll: inactive"


class ShortSleeps:
    """``time`` for the SuperNode's loop: its two fixed sleeps shortened."""

    def __init__(self, real: ModuleType, idle_s: float, handoff_s: float) -> None:
        self._real = real
        self._idle_s = idle_s
        self._handoff_s = handoff_s

    def sleep(self, seconds: float) -> None:
        """Sleep ``idle_s`` for the 3 s idle sleep, ``handoff_s`` for the 0.5 s
        hand-off steps, and any other length as asked."""
        if seconds == IDLE_SLEEP_S:
            seconds = self._idle_s
        elif seconds == HANDOFF_SLEEP_S:
            seconds = self._handoff_s
        self._real.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def patch_loop(loop: ModuleType, idle_s: float, handoff_s: float) -> None:
    """Give ``loop`` (the SuperNode's loop module) :class:`ShortSleeps`."""
    if not isinstance(getattr(loop, "time", None), ModuleType | ShortSleeps):
        raise RuntimeError(f"{loop.__name__} has no module-level `time` to patch")
    loop.time = ShortSleeps(time, idle_s, handoff_s)  # type: ignore[attr-defined]


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m testbed.launch.supernode_poll")
    parser.add_argument("--idle-s", type=float, required=True)
    parser.add_argument("--handoff-s", type=float, required=True)
    parser.add_argument("--supported", action="append", default=None)
    args_list = list(argv)
    rest: list[str] = []
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, rest = args_list[:cut], args_list[cut + 1 :]
    args = parser.parse_args(args_list)
    for name in ("idle_s", "handoff_s"):
        if not 0.0 < getattr(args, name) <= IDLE_SLEEP_S:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 3] seconds")
    return args, rest


def main(argv: Sequence[str] | None = None) -> None:
    """Patch the loop when this Flower is a tested one, then run the SuperNode."""
    args, rest = _parse(sys.argv[1:] if argv is None else argv)
    version = importlib.metadata.version("flwr")
    ok, reason = warm_supported(
        version, tuple(args.supported or TESTED_FLWR_SERIES), "supernode-poll"
    )
    if ok:
        patch_loop(importlib.import_module(LOOP_MODULE), args.idle_s, args.handoff_s)
        print(
            f"{ACTIVE_PREFIX}: idle sleep {IDLE_SLEEP_S:g} -> {args.idle_s:g} s, "
            f"hand-off {HANDOFF_SLEEP_S:g} -> {args.handoff_s:g} s (flwr {version})",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(f"{INACTIVE_PREFIX}: {reason}", file=sys.stderr, flush=True)
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *rest]
    flower_supernode()


if __name__ == "__main__":
    main()
