"""Cost of the client mod per message: everything it adds around the app's handler.

Runs the mod around a handler that does nothing, on a message carrying the default
model (993,309 parameters), and prints the median added time per message. The
figure is what the mod adds to each train or evaluate message on a node.

    .venv/bin/python -m bench.mod_cost
"""

from __future__ import annotations

import statistics
import sys
import time

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from instrumentation.client_mod import timing_mod
from workloads.squeezenet import build_model


def main() -> int:
    """Time the mod with an empty handler."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    arrays = ArrayRecord(build_model().state_dict())
    context = Context(
        run_id=1,
        node_id=1,
        node_config={"flowerbed-node": "n"},
        state=RecordDict(),
        run_config={},
    )
    config = ConfigRecord({"server-round": 1})
    msg = Message(
        content=RecordDict({"arrays": arrays, "config": config}),
        dst_node_id=1,
        message_type="train",
    )

    def handler(m: Message, c: Context) -> Message:
        return Message(content=RecordDict({"arrays": arrays}), reply_to=m)

    bare, measured = [], []
    for _ in range(30):
        start = time.perf_counter_ns()
        handler(msg, context)
        bare.append(time.perf_counter_ns() - start)
        start = time.perf_counter_ns()
        timing_mod(msg, context, handler)
        measured.append(time.perf_counter_ns() - start)
    added_ms = (statistics.median(measured) - statistics.median(bare)) / 1e6
    print(f"model message: {arrays.count_bytes():,} bytes")
    print(f"mod adds {added_ms:.2f} ms per message (median of 30)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
