"""Table tests for tc/iptables shaping builders and for parsing what tc reports."""

from __future__ import annotations

import pytest

from testbed.commands import shaping
from testbed.commands.shaping import InstalledClass, InstalledQdisc, LossRule

# --- rates and bursts ------------------------------------------------------------


@pytest.mark.parametrize(
    ("mbit", "bits", "tc"),
    [
        (8, 8_000_000, "8000000bit"),
        (2.6, 2_600_000, "2600000bit"),
        (940, 940_000_000, "940000000bit"),
        (0.128, 128_000, "128000bit"),
    ],
)
def test_rates_are_exact_bits_per_second(mbit: float, bits: int, tc: str) -> None:
    assert shaping.rate_bits(mbit) == bits
    assert shaping.tc_rate(mbit) == tc


@pytest.mark.parametrize("mbit", [0, -1])
def test_rate_must_be_positive(mbit: float) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        shaping.rate_bits(mbit)


@pytest.mark.parametrize(
    ("mbit", "burst"),
    [
        (1, 3028),  # 10 ms = 1250 B, below two frames: two frames
        (2.6, 3250),  # 10 ms of 2.6 Mbit/s
        (8, 10_000),
        (940, 1_175_000),
    ],
)
def test_burst_is_10ms_of_traffic_but_at_least_two_frames(
    mbit: float, burst: int
) -> None:
    assert shaping.burst_bytes(mbit) == burst


# --- qdisc builders ----------------------------------------------------------------

QDISC_CASES = [
    (
        shaping.htb_root("fbv1"),
        ["tc", "qdisc", "replace", "dev", "fbv1", "root", "handle", "1:", "htb",
         "default", "10"],
    ),
    (
        shaping.htb_class("wlan0", 8),
        ["tc", "class", "replace", "dev", "wlan0", "parent", "1:", "classid", "1:10",
         "htb", "rate", "8000000bit", "ceil", "8000000bit", "burst", "10000",
         "cburst", "10000"],
    ),
    (
        shaping.tbf_root("fbv1", 5),
        ["tc", "qdisc", "replace", "dev", "fbv1", "root", "handle", "1:", "tbf",
         "rate", "5000000bit", "burst", "6250", "latency", "50ms"],
    ),
    (
        shaping.tbf_root("fbv1", 5, latency_ms=120),
        ["tc", "qdisc", "replace", "dev", "fbv1", "root", "handle", "1:", "tbf",
         "rate", "5000000bit", "burst", "6250", "latency", "120ms"],
    ),
    (
        shaping.netem_leaf("fbv1", 25),
        ["tc", "qdisc", "replace", "dev", "fbv1", "parent", "1:10", "handle", "10:",
         "netem", "limit", "1000", "delay", "25ms"],
    ),
    (
        shaping.netem_leaf("fbv1", 25, 5, limit=4000),
        ["tc", "qdisc", "replace", "dev", "fbv1", "parent", "1:10", "handle", "10:",
         "netem", "limit", "4000", "delay", "25ms", "5ms", "distribution", "normal"],
    ),
    (
        # netem's own rate, for kernels where netem is the whole shaper
        shaping.netem_leaf("fbv1", 2.5, rate_mbit=100),
        ["tc", "qdisc", "replace", "dev", "fbv1", "parent", "1:10", "handle", "10:",
         "netem", "limit", "1000", "delay", "2.5ms", "rate", "100000000bit"],
    ),
    (shaping.qdisc_del_root("fbv1"), ["tc", "qdisc", "del", "dev", "fbv1", "root"]),
    (
        shaping.qdisc_del_leaf("fbv1"),
        ["tc", "qdisc", "del", "dev", "fbv1", "parent", "1:10"],
    ),
    (shaping.qdisc_show("fbv1"), ["tc", "qdisc", "show", "dev", "fbv1"]),
    (shaping.class_show("fbv1"), ["tc", "class", "show", "dev", "fbv1"]),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), QDISC_CASES)
def test_qdisc_builder(argv: list[str], expected: list[str]) -> None:
    assert argv == expected


def test_netem_limit_holds_twice_the_delayed_packets() -> None:
    # 940 Mbit/s for 30 ms + 3 x 5 ms = 45 ms: 5.29 MB = 3493 frames, doubled
    assert shaping.netem_limit(940, 30, 5) == 6986
    assert shaping.netem_limit(8, 1, 0) == 1000  # never below netem's default


def test_netem_rejects_jitter_without_delay() -> None:
    with pytest.raises(ValueError, match="jitter needs a delay"):
        shaping.netem_leaf("fbv1", 0, 3)


EGRESS_CASES = [
    (
        {"dev": "fbv1", "rate_mbit": 20},
        [shaping.htb_root("fbv1"), shaping.htb_class("fbv1", 20)],
    ),
    (
        {"dev": "fbv1", "rate_mbit": 20, "htb_root_present": True},
        [shaping.htb_class("fbv1", 20)],
    ),
    (
        {"dev": "fbv1", "rate_mbit": 20, "shaper": "tbf"},
        [shaping.tbf_root("fbv1", 20)],
    ),
    (
        {"dev": "fbv1", "rate_mbit": 20, "delay_ms": 15, "jitter_ms": 2},
        [
            shaping.htb_root("fbv1"),
            shaping.htb_class("fbv1", 20),
            shaping.netem_leaf("fbv1", 15, 2, limit=shaping.netem_limit(20, 15, 2)),
        ],
    ),
]


@pytest.mark.parametrize(("kwargs", "expected"), EGRESS_CASES)
def test_egress_shaping(kwargs: dict[str, object], expected: list[list[str]]) -> None:
    assert shaping.egress_shaping(**kwargs) == expected  # type: ignore[arg-type]


def test_delay_cannot_hang_under_tbf() -> None:
    with pytest.raises(ValueError, match="needs the htb shaper"):
        shaping.egress_shaping("fbv1", 20, delay_ms=10, shaper="tbf")


# --- loss ----------------------------------------------------------------------------

LOSS_CASES = [
    (
        LossRule("uplink", "wlan0", "random", probability=0.1),
        ["iptables", "-w", "5", "-A", "OUTPUT", "-o", "wlan0", "-m", "statistic",
         "--mode", "random", "--probability", "0.1", "-j", "DROP"],
    ),
    (
        LossRule("downlink", "wwan0", "random", probability=0.015),
        ["iptables", "-w", "5", "-A", "INPUT", "-i", "wwan0", "-m", "statistic",
         "--mode", "random", "--probability", "0.015", "-j", "DROP"],
    ),
    (
        LossRule("downlink", "eth0", "nth", every=4),
        ["iptables", "-w", "5", "-A", "INPUT", "-i", "eth0", "-m", "statistic",
         "--mode", "nth", "--every", "4", "--packet", "0", "-j", "DROP"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "expected"), LOSS_CASES)
def test_loss_rule_append(rule: LossRule, expected: list[str]) -> None:
    assert shaping.iptables_append(rule) == expected
    check = shaping.iptables_check(rule)
    assert check[:4] == ["iptables", "-w", "5", "-C"] and check[4:] == expected[4:]


@pytest.mark.parametrize(
    ("direction", "pct", "mode", "expected"),
    [
        ("uplink", 0.0, "random", None),
        ("uplink", 10.0, "random", LossRule("uplink", "wlan0", "random", 0.1)),
        ("downlink", 25.0, "nth", LossRule("downlink", "wlan0", "nth", every=4)),
        ("downlink", 33.0, "nth", LossRule("downlink", "wlan0", "nth", every=3)),
        ("uplink", 90.0, "nth", LossRule("uplink", "wlan0", "nth", every=2)),
    ],
)
def test_loss_rule_from_percent(
    direction: shaping.Direction,
    pct: float,
    mode: shaping.LossMode,
    expected: LossRule | None,
) -> None:
    assert shaping.loss_rule(direction, "wlan0", pct, mode) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"direction": "sideways", "ifname": "x", "mode": "random", "probability": 0.1},
         "direction"),
        ({"direction": "uplink", "ifname": "x", "mode": "random", "probability": 1.0},
         "probability"),
        ({"direction": "uplink", "ifname": "x", "mode": "nth", "every": 1}, "every"),
        ({"direction": "uplink", "ifname": "x", "mode": "often"}, "mode"),
    ],
)  # fmt: skip
def test_loss_rule_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LossRule(**kwargs)  # type: ignore[arg-type]


def test_iptables_misc() -> None:
    assert shaping.iptables_flush("OUTPUT") == ["iptables", "-w", "5", "-F", "OUTPUT"]
    assert shaping.iptables_rules() == ["iptables", "-w", "5", "-S"]
    assert LossRule("uplink", "x", "nth", every=5).loss_share == pytest.approx(0.2)


# --- parsing what is installed ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("8Mbit", 8_000_000),
        ("2600Kbit", 2_600_000),
        ("1.5Gbit", 1_500_000_000),
        ("999bit", 999),
        ("1Mibit", 1_048_576),
        ("125Kbps", 1_000_000),
    ],
)
def test_parse_tc_rate(text: str, bits: int) -> None:
    assert shaping.parse_tc_rate(text) == bits


@pytest.mark.parametrize("text", ["", "fast", "12", "3Mbits"])
def test_parse_tc_rate_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a tc rate"):
        shaping.parse_tc_rate(text)


QDISC_TEXT = """\
qdisc htb 1: root refcnt 3 r2q 10 default 0x10 direct_packets_stat 0 direct_qlen 1000
qdisc netem 10: parent 1:10 limit 1000 delay 25ms  5ms
"""
TBF_TEXT = "qdisc tbf 1: root refcnt 3 rate 5Mbit burst 6250b lat 50ms \n"
NOQUEUE_TEXT = "qdisc noqueue 0: root refcnt 2 \n"
CLASS_TEXT = (
    "class htb 1:10 root prio 0 rate 2600Kbit ceil 2600Kbit burst 3250b cburst 3250b \n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            QDISC_TEXT,
            [
                InstalledQdisc("htb", "1:", "root"),
                InstalledQdisc("netem", "10:", "1:10", delay_ms=25.0),
            ],
        ),
        (TBF_TEXT, [InstalledQdisc("tbf", "1:", "root", rate_bit=5_000_000)]),
        (NOQUEUE_TEXT, [InstalledQdisc("noqueue", "0:", "root")]),
        ("", []),
    ],
)
def test_parse_qdisc_show(text: str, expected: list[InstalledQdisc]) -> None:
    assert shaping.parse_qdisc_show(text) == expected


def test_parse_class_show() -> None:
    assert shaping.parse_class_show(CLASS_TEXT) == [
        InstalledClass("htb", "1:10", 2_600_000, 2_600_000)
    ]


IPTABLES_TEXT = """\
-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-A INPUT -i wlan0 -m statistic --mode random --probability 0.10000000009 -j DROP
-A INPUT -i eth0 -m statistic --mode nth --every 4 --packet 0 -j DROP
-A OUTPUT -o wlan0 -m statistic --mode random --probability 0.10000000009 -j DROP
-A OUTPUT -o eth0 -p tcp -j ACCEPT
"""


def test_parse_loss_rules_reads_back_what_was_installed() -> None:
    rules = shaping.parse_loss_rules(IPTABLES_TEXT)
    assert [(r.direction, r.ifname, r.mode) for r in rules] == [
        ("downlink", "wlan0", "random"),
        ("downlink", "eth0", "nth"),
        ("uplink", "wlan0", "random"),
    ]
    assert rules[1].every == 4
    # iptables stores 0.1 as a 31-bit fraction; matches() tolerates that
    assert LossRule("uplink", "wlan0", "random", 0.1).matches(rules[2])
    assert not LossRule("uplink", "wlan0", "random", 0.2).matches(rules[2])
    assert not LossRule("downlink", "wlan0", "random", 0.1).matches(rules[2])
