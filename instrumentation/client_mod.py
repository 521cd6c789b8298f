"""The client mod: stamps training and evaluation on the node and returns the stamps.

The mod measures around ``call_next`` (as Flower's ``message_size_mod`` does) and
puts its stamps into a separate ``ConfigRecord`` of the reply under
:data:`STAMPS_KEY`. It never adds a second ``MetricRecord``: Flower's built-in
strategies average every MetricRecord and refuse replies with two of them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable

STAMPS_KEY = "flowerbed.stamps"
NODE_NAME_KEY = "flowerbed-node"
# Emulated nodes share the machine's clock; a campaign may give a node a fake
# offset (node config) so that offset estimation and correction can be tested.
CLOCK_OFFSET_KEY = "flowerbed-clock-offset-ns"
PHASE_BY_MESSAGE_TYPE = {"train": "training", "evaluate": "evaluation"}


def content_bytes(content: RecordDict) -> int:
    """Bytes of a message's content as Flower counts them (sum of ``count_bytes``)."""
    return sum(_record_bytes(record) for record in content.values())


def _record_bytes(record: Any) -> int:
    """``record.count_bytes()``, with the same rules applied by hand where it fails.

    flwr 1.42's ``count_bytes`` raises on an empty string or an empty list in a
    Config/MetricRecord; the app's message is fine, so measuring must not fail.
    """
    try:
        return int(record.count_bytes())
    except (ValueError, IndexError):
        return sum(len(str(key)) + _value_bytes(value) for key, value in record.items())


def _value_bytes(value: Any) -> int:
    if isinstance(value, list):
        return sum(_value_bytes(item) for item in value)
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool):
        return 1
    return 8  # Flower's protobuf carries ints and floats as 64-bit values


@dataclass(frozen=True)
class ClientStamps:
    """What the mod measured for one message on one node."""

    phase: str
    message_type: str
    node: str
    round: int
    start_ns: int
    end_ns: int
    bytes_in: int
    bytes_out: int
    process_start_ns: int
    pid: int
    message_id: str = ""

    def to_config_record(self) -> ConfigRecord:
        """Encode the stamps for the reply (ConfigRecord holds ints and strings)."""
        return ConfigRecord(
            {
                "phase": self.phase,
                "message-type": self.message_type,
                "node": self.node,
                "round": self.round,
                "start-ns": self.start_ns,
                "end-ns": self.end_ns,
                "bytes-in": self.bytes_in,
                "bytes-out": self.bytes_out,
                "process-start-ns": self.process_start_ns,
                "pid": self.pid,
                "message-id": self.message_id,
            }
        )

    @classmethod
    def from_config_record(cls, record: ConfigRecord) -> ClientStamps:
        """Decode stamps written by :meth:`to_config_record`."""
        return cls(
            phase=str(record["phase"]),
            message_type=str(record["message-type"]),
            node=str(record["node"]),
            round=int(record["round"]),  # type: ignore[arg-type]
            start_ns=int(record["start-ns"]),  # type: ignore[arg-type]
            end_ns=int(record["end-ns"]),  # type: ignore[arg-type]
            bytes_in=int(record["bytes-in"]),  # type: ignore[arg-type]
            bytes_out=int(record["bytes-out"]),  # type: ignore[arg-type]
            process_start_ns=int(record["process-start-ns"]),  # type: ignore[arg-type]
            pid=int(record["pid"]),  # type: ignore[arg-type]
            message_id=str(record.get("message-id", "")),
        )


def _process_start_ns() -> int:
    """Wall-clock instant this process started, to a clock tick (0 if unknown).

    Read from /proc (start time in ticks since boot) against CLOCK_BOOTTIME, so the
    fresh ``flwr-clientapp`` process of every message pays no psutil import.
    """
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rpartition(")")[2].split()[19])
        since_start_s = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / float(
            os.sysconf("SC_CLK_TCK")
        )
        return time.time_ns() - int(since_start_s * 1e9)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def _round_of(msg: Message) -> int:
    """The server round of an instruction: ``server-round`` config or group id."""
    for record in msg.content.config_records.values():
        if "server-round" in record:
            return int(record["server-round"])  # type: ignore[arg-type]
    try:
        return int(msg.metadata.group_id)
    except (TypeError, ValueError):
        return 0


def timing_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Stamp the handler of a train or evaluate message and attach the stamps."""
    phase = PHASE_BY_MESSAGE_TYPE.get(msg.metadata.message_type.split(".")[0])
    if phase is None:
        return call_next(msg, context)
    offset_ns = int(context.node_config.get(CLOCK_OFFSET_KEY, 0))
    bytes_in = content_bytes(msg.content)
    start_ns = time.time_ns() + offset_ns
    reply = call_next(msg, context)
    end_ns = time.time_ns() + offset_ns
    if reply.has_error():
        return reply
    stamps = ClientStamps(
        phase=phase,
        message_type=msg.metadata.message_type,
        node=str(context.node_config.get(NODE_NAME_KEY, context.node_id)),
        round=_round_of(msg),
        start_ns=start_ns,
        end_ns=end_ns,
        bytes_in=bytes_in,
        bytes_out=content_bytes(reply.content),
        process_start_ns=_process_start_ns() + offset_ns,
        pid=os.getpid(),
        message_id=str(msg.metadata.message_id),
    )
    reply.content[STAMPS_KEY] = stamps.to_config_record()
    return reply
