"""The campaign's launch mode: ``stock`` Flower, or ``low-latency`` and its levers.

``stock`` (the default) starts every Flower process exactly as before. ``low-latency``
turns on levers that shorten Flower's waiting without touching the app or the wire
(docs/launch.md); each can be chosen on its own with ``launch_levers`` so that it
can be measured alone:

- ``superexec-poll[=S]``: ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL=S`` (default 0.2 s)
  for every SuperNode and SuperLink, on namespaces and SSH hosts alike;
- ``reply-pull[=S]``: the measuring Grid pulls replies every S s (default 0.3 s)
  instead of Flower's 3 s ``send_and_receive`` loop;
- ``wake-message``: the measuring Grid queues a
  small follow-up message behind each instruction, so a SuperNode finds work when
  it polls right after replying instead of sleeping its fixed 3 s
  (instrumentation/wake.py);
- ``reply-backoff`` (no value): the ServerApp pulls a reply's objects with a
  0.05 s back-off capped at 0.5 s instead of Flower's 1-10 s, so a reply whose
  upload was still running is noticed soon after it ends. It patches a Flower
  internal, so it applies on flwr 1.42.x only and falls back with a warning
  elsewhere (instrumentation/reply_backoff.py).
- ``supernode-poll[=S]``: each SuperNode runs through
  testbed/launch/supernode_poll.py, which shortens its fixed 3 s sleep after an
  empty poll to S s (default 0.2 s) and its 0.5 s reply hand-off steps to
  0.05 s; it patches a Flower internal, so on an untested Flower series the
  SuperNode runs unchanged and its log says so.
- ``warm-launcher``: each node's ``flwr-clientapp`` is a shim that asks a zygote
  (Flower, torch and the injected wrapper imported once) to fork the ClientApp;
  on an untested Flower version it falls back to stock with a warning
  (testbed/launch, testbed/campaign/warm.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from instrumentation.lever_keys import REPLY_PULL_KEY, WAKE_KEY
from instrumentation.reply_backoff import LEVER_LABEL, REPLY_BACKOFF_KEY

MODES = ("stock", "low-latency")
SUPEREXEC_POLL = "superexec-poll"
REPLY_PULL = "reply-pull"
WAKE_MESSAGE = "wake-message"
REPLY_BACKOFF = "reply-backoff"
WARM_LAUNCHER = "warm-launcher"
SUPERNODE_POLL = "supernode-poll"
LEVERS = (
    SUPEREXEC_POLL,
    REPLY_PULL,
    WAKE_MESSAGE,
    REPLY_BACKOFF,
    WARM_LAUNCHER,
    SUPERNODE_POLL,
)
# Levers that are on or off: they take no ``=seconds``.
SWITCHES = (WAKE_MESSAGE, REPLY_BACKOFF, WARM_LAUNCHER)
# The levers that paid on the emulated cluster (docs/launch.md). A wake alone costs
# a fresh flwr-clientapp process and made rounds slower; with the warm launcher a
# wake is a cheap fork and it paid (13.7 -> 11.0 s a round). The short reply
# back-off cut pickup_wait but not the round in two pairs: opt-in.
DEFAULT_LEVERS = (SUPEREXEC_POLL, REPLY_PULL, WARM_LAUNCHER, WAKE_MESSAGE)
# 0.05 s shortened start-up but its polling cost CPU the emulated nodes share
# (docs/launch.md); 0.2 s cost nothing measurable.
DEFAULT_SUPEREXEC_POLL_S = 0.2
DEFAULT_REPLY_PULL_S = 0.3
DEFAULT_SUPERNODE_POLL_S = 0.2
# The SuperNode's waits for the ClientApp's reply and its objects, with the lever.
SUPERNODE_HANDOFF_S = 0.05
# Flower accepts 0.01-60 s for the SuperExec poll (flwr/supercore/superexec).
SUPEREXEC_POLL_RANGE = (0.01, 60.0)
REPLY_PULL_RANGE = (0.01, 60.0)
# Shorter than Flower's own 3 s, and not so short that idle polls flood the SuperLink.
SUPERNODE_POLL_RANGE = (0.01, 3.0)


class LaunchError(ValueError):
    """A ``launch``/``launch_levers`` value that is not valid; says what to write."""


@dataclass(frozen=True)
class Launch:
    """How a campaign starts Flower: the mode and the levers it turns on.

    ``superexec_poll_s``, ``reply_pull_s`` and ``supernode_poll_s`` are None
    where the lever is off.
    """

    mode: str = "stock"
    superexec_poll_s: float | None = None
    reply_pull_s: float | None = None
    wake_message: bool = False
    reply_backoff: bool = False
    warm_launcher: bool = False
    supernode_poll_s: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise LaunchError(f"mode must be one of {', '.join(MODES)}: {self.mode!r}")
        if self.mode == "stock" and self.levers:
            raise LaunchError(f"stock launch turns on no lever, got {self.levers}")
        for value, bounds in (
            (self.superexec_poll_s, SUPEREXEC_POLL_RANGE),
            (self.reply_pull_s, REPLY_PULL_RANGE),
            (self.supernode_poll_s, SUPERNODE_POLL_RANGE),
        ):
            if value is not None and not bounds[0] <= value <= bounds[1]:
                raise LaunchError(
                    f"{value!r} s is outside {bounds[0]:g}-{bounds[1]:g} s"
                )

    @property
    def levers(self) -> tuple[str, ...]:
        """Active levers with their settings, as the manifest lists them."""
        out = []
        if self.superexec_poll_s is not None:
            out.append(f"{SUPEREXEC_POLL}-{self.superexec_poll_s:g}s")
        if self.reply_pull_s is not None:
            out.append(f"{REPLY_PULL}-{self.reply_pull_s:g}s")
        if self.wake_message:
            out.append(WAKE_MESSAGE)
        if self.reply_backoff:
            out.append(LEVER_LABEL)
        if self.warm_launcher:
            out.append(WARM_LAUNCHER)
        if self.supernode_poll_s is not None:
            out.append(f"{SUPERNODE_POLL}-{self.supernode_poll_s:g}s")
        return tuple(out)

    def manifest(self) -> dict[str, Any]:
        """``{"mode": mode, "levers": [...]}``: the manifest's ``launch`` entry."""
        return {"mode": self.mode, "levers": list(self.levers)}

    def run_config(self) -> dict[str, float | bool]:
        """The injected ServerApp's run-config keys (0 s: Flower's own reply loop)."""
        return {
            REPLY_PULL_KEY: float(self.reply_pull_s or 0.0),
            WAKE_KEY: self.wake_message,
            REPLY_BACKOFF_KEY: self.reply_backoff,
        }


def _lever(item: object) -> tuple[str, float | None]:
    """``"reply-pull=0.1"`` -> ("reply-pull", 0.1); ``"wake-message"`` -> (.., None)."""
    if not isinstance(item, str):
        raise LaunchError(f"a lever is a string like 'reply-pull=0.3', got {item!r}")
    name, sep, raw = item.partition("=")
    name = name.strip()
    if name not in LEVERS:
        raise LaunchError(f"unknown lever {name!r}; known: {', '.join(LEVERS)}")
    if not sep:
        return name, None
    if name in SWITCHES:
        raise LaunchError(f"lever {name!r} takes no value, got {item!r}")
    try:
        value = float(raw)
    except ValueError:
        raise LaunchError(f"lever {item!r}: {raw!r} is not seconds") from None
    if not math.isfinite(value):
        raise LaunchError(f"lever {item!r}: seconds must be finite")
    return name, value


def parse_launch(mode: object, levers: object = None) -> Launch:
    """The launch of a campaign from its ``launch`` and ``launch_levers`` values.

    ``low-latency`` without ``launch_levers`` turns on :data:`DEFAULT_LEVERS` at
    their default settings; with it, exactly the levers listed.
    """
    mode = "stock" if mode is None else mode
    if mode not in MODES:
        raise LaunchError(f"must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "stock":
        if levers is not None:
            raise LaunchError("launch_levers needs 'launch: low-latency'")
        return Launch()
    if levers is None:
        levers = list(DEFAULT_LEVERS)
    if not isinstance(levers, list):
        raise LaunchError(f"launch_levers must be a list, got {levers!r}")
    chosen: Mapping[str, float | None] = dict(_lever(item) for item in levers)
    if len(chosen) != len(levers):
        raise LaunchError(f"launch_levers lists a lever twice: {levers!r}")

    def seconds(name: str, default: float) -> float | None:
        if name not in chosen:
            return None
        value = chosen[name]
        return default if value is None else value

    return Launch(
        mode="low-latency",
        superexec_poll_s=seconds(SUPEREXEC_POLL, DEFAULT_SUPEREXEC_POLL_S),
        reply_pull_s=seconds(REPLY_PULL, DEFAULT_REPLY_PULL_S),
        wake_message=WAKE_MESSAGE in chosen,
        reply_backoff=REPLY_BACKOFF in chosen,
        warm_launcher=WARM_LAUNCHER in chosen,
        supernode_poll_s=seconds(SUPERNODE_POLL, DEFAULT_SUPERNODE_POLL_S),
    )
