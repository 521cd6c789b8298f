"""Instants from Flower's SuperNode log: when it received and sent each message.

flwr 1.42's SuperNode logs, without timestamps, ``Receiving: train message (ID: ...)``,
``Received successfully``, ``Start `flwr-clientapp` process``, ``Sending: train message
(ID: ...)`` and ``Sent successfully``. flowerbed reads the SuperNode's output through a
pipe and stamps every line with ``time.time_ns()`` as it arrives
(testbed/transport/processes.py), which turns these lines into instants, good to a
few milliseconds. They are a second opinion beside the packet capture and the only
one where capture is off.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PATTERNS = (
    (re.compile(r"Receiving: (\w+) message \(ID: ([0-9a-f]+)\)"), "receive_start"),
    (re.compile(r"Received successfully"), "receive_end"),
    (re.compile(r"Start `flwr-clientapp` process"), "clientapp_start"),
    (re.compile(r"Sending: (\w+) message \(ID: ([0-9a-f]+)\)"), "send_start"),
    (re.compile(r"Sent successfully"), "send_end"),
)


def supernode_log_events(
    lines: Iterable[tuple[int, str]], node: str
) -> list[dict[str, Any]]:
    """Turn stamped SuperNode log lines into ``supernode_log`` event fields.

    Each result has ``node``, ``kind`` (receive_start, receive_end, clientapp_start,
    send_start, send_end), ``at_ns`` and, for starts, ``message_type`` and
    ``message_id``. An end inherits the type and id of the start before it.
    """
    events: list[dict[str, Any]] = []
    current: dict[str, str] = {"message_type": "", "message_id": ""}
    for at_ns, raw in lines:
        text = _ANSI.sub("", raw)
        for pattern, kind in _PATTERNS:
            match = pattern.search(text)
            if match is None:
                continue
            if match.groups():
                current = {"message_type": match.group(1), "message_id": match.group(2)}
            events.append({"node": node, "kind": kind, "at_ns": at_ns, **current})
            break
    return events
