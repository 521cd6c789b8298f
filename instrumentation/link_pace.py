"""What a link's own pace explains in a capture: the link-busy part of a transfer.

A pure model (no packet parsing) used by the capture parser inside each burst
(instrumentation/capture.py) and by analysis across the bursts of one message
(analysis/wire.py); docs/anatomy.md, *Link-busy time*, says what it means.
"""

from __future__ import annotations

from dataclasses import dataclass

# Inside a transfer the link counts as busy across a pause between two payload
# packets no longer than this, or than the link's own pace explains (LinkPace).
BUSY_GAP_S = 0.01
# Ethernet + IPv4 + TCP (with timestamps) bytes around each on-wire segment.
FRAME_OVERHEAD_BYTES = 66
# TCP payload per on-wire segment: a captured GSO/GRO frame carries several.
SEGMENT_PAYLOAD_BYTES = 1448
# A pause is the link's while it is within this factor of what the link owed.
PACE_SLACK = 1.5


@dataclass(frozen=True)
class LinkPace:
    """What one link's own pace explains between the packets of a transfer.

    The link is modelled as a token bucket at its rate: after carrying a packet
    it needs that packet's bytes (with per-segment framing) x 8 / rate before it
    can carry more, so a shaper that releases a whole 64 kB GSO frame at once on
    a 4 Mbit/s link then owes about 130 ms of silence. A pause counts as the
    link being busy (``link-busy`` time, docs/anatomy.md):

    - whole, when it is no longer than the largest of :data:`BUSY_GAP_S`,
      ``PACE_SLACK`` x the round trip (TCP waiting for acknowledgements) and
      ``PACE_SLACK`` x what the link still owed when it began;
    - otherwise in part, up to what the link still owed; the rest is a gap: the
      host or the protocol (Flower's per-object requests and back-offs,
      serialisation, a busy CPU).

    Rates in Mbit/s; None: unknown (only the fixed allowances apply).
    """

    down_mbit: float | None = None
    up_mbit: float | None = None
    rtt_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("down_mbit", "up_mbit"):
            rate = getattr(self, name)
            if rate is not None and not rate > 0:
                raise ValueError(f"{name} must be > 0 or None, got {rate}")
        if self.rtt_s < 0:
            raise ValueError(f"rtt_s must be >= 0, got {self.rtt_s}")

    def need_ns(self, direction: str, payload_len: int) -> int:
        """How long the link needs for a captured frame of ``payload_len`` bytes."""
        rate = self.down_mbit if direction == "down" else self.up_mbit
        if not rate:
            return 0
        segments = max(1, -(-payload_len // SEGMENT_PAYLOAD_BYTES))
        wire_bytes = payload_len + segments * FRAME_OVERHEAD_BYTES
        return int(wire_bytes * 8 / (rate * 1e6) * 1e9)

    def busy_part_ns(self, pause_ns: int, owed_ns: int) -> int:
        """The link's part of a ``pause_ns`` pause begun while it owed ``owed_ns``."""
        owed_ns = max(0, owed_ns)
        whole = max(BUSY_GAP_S * 1e9, PACE_SLACK * self.rtt_s * 1e9)
        if pause_ns <= max(whole, PACE_SLACK * owed_ns):
            return pause_ns
        return min(pause_ns, owed_ns)
