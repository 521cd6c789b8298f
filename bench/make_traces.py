"""Make the synthetic bandwidth traces shipped in inventory/examples/traces/.

Seeded, so running it again writes the same files byte for byte:

- ``5g-uplink-fades.csv``: a 5G uplink of the ``5g`` profile (mean about its 10
  Mbit/s) at 100 ms steps for 60 s: a slowly wandering rate (log-normal
  random walk around 12.4 Mbit/s) with deep fades of 1-4 s down to 5-20 % of it,
  about every 12 s, entered and left in 300 ms.
- ``wifi-contention.csv``: a WiFi uplink of the ``wifi`` profile (mean about its
  100 Mbit/s) at 100 ms steps for 60 s: the link's share falls to 1/2, 1/3 or
  1/4 while 1-3 other stations contend (on/off periods of 2-8 s), with a few
  percent of per-step noise.
- ``5g-uplink-fades.mahimahi``: the 5G trace above in Mahimahi's format (one
  line per ms at which a 1500-byte packet may leave), to show and test it.

    .venv/bin/python -m bench.make_traces [FOLDER]
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

STEP_S = 0.1
LENGTH_S = 60.0
SEED = 16
FOLDER = Path(__file__).resolve().parents[1] / "inventory" / "examples" / "traces"


def fading_5g(rng: random.Random, steps: int) -> list[float]:
    """Mbit/s per step: a wandering rate with deep fades."""
    level, rates = 0.0, []
    fade_left, fade_depth, until_fade = 0, 1.0, rng.randint(40, 120)
    for _ in range(steps):
        level = 0.9 * level + rng.gauss(0.0, 0.08)  # log-rate, mean-reverting
        base = 12.4 * math.exp(level)
        until_fade -= 1
        if until_fade <= 0 and fade_left == 0:
            fade_left = rng.randint(10, 40)
            fade_depth = rng.uniform(0.05, 0.2)
            until_fade = rng.randint(80, 160)
        factor = 1.0
        if fade_left > 0:
            edge = min(fade_left, 3) / 3  # 300 ms ramps out of the fade
            factor = fade_depth + (1 - fade_depth) * (1 - edge)
            fade_left -= 1
        rates.append(round(base * factor, 3))
    return rates


def contended_wifi(rng: random.Random, steps: int) -> list[float]:
    """Mbit/s per step: the station's share while others contend."""
    rates, others, left = [], 0, rng.randint(20, 80)
    for _ in range(steps):
        left -= 1
        if left <= 0:
            others = rng.choice((0, 0, 1, 2, 3))
            left = rng.randint(20, 80)
        share = 1.0 / (1 + others)
        rates.append(round(150.0 * share * rng.uniform(0.92, 1.05), 3))
    return rates


def csv_text(rates: list[float]) -> str:
    """The rates as a ``t_s,mbit_s`` CSV, one row per step."""
    rows = [f"{i * STEP_S:.1f},{r}" for i, r in enumerate(rates)]
    return "t_s,mbit_s\n" + "\n".join(rows) + "\n"


def mahimahi_text(rates: list[float]) -> str:
    """The rates as Mahimahi packet times: evenly spread within each step."""
    lines, carry = [], 0.0
    step_ms = round(STEP_S * 1000)
    for i, mbit in enumerate(rates):
        carry += mbit * 1e6 * STEP_S / 12000  # packets this step, fraction kept
        count = int(carry)
        carry -= count
        for k in range(count):
            lines.append(i * step_ms + (k * step_ms) // count + 1)
    lines.append(len(rates) * step_ms)  # the period: the last line's timestamp
    return "\n".join(map(str, lines)) + "\n"


def main(argv: list[str]) -> int:
    """Write the traces into ``argv[0]`` (default: inventory/examples/traces)."""
    folder = Path(argv[0]) if argv else FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    steps = round(LENGTH_S / STEP_S)
    five_g = fading_5g(random.Random(SEED), steps)  # noqa: S311 - synthetic data
    wifi = contended_wifi(random.Random(SEED + 1), steps)  # noqa: S311
    (folder / "5g-uplink-fades.csv").write_text(csv_text(five_g))
    (folder / "wifi-contention.csv").write_text(csv_text(wifi))
    (folder / "5g-uplink-fades.mahimahi").write_text(mahimahi_text(five_g))
    for name, rates in (("5g-uplink-fades", five_g), ("wifi-contention", wifi)):
        mean = sum(rates) / len(rates)
        print(f"{name}: {len(rates)} steps, mean {mean:.2f} Mbit/s, "
              f"min {min(rates):.2f}, max {max(rates):.2f}")  # fmt: skip
    print(f"written to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
