"""When each held packet may go: one-way delay plus jitter, in order unless asked.

Pure: the clock and the random draws come from the caller, so tests can fix them.
Jitter is uniform in ``[-jitter, +jitter]`` around the delay, like netem's default.
Without reordering a packet never leaves before the one ahead of it (a real link
keeps order); under a train of packets its delay then drifts towards ``delay +
jitter`` instead of letting packets overtake, which docs/emulation.md notes.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass

MS_NS = 1_000_000


@dataclass(frozen=True)
class DelaySpec:
    """One direction of one link: one-way ``delay_ms``, ``jitter_ms``, reordering."""

    delay_ms: float
    jitter_ms: float = 0.0
    reorder: bool = False

    def __post_init__(self) -> None:
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError(
                f"delay and jitter must be >= 0 ms, got {self.delay_ms}, "
                f"{self.jitter_ms}"
            )


class DelaySchedule:
    """The packets of one queue waiting for their due time (ns, monotonic clock)."""

    def __init__(self, spec: DelaySpec, rng: random.Random) -> None:
        self.spec = spec
        self._rng = rng
        self._in_order: deque[tuple[int, int]] = deque()
        self._heap: list[tuple[int, int]] = []
        self._last_due_ns = 0

    def __len__(self) -> int:
        return len(self._in_order) + len(self._heap)

    def due_ns(self, arrival_ns: int) -> int:
        """Draw the due time of a packet arriving at ``arrival_ns``."""
        jitter = self.spec.jitter_ms
        offset_ms = self.spec.delay_ms + (
            self._rng.uniform(-jitter, jitter) if jitter else 0.0
        )
        # A draw below zero (jitter larger than the delay) means no delay at all.
        due = arrival_ns + round(max(0.0, offset_ms) * MS_NS)
        if not self.spec.reorder:
            due = max(due, self._last_due_ns)
        self._last_due_ns = max(self._last_due_ns, due)
        return due

    def admit(self, packet_id: int, arrival_ns: int) -> int:
        """Hold ``packet_id``; return its due time."""
        due = self.due_ns(arrival_ns)
        if self.spec.reorder:
            heapq.heappush(self._heap, (due, packet_id))
        else:
            self._in_order.append((due, packet_id))
        return due

    def next_due_ns(self) -> int | None:
        """The earliest due time held, or None when empty."""
        if self._in_order:
            return self._in_order[0][0]
        if self._heap:
            return self._heap[0][0]
        return None

    def release(self, now_ns: int) -> list[int]:
        """Remove and return the ids due at ``now_ns``, in the order they may go."""
        out: list[int] = []
        queue = self._in_order
        while queue and queue[0][0] <= now_ns:
            out.append(queue.popleft()[1])
        while self._heap and self._heap[0][0] <= now_ns:
            out.append(heapq.heappop(self._heap)[1])
        return out
