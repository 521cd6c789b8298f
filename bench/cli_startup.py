"""How long `flowerbed campaign run` takes to reject a bad campaign (issue 14: < 0.3 s).

Writes a campaign file with an unknown strategy and runs, in a fresh interpreter
each time, ``python -m testbed.cli campaign run BAD -i
inventory/examples/emulated.yaml``; it must exit with code 2 and name the bad
key. Prints the minimum and median wall-clock seconds over ``--runs`` runs, and
whether torch, flwr or pandas were imported on the way (``-X importtime``).

Run from the repository root::

    python -m bench.cli_startup [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT_S = 0.3
INVENTORY = Path("inventory/examples/emulated.yaml")
BAD_CAMPAIGN = """\
name: bad
networks: [ethernet]
strategy: {name: no-such-strategy}
rounds: 2
"""
HEAVY = ("torch", "flwr", "pandas")


def command(campaign: Path) -> list[str]:
    """The command under test, in a fresh interpreter."""
    return [
        sys.executable,
        "-m",
        "testbed.cli",
        "campaign",
        "run",
        str(campaign),
        "-i",
        str(INVENTORY),
    ]


def time_once(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of one run; it must fail with code 2."""
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 2 or "strategy" not in done.stderr:
        raise SystemExit(
            f"expected exit 2 naming the strategy, got {done.returncode}:\n"
            f"{done.stderr}"
        )
    return elapsed


def heavy_imports(argv: list[str], env: dict[str, str]) -> list[str]:
    """Which of HEAVY the command imports (from ``-X importtime``)."""
    traced = [argv[0], "-X", "importtime", *argv[1:]]
    done = subprocess.run(traced, capture_output=True, text=True, env=env, check=False)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    return [name for name in HEAVY if name in imported]


def main() -> None:
    """Time the command and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    with tempfile.TemporaryDirectory() as folder:
        campaign = Path(folder) / "bad.yaml"
        campaign.write_text(BAD_CAMPAIGN)
        argv = command(campaign)
        time_once(argv, env)  # warm the page cache and .pyc files
        times = [time_once(argv, env) for _ in range(args.runs)]
        heavy = heavy_imports(argv, env)
    print(f"campaign run on a bad file, {args.runs} runs: ", end="")
    print(f"min {min(times):.3f} s, median {statistics.median(times):.3f} s")
    print(f"heavy modules imported: {', '.join(heavy) if heavy else 'none'}")
    verdict = "within" if statistics.median(times) < LIMIT_S else "OVER"
    print(f"{verdict} the {LIMIT_S} s target (median)")


if __name__ == "__main__":
    main()
