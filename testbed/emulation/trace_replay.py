"""The trace replay process: one per cluster, moving traced links' rates.

Run as ``python -m testbed.emulation.trace_replay CONFIG.json`` (``cluster up``
does this; see ``testbed/emulation/replay.py``). It starts one ``tc -force -batch
-`` per namespace holding a traced device, then ``hz`` times a second writes a
rate change for every link whose rate differs from the one it last set. It
writes ``ready_file`` (with ``started_at``, the epoch second its loop began) once
every first rate is sent, and ends on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from testbed.commands.shaping import rate_bits
from testbed.emulation.delay_line import realtime
from testbed.emulation.replay import (
    batch_command,
    change_line,
    replay_rate,
    trace_from_config,
)


class Replay:
    """The tc processes, the links and the loop that feeds them."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.hz = float(config["hz"])
        self.shaper = config.get("shaper", "htb")
        self.links = [
            (raw, trace_from_config(raw), float(raw["phase_s"]))
            for raw in config["links"]
        ]
        self.tc: dict[str | None, subprocess.Popen[str]] = {}
        for raw, _, _ in self.links:
            namespace = raw["namespace"]
            if namespace not in self.tc:
                self.tc[namespace] = subprocess.Popen(  # noqa: S603 - our tc argv
                    batch_command(namespace),
                    stdin=subprocess.PIPE,
                    text=True,
                )
        self.last: dict[int, int] = {}
        self.stopping = False

    def tick(self, elapsed_s: float) -> int:
        """Send every changed rate; return how many lines went out."""
        sent: dict[str | None, list[str]] = {}
        for i, (raw, trace, phase) in enumerate(self.links):
            mbit = replay_rate(trace, elapsed_s, phase)
            bits = rate_bits(mbit)
            if self.last.get(i) == bits:
                continue
            self.last[i] = bits
            sent.setdefault(raw["namespace"], []).append(
                change_line(raw["device"], mbit, self.shaper) + "\n"
            )
        for namespace, lines in sent.items():
            stdin: IO[str] | None = self.tc[namespace].stdin
            assert stdin is not None
            stdin.write("".join(lines))
            stdin.flush()
        return sum(len(lines) for lines in sent.values())

    def serve(self, ready_file: Path) -> None:
        """Replay until SIGTERM; then end the tc processes."""
        period = 1.0 / self.hz
        start = time.monotonic()
        wall = time.time()
        self.tick(0.0)
        ready = {"pid": os.getpid(), "links": len(self.links), "hz": self.hz,
                 "started_at": wall}  # fmt: skip
        ready_file.write_text(json.dumps(ready))
        print(f"trace replay: {len(self.links)} link(s) at {self.hz:g} Hz", flush=True)
        ticks = 1
        while not self.stopping:
            due = start + ticks * period
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if self.stopping:
                break
            elapsed = time.monotonic() - start
            ticks = int(elapsed / period) + 1  # a late tick skips, never bunches
            try:
                self.tick(elapsed)
            except BrokenPipeError:
                dead = [ns for ns, p in self.tc.items() if p.poll() is not None]
                print(f"trace replay: tc ended for {dead}; stopping", flush=True)
                break
        self.close()

    def close(self) -> None:
        """Close every tc's input and wait for it."""
        for process in self.tc.values():
            try:
                if process.stdin is not None:
                    process.stdin.close()
            except OSError:
                pass
            try:
                process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: list[str]) -> int:
    """Replay the links of the config file ``argv[0]`` until SIGTERM."""
    config = json.loads(Path(argv[0]).read_text())
    scheduling = realtime()  # before tc starts, so it inherits the priority
    replay = Replay(config)

    def stop(signum: int, frame: object) -> None:
        replay.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"trace replay: {scheduling}", flush=True)
    replay.serve(Path(config["ready_file"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
