"""The wake message: a tiny follow-up queued behind an instruction to one node.

An idle SuperNode of flwr 1.42 sleeps a fixed 3 s when a poll finds nothing, but
polls again at once after pushing a reply. A wake message queued behind each
instruction is the work that second poll finds; while the node answers it, the
server has time to push the next instruction, which the poll after the wake then
finds instead of sleeping. The injected client side answers a wake at once
without calling the app (instrumentation/inject_client.py); the measuring Grid
swallows the replies (instrumentation/measured_grid.py), so the app never sees one.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Message, RecordDict

from instrumentation.lever_keys import REPLY_PULL_KEY as REPLY_PULL_KEY
from instrumentation.lever_keys import WAKE_KEY as WAKE_KEY

# A valid Flower type ("query.<identifier>") that no app registers.
WAKE_MESSAGE_TYPE = "query.flowerbed_wake"
# A wake left unanswered by a dead node should not linger at the SuperLink.
WAKE_TTL_S = 120.0
_RECORD = "flowerbed.wake"


def is_wake(message: Message) -> bool:
    """Whether ``message`` is a wake instruction (or the reply to one)."""
    return str(message.metadata.message_type) == WAKE_MESSAGE_TYPE


def wake_message(dst_node_id: int, group_id: str) -> Message:
    """A wake instruction for node ``dst_node_id`` (one small ConfigRecord)."""
    content = RecordDict({_RECORD: ConfigRecord({"wake": True})})
    return Message(
        content, dst_node_id, WAKE_MESSAGE_TYPE, ttl=WAKE_TTL_S, group_id=group_id
    )


def wake_reply(message: Message) -> Message:
    """The reply a node sends to a wake at once, without the app."""
    return Message(
        RecordDict({_RECORD: ConfigRecord({"awake": True})}), reply_to=message
    )
