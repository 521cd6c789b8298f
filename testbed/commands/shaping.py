"""Pure builders and parsers for link shaping: tc rate/delay qdiscs and iptables loss.

Rates come from a ``LinkProfile`` in Mbit/s (10**6 bit/s, like tc's ``mbit``) and
are passed to tc as exact ``<n>bit`` so 2.6 Mbit/s is not rounded. They limit
Ethernet frame bytes (what tc counts), so TCP goodput lands ~5 % below the rate.

Where things apply (see docs/emulation.md):
- rate: on the *sending* side's egress: downlink on the server-side (host
  namespace) veth end, uplink on the node-side end inside the node's namespace.
  Egress shaping needs no IFB and holds a real queue, like a radio's buffer.
- delay/jitter: a netem leaf under the HTB class, so rate and delay both apply,
  only on kernels with sch_netem.
- loss: iptables ``statistic`` DROP rules in the node's namespace: uplink in
  OUTPUT ``-o IF``, downlink in INPUT ``-i IF``; they vanish with the namespace.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Shaper = Literal["htb", "tbf"]
Direction = Literal["uplink", "downlink"]
LossMode = Literal["random", "nth"]

ROOT_HANDLE = "1:"
CLASS_ID = "1:10"
LEAF_HANDLE = "10:"
# An Ethernet frame at MTU 1500 as tc sees it (no FCS).
MTU_FRAME_BYTES = 1514
# Burst covers 10 ms of traffic: one timer tick at HZ=100, the coarsest common
# kernel tick, so the bucket never empties between ticks and caps the rate low.
BURST_WINDOW_S = 0.010
# ... and at least two full frames, or a slow link could never send a whole one.
MIN_BURST_BYTES = 2 * MTU_FRAME_BYTES
TBF_LATENCY_MS = 50.0
NETEM_MIN_LIMIT = 1000


def rate_bits(rate_mbit: float) -> int:
    """Return the rate in bit/s for ``rate_mbit`` Mbit/s (must be > 0)."""
    if not rate_mbit > 0:
        raise ValueError(f"rate must be > 0 Mbit/s, got {rate_mbit!r}")
    return max(1, round(rate_mbit * 1_000_000))


def tc_rate(rate_mbit: float) -> str:
    """Return the exact tc rate argument (``2600000bit``) for ``rate_mbit``."""
    return f"{rate_bits(rate_mbit)}bit"


def burst_bytes(rate_mbit: float) -> int:
    """Return the token-bucket burst: 10 ms of traffic, at least two MTU frames."""
    return max(math.ceil(rate_bits(rate_mbit) / 8 * BURST_WINDOW_S), MIN_BURST_BYTES)


def _ms(value: float) -> str:
    return f"{value:g}ms"


def htb_root(dev: str) -> list[str]:
    """Install (or keep) an HTB root whose unclassified traffic goes to class 1:10."""
    return [
        "tc",
        "qdisc",
        "replace",
        "dev",
        dev,
        "root",
        "handle",
        ROOT_HANDLE,
        "htb",
        "default",
        "10",
    ]


def htb_class(dev: str, rate_mbit: float) -> list[str]:
    """Install (or update) HTB class 1:10 limited to ``rate_mbit`` (rate = ceil)."""
    rate = tc_rate(rate_mbit)
    burst = str(burst_bytes(rate_mbit))
    return [
        "tc",
        "class",
        "replace",
        "dev",
        dev,
        "parent",
        ROOT_HANDLE,
        "classid",
        CLASS_ID,
        "htb",
        "rate",
        rate,
        "ceil",
        rate,
        "burst",
        burst,
        "cburst",
        burst,
    ]


def tbf_root(
    dev: str, rate_mbit: float, latency_ms: float = TBF_LATENCY_MS
) -> list[str]:
    """Install (or update) a TBF root at ``rate_mbit`` with ``latency_ms`` of queue."""
    if not latency_ms > 0:
        raise ValueError(f"TBF latency must be > 0 ms, got {latency_ms!r}")
    return [
        "tc",
        "qdisc",
        "replace",
        "dev",
        dev,
        "root",
        "handle",
        ROOT_HANDLE,
        "tbf",
        "rate",
        tc_rate(rate_mbit),
        "burst",
        str(burst_bytes(rate_mbit)),
        "latency",
        _ms(latency_ms),
    ]


def netem_limit(rate_mbit: float, delay_ms: float, jitter_ms: float) -> int:
    """Return a netem queue limit (packets) that holds twice the delayed bytes."""
    in_flight_s = (delay_ms + 3 * jitter_ms) / 1000
    packets = math.ceil(rate_bits(rate_mbit) / 8 * in_flight_s / MTU_FRAME_BYTES)
    return max(NETEM_MIN_LIMIT, 2 * packets)


def netem_leaf(
    dev: str,
    delay_ms: float,
    jitter_ms: float = 0.0,
    rate_mbit: float | None = None,
    limit: int | None = None,
) -> list[str]:
    """Install (or update) a netem leaf under class 1:10 adding delay and jitter.

    ``rate_mbit`` here is netem's own rate option, for kernels where netem is the
    whole shaper; under HTB leave it None. ``limit`` defaults to ``netem_limit``
    when a rate is known, else netem's default of 1000 packets.
    """
    if delay_ms < 0 or jitter_ms < 0:
        raise ValueError(f"delay and jitter must be >= 0, got {delay_ms}, {jitter_ms}")
    if jitter_ms > 0 and delay_ms == 0:
        raise ValueError("jitter needs a delay > 0 ms to vary around")
    if limit is None:
        limit = netem_limit(rate_mbit, delay_ms, jitter_ms) if rate_mbit else 1000
    argv = [
        "tc",
        "qdisc",
        "replace",
        "dev",
        dev,
        "parent",
        CLASS_ID,
        "handle",
        LEAF_HANDLE,
        "netem",
        "limit",
        str(limit),
        "delay",
        _ms(delay_ms),
    ]
    if jitter_ms > 0:
        argv += [_ms(jitter_ms), "distribution", "normal"]
    if rate_mbit is not None:
        argv += ["rate", tc_rate(rate_mbit)]
    return argv


def egress_shaping(
    dev: str,
    rate_mbit: float,
    delay_ms: float = 0.0,
    jitter_ms: float = 0.0,
    shaper: Shaper = "htb",
    htb_root_present: bool = False,
) -> list[list[str]]:
    """Return the commands that shape ``dev``'s egress to a rate, plus delay if asked.

    Delay/jitter need HTB (netem hangs below its class); pass them only when the
    kernel has netem (``EmulationFeatures.delay``). HTB cannot ``change`` its root
    qdisc, so with ``htb_root_present`` (root ``1:`` already HTB) only the class and
    leaf are replaced.
    """
    wants_delay = delay_ms > 0 or jitter_ms > 0
    if shaper == "tbf":
        if wants_delay:
            raise ValueError("delay needs the htb shaper (netem leaf under a class)")
        return [tbf_root(dev, rate_mbit)]
    commands = [] if htb_root_present else [htb_root(dev)]
    commands.append(htb_class(dev, rate_mbit))
    if wants_delay:
        limit = netem_limit(rate_mbit, delay_ms, jitter_ms)
        commands.append(netem_leaf(dev, delay_ms, jitter_ms, limit=limit))
    return commands


def qdisc_del_root(dev: str) -> list[str]:
    """Remove ``dev``'s root qdisc (and every class and leaf under it)."""
    return ["tc", "qdisc", "del", "dev", dev, "root"]


def qdisc_del_leaf(dev: str) -> list[str]:
    """Remove the leaf qdisc under class 1:10 (HTB falls back to its default FIFO)."""
    return ["tc", "qdisc", "del", "dev", dev, "parent", CLASS_ID]


def qdisc_show(dev: str) -> list[str]:
    """Show ``dev``'s qdiscs (text: ``tc -j`` of this iproute2 drops class rates)."""
    return ["tc", "qdisc", "show", "dev", dev]


def class_show(dev: str) -> list[str]:
    """Show ``dev``'s classes as text (``tc -j class show`` prints nothing here)."""
    return ["tc", "class", "show", "dev", dev]


# --- loss -------------------------------------------------------------------


@dataclass(frozen=True)
class LossRule:
    """One iptables DROP rule emulating loss on interface ``ifname`` in one direction.

    ``mode="random"`` drops each packet with ``probability``; ``mode="nth"`` drops
    exactly every ``every``-th packet (deterministic, for tests).
    """

    direction: Direction
    ifname: str
    mode: LossMode
    probability: float = 0.0
    every: int = 0

    def __post_init__(self) -> None:
        if self.direction not in ("uplink", "downlink"):
            raise ValueError(
                f"direction must be uplink or downlink: {self.direction!r}"
            )
        if self.mode == "random" and not 0 < self.probability < 1:
            raise ValueError(f"probability must be in (0, 1), got {self.probability!r}")
        if self.mode == "nth" and self.every < 2:
            raise ValueError(f"nth loss needs every >= 2, got {self.every!r}")
        if self.mode not in ("random", "nth"):
            raise ValueError(f"mode must be random or nth: {self.mode!r}")

    @property
    def chain(self) -> str:
        """OUTPUT for uplink (leaving the node), INPUT for downlink (reaching it)."""
        return "OUTPUT" if self.direction == "uplink" else "INPUT"

    def matches(self, other: LossRule) -> bool:
        """Whether ``other`` is this rule as iptables reports it back.

        iptables stores the probability as a 31-bit fraction, so ``0.1`` comes back
        as ``0.10000000009``: equal within 1e-6 counts as the same rule.
        """
        return (self.direction, self.ifname, self.mode, self.every) == (
            other.direction,
            other.ifname,
            other.mode,
            other.every,
        ) and abs(self.probability - other.probability) < 1e-6

    @property
    def loss_share(self) -> float:
        """Fraction of packets this rule drops."""
        return self.probability if self.mode == "random" else 1 / self.every


def loss_rule(
    direction: Direction, ifname: str, loss_pct: float, mode: LossMode = "random"
) -> LossRule | None:
    """Return the rule for ``loss_pct`` percent loss, or None when there is no loss.

    In ``nth`` mode the share is rounded to one packet in ``round(100 / loss_pct)``.
    """
    if not 0 <= loss_pct < 100:
        raise ValueError(f"loss_pct must be in [0, 100), got {loss_pct!r}")
    if loss_pct == 0:
        return None
    if mode == "nth":
        return LossRule(direction, ifname, "nth", every=max(2, round(100 / loss_pct)))
    return LossRule(direction, ifname, "random", probability=loss_pct / 100)


def loss_rule_spec(rule: LossRule) -> list[str]:
    """Return the rule's match and target, as after ``iptables -A CHAIN``."""
    side = "-o" if rule.direction == "uplink" else "-i"
    spec = [side, rule.ifname, "-m", "statistic", "--mode", rule.mode]
    if rule.mode == "random":
        spec += ["--probability", format(rule.probability, ".10g")]
    else:
        spec += ["--every", str(rule.every), "--packet", "0"]
    return [*spec, "-j", "DROP"]


def iptables_append(rule: LossRule) -> list[str]:
    """Append ``rule`` to its chain (run inside the node's namespace)."""
    return ["iptables", "-w", "5", "-A", rule.chain, *loss_rule_spec(rule)]


def iptables_check(rule: LossRule) -> list[str]:
    """Exit 0 iff ``rule`` is installed (run inside the node's namespace)."""
    return ["iptables", "-w", "5", "-C", rule.chain, *loss_rule_spec(rule)]


def iptables_flush(chain: str) -> list[str]:
    """Flush ``chain`` of the filter table (only ever in a namespace of ours)."""
    return ["iptables", "-w", "5", "-F", chain]


def iptables_rules() -> list[str]:
    """List the filter table's rules in ``-S`` form."""
    return ["iptables", "-w", "5", "-S"]


# --- parsing what is installed ------------------------------------------------

_UNITS = {
    "bit": 1,
    "kbit": 10**3,
    "mbit": 10**6,
    "gbit": 10**9,
    "tbit": 10**12,
    "kibit": 2**10,
    "mibit": 2**20,
    "gibit": 2**30,
    "tibit": 2**40,
    "bps": 8,
    "kbps": 8 * 10**3,
    "mbps": 8 * 10**6,
    "gbps": 8 * 10**9,
}
_RATE = re.compile(r"^(\d+(?:\.\d+)?)([A-Za-z]+)$")


def parse_tc_rate(text: str) -> int:
    """Return bit/s for a rate as tc prints it: ``8Mbit``, ``2600Kbit``, ``1.5Gbit``."""
    match = _RATE.match(text.strip())
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a tc rate: {text!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass(frozen=True)
class InstalledQdisc:
    """A qdisc as ``tc qdisc show`` reports it; ``rate_bit`` for shapers (tbf)."""

    kind: str
    handle: str
    parent: str  # "root" or the parent class id
    rate_bit: int | None = None
    delay_ms: float | None = None


@dataclass(frozen=True)
class InstalledClass:
    """A class as ``tc class show`` reports it (HTB: rate and ceil in bit/s)."""

    kind: str
    classid: str
    rate_bit: int | None
    ceil_bit: int | None


def _after(tokens: list[str], key: str) -> str | None:
    if key in tokens:
        index = tokens.index(key)
        if index + 1 < len(tokens):
            return tokens[index + 1]
    return None


def _parent(tokens: list[str]) -> str:
    if len(tokens) > 3 and tokens[3] == "root":
        return "root"
    return _after(tokens, "parent") or ""


def _delay_ms(text: str | None) -> float | None:
    if text is None:
        return None
    match = re.match(r"^(\d+(?:\.\d+)?)(us|ms|s)$", text)
    if not match:
        return None
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[match.group(2)]
    return float(match.group(1)) * scale


def parse_qdisc_show(text: str) -> list[InstalledQdisc]:
    """Parse ``tc qdisc show dev X`` output (one qdisc per line starting ``qdisc``)."""
    qdiscs = []
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) < 3 or tokens[0] != "qdisc":
            continue
        rate = _after(tokens, "rate")
        qdiscs.append(
            InstalledQdisc(
                kind=tokens[1],
                handle=tokens[2],
                parent=_parent(tokens),
                rate_bit=parse_tc_rate(rate) if rate else None,
                delay_ms=_delay_ms(_after(tokens, "delay")),
            )
        )
    return qdiscs


def parse_class_show(text: str) -> list[InstalledClass]:
    """Parse ``tc class show dev X`` output (one class per line starting ``class``)."""
    classes = []
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) < 3 or tokens[0] != "class":
            continue
        rate, ceil = _after(tokens, "rate"), _after(tokens, "ceil")
        classes.append(
            InstalledClass(
                kind=tokens[1],
                classid=tokens[2],
                rate_bit=parse_tc_rate(rate) if rate else None,
                ceil_bit=parse_tc_rate(ceil) if ceil else None,
            )
        )
    return classes


def parse_loss_rules(text: str) -> list[LossRule]:
    """Parse the statistic DROP rules out of ``iptables -S`` output."""
    rules = []
    for line in text.splitlines():
        tokens = line.split()
        if tokens[:1] != ["-A"] or "statistic" not in tokens or "DROP" not in tokens:
            continue
        chain = tokens[1]
        if chain not in ("OUTPUT", "INPUT"):
            continue
        ifname = _after(tokens, "-o" if chain == "OUTPUT" else "-i")
        mode = _after(tokens, "--mode")
        if ifname is None or mode not in ("random", "nth"):
            continue
        direction: Direction = "uplink" if chain == "OUTPUT" else "downlink"
        if mode == "random":
            probability = float(_after(tokens, "--probability") or 0)
            rules.append(LossRule(direction, ifname, "random", probability=probability))
        else:
            every = int(_after(tokens, "--every") or 0)
            rules.append(LossRule(direction, ifname, "nth", every=every))
    return rules
