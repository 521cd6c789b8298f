"""A proxy for a ServerApp's Grid that records every dispatch and pickup of a message.

:class:`MeasuredGrid` hands every call to the real Grid unchanged (Flower's pushes,
pulls and 3 s polling stay exactly as they are) and writes, around them:

- ``dispatch``: one per instruction pushed (``message_id``, destination ``node_id``,
  ``message_type``, ``round``, ``created_ns`` from the message's metadata,
  ``dispatch_ns`` just before the push or ``send_and_receive`` call, ``pushed_ns``
  after ``push_messages`` returned, ``bytes`` of the content);
- ``pickup``: one per reply when the ServerApp receives it (``message_id`` of the
  instruction it answers, ``reply_id``, source ``node_id``, ``pickup_ns``);
- ``phase``: the client mod's training/evaluation stamps carried by the reply,
  whose record is then REMOVED from the reply so the app never sees it;
- ``failure``: error replies, messages the SuperLink refused, and instructions
  that got no reply before ``send_and_receive``'s timeout (a dead, frozen or cut-off
  node: ``reason`` says so; ``node`` is the node's name when an earlier reply told it).

Dispatch events are written once the message id is known (after the push, or when
``send_and_receive`` returns); their instants are taken before the call.

Two levers of the low-latency launch (docs/launch.md) live here, off by default
(:class:`GridLevers`, from the run config):

- ``reply_pull_s``: ``send_and_receive`` pushes, then pulls every ``reply_pull_s``
  seconds instead of Flower's 3 s, with Flower's semantics (same timeout, error
  replies returned, missing replies reported); pickups are then stamped per pull;
- ``wake``: after each push, one wake message (instrumentation/wake.py) per
  destination node. Their replies are pulled along with the app's and swallowed;
  they are recorded as ``wake`` events only, never as dispatch or pickup.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flwr.app import Message, RecordDict
from flwr.proto.node_pb2 import NodeInfo
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from instrumentation.client_mod import STAMPS_KEY, ClientStamps, content_bytes
from instrumentation.schema import EventKind, EventSink
from instrumentation.wake import (
    REPLY_PULL_KEY,
    WAKE_KEY,
    WAKE_TTL_S,
    is_wake,
    wake_message,
)

# Flower's HTTP grid sleeps this long between pulls in send_and_receive.
FLOWER_PULL_S = 3.0


@dataclass(frozen=True)
class GridLevers:
    """The measuring Grid's low-latency levers; the defaults are stock Flower.

    ``reply_pull_s`` None keeps Flower's own ``send_and_receive``.
    """

    reply_pull_s: float | None = None
    wake: bool = False

    def __post_init__(self) -> None:
        if self.reply_pull_s is not None and not self.reply_pull_s > 0:
            raise ValueError(f"reply_pull_s must be > 0, got {self.reply_pull_s!r}")

    @property
    def own_loop(self) -> bool:
        """Whether ``send_and_receive`` runs our loop instead of Flower's."""
        return self.reply_pull_s is not None or self.wake

    @property
    def pull_interval_s(self) -> float:
        """Seconds between two pulls of our loop (Flower's when not set)."""
        return self.reply_pull_s if self.reply_pull_s is not None else FLOWER_PULL_S

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> GridLevers:
        """The levers the campaign passed (``flowerbed-reply-pull-s``, ``-wake``)."""
        try:
            pull = float(run_config.get(REPLY_PULL_KEY, 0.0) or 0.0)
        except (TypeError, ValueError):
            pull = 0.0
        return cls(
            reply_pull_s=pull if pull > 0 else None,
            wake=bool(run_config.get(WAKE_KEY, False)),
        )


@dataclass(frozen=True)
class _Wake:
    node_id: int
    round: int
    dispatch_ns: int


def message_category(message_type: str) -> str:
    """``train`` for ``train.custom``: Flower's category of a message type."""
    return message_type.split(".")[0]


def declared_round(msg: Message) -> int | None:
    """The round a message says it belongs to: ``server-round`` config or group id."""
    for record in msg.content.config_records.values():
        if "server-round" in record:
            try:
                return int(record["server-round"])  # type: ignore[arg-type]
            except (TypeError, ValueError):
                break
    try:
        return int(msg.metadata.group_id)
    except (TypeError, ValueError):
        return None


def strip_stamps(reply: Message) -> ClientStamps | None:
    """Remove the client mod's record from a reply and return its stamps."""
    if reply.has_error() or STAMPS_KEY not in reply.content:
        return None
    record = reply.content.config_records[STAMPS_KEY]
    del reply.content[STAMPS_KEY]
    try:
        return ClientStamps.from_config_record(record)
    except (KeyError, TypeError, ValueError):
        return None


class MeasuredGrid(Grid):
    """A Grid that behaves like ``grid`` and records message events to ``sink``."""

    def __init__(
        self, grid: Grid, sink: EventSink, levers: GridLevers | None = None
    ) -> None:
        self._grid = grid
        self._sink = sink
        self._levers = levers or GridLevers()
        self._wakes: dict[str, _Wake] = {}
        self._rounds: dict[str, int] = {}
        self._batches: Counter[str] = Counter()
        self._names: dict[int, str] = {}
        self._destinations: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in (
            "_grid",
            "_sink",
            "_names",
            "_destinations",
            "_levers",
            "_wakes",
        ):
            raise AttributeError(name)
        return getattr(self._grid, name)

    @property
    def wrapped(self) -> Grid:
        """The real Grid."""
        return self._grid

    # Plain delegation of the Grid interface.
    def set_run(self, run: Run) -> None:
        """Set the run on the real Grid."""
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        """The real Grid's run."""
        return self._grid.run

    def create_message(  # noqa: D102 - as Grid.create_message
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self._grid.create_message(
            content, message_type, dst_node_id, group_id, ttl
        )

    def get_node_ids(self) -> Iterable[int]:
        """Node ids from the real Grid."""
        return self._grid.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        """Nodes from the real Grid."""
        return self._grid.get_nodes()

    # Measured calls.
    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Push through the real Grid; record a ``dispatch`` per message."""
        messages = list(messages)
        rounds = self._rounds_for(messages)
        dispatch_ns = time.time_ns()
        ids = list(self._grid.push_messages(messages))
        pushed_ns = time.time_ns()
        self._record_dispatch(messages, ids, rounds, dispatch_ns, pushed_ns, "push")
        self._push_wakes(messages, ids, rounds)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Pull through the real Grid; record a ``pickup`` per reply, strip stamps."""
        return self._pull(list(message_ids))

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """The real Grid's ``send_and_receive``, with dispatch and pickup recorded
        (our own push-and-pull loop when a lever asks for it)."""
        if self._levers.own_loop:
            return self._send_and_receive(list(messages), timeout)
        messages = list(messages)
        rounds = self._rounds_for(messages)
        dispatch_ns = time.time_ns()
        try:
            replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        finally:
            # Flower's push sets each message's id on the object we passed.
            ids = [str(m.metadata.message_id) for m in messages]
            self._record_dispatch(
                messages, ids, rounds, dispatch_ns, None, "send_and_receive"
            )
        self._record_pickup(replies, time.time_ns(), "send_and_receive")
        self._record_missing(messages, replies, rounds, timeout)
        return replies

    def _send_and_receive(
        self, messages: list[Message], timeout: float | None
    ) -> list[Message]:
        """Flower's loop (push, pull until all replies or the timeout) with our
        pull interval: error replies are returned, missing ones recorded."""
        ids = [str(i) for i in self.push_messages(messages) if i]
        pending = set(ids)
        end = time.time() + (timeout if timeout is not None else 0.0)
        replies: list[Message] = []
        while timeout is None or time.time() < end:
            got = self._pull(sorted(pending))
            replies += got
            pending.difference_update(str(r.metadata.reply_to_message_id) for r in got)
            if not pending:
                break
            pause = self._levers.pull_interval_s
            if timeout is not None:
                pause = min(pause, max(0.0, end - time.time()))
            time.sleep(pause)
        self._record_missing(messages, replies, self._rounds_of(messages), timeout)
        return replies

    def _rounds_of(self, messages: list[Message]) -> list[int]:
        """The rounds recorded at dispatch (0 for a message never accepted)."""
        return [self._rounds.get(str(m.metadata.message_id), 0) for m in messages]

    def _pull(self, message_ids: list[str]) -> list[Message]:
        """Pull the app's replies and, with them, the wakes' (swallowed)."""
        self._forget_old_wakes()
        asked = message_ids + [w for w in self._wakes if w not in message_ids]
        pulled = list(self._grid.pull_messages(asked)) if asked else []
        pickup_ns = time.time_ns()
        replies = [r for r in pulled if not self._swallow_wake(r, pickup_ns)]
        self._record_pickup(replies, pickup_ns, "pull")
        return replies

    def _push_wakes(
        self, messages: list[Message], ids: list[str], rounds: list[int]
    ) -> None:
        """One wake per destination node of the pushed messages (wake lever)."""
        if not self._levers.wake:
            return
        targets: dict[int, int] = {}
        for index, (msg, server_round) in enumerate(zip(messages, rounds, strict=True)):
            if index < len(ids) and ids[index] and not is_wake(msg):
                targets.setdefault(int(msg.metadata.dst_node_id), server_round)
        if not targets:
            return
        wakes = [wake_message(node, str(r)) for node, r in targets.items()]
        dispatch_ns = time.time_ns()
        wake_ids = list(self._grid.push_messages(wakes))
        for wake, wake_id in zip(wakes, wake_ids, strict=False):
            if not wake_id:
                continue
            record = _Wake(
                int(wake.metadata.dst_node_id), int(wake.metadata.group_id), dispatch_ns
            )
            self._wakes[str(wake_id)] = record
            self._sink.append(
                EventKind.WAKE,
                stage="dispatch",
                message_id=str(wake_id),
                node_id=record.node_id,
                round=record.round,
                at_ns=dispatch_ns,
            )

    def _swallow_wake(self, reply: Message, pickup_ns: int) -> bool:
        """Whether ``reply`` answers a wake (then recorded as such, not returned)."""
        wake_id = str(reply.metadata.reply_to_message_id)
        record = self._wakes.pop(wake_id, None)
        if record is None:
            return False
        self._sink.append(
            EventKind.WAKE,
            stage="pickup",
            message_id=wake_id,
            node_id=record.node_id,
            round=record.round,
            at_ns=pickup_ns,
            error=reply.has_error(),
        )
        return True

    def _forget_old_wakes(self) -> None:
        """Stop asking for wakes past their TTL (a node that died holds them)."""
        oldest = time.time_ns() - int(WAKE_TTL_S * 1e9)
        for wake_id in [w for w, r in self._wakes.items() if r.dispatch_ns < oldest]:
            del self._wakes[wake_id]

    def _record_missing(
        self,
        messages: list[Message],
        replies: list[Message],
        rounds: list[int],
        timeout: float | None,
    ) -> None:
        answered = {str(r.metadata.reply_to_message_id) for r in replies}
        for msg, server_round in zip(messages, rounds, strict=True):
            message_id = str(msg.metadata.message_id)
            if not message_id or message_id in answered:
                continue
            node_id = int(msg.metadata.dst_node_id)
            waited = f" of {timeout:g} s" if timeout is not None else ""
            self._sink.append(
                EventKind.FAILURE,
                round=server_round,
                node_id=node_id,
                node=self._names.get(node_id, ""),
                message_type=msg.metadata.message_type,
                message_id=message_id,
                reason=f"no reply within the round timeout{waited}",
                source="grid",
            )

    def _rounds_for(self, messages: list[Message]) -> list[int]:
        """Each message's round; a per-type count of batches when it declares none."""
        for category in {message_category(m.metadata.message_type) for m in messages}:
            self._batches[category] += 1
        return [
            r
            if (r := declared_round(m)) is not None
            else self._batches[message_category(m.metadata.message_type)]
            for m in messages
        ]

    def _record_dispatch(
        self,
        messages: list[Message],
        ids: list[str],
        rounds: list[int],
        dispatch_ns: int,
        pushed_ns: int | None,
        via: str,
    ) -> None:
        for index, (msg, server_round) in enumerate(zip(messages, rounds, strict=True)):
            message_id = ids[index] if index < len(ids) and ids[index] else ""
            meta = msg.metadata
            if not message_id:
                self._sink.append(
                    EventKind.FAILURE,
                    round=server_round,
                    node_id=int(meta.dst_node_id),
                    message_type=meta.message_type,
                    reason="the SuperLink did not accept the message (no id)",
                    source="grid",
                )
                continue
            self._rounds[message_id] = server_round
            self._destinations[message_id] = int(meta.dst_node_id)
            self._sink.append(
                EventKind.DISPATCH,
                message_id=message_id,
                node_id=int(meta.dst_node_id),
                message_type=meta.message_type,
                round=server_round,
                group_id=str(meta.group_id),
                created_ns=int(float(meta.created_at) * 1e9),
                dispatch_ns=dispatch_ns,
                pushed_ns=pushed_ns,
                bytes=content_bytes(msg.content),
                via=via,
            )

    def _record_pickup(self, replies: list[Message], pickup_ns: int, via: str) -> None:
        for reply in replies:
            meta = reply.metadata
            message_id = str(meta.reply_to_message_id)
            server_round = self._rounds.get(message_id)
            node_id = int(meta.src_node_id)
            if reply.has_error():
                # the SuperLink answers for an unavailable node under its own id
                node_id = self._destinations.get(message_id, node_id)
                self._sink.append(
                    EventKind.PICKUP,
                    message_id=message_id,
                    reply_id=str(meta.message_id),
                    node_id=node_id,
                    message_type=meta.message_type,
                    round=server_round or 0,
                    pickup_ns=pickup_ns,
                    bytes=0,
                    error=True,
                    via=via,
                )
                self._sink.append(
                    EventKind.FAILURE,
                    round=server_round or 0,
                    node_id=node_id,
                    node=self._names.get(node_id, ""),
                    message_type=meta.message_type,
                    message_id=message_id,
                    code=int(reply.error.code),
                    reason=str(reply.error.reason),
                    source="grid",
                )
                continue
            reply_bytes = content_bytes(reply.content)
            stamps = strip_stamps(reply)
            if server_round is None:
                server_round = stamps.round if stamps is not None else 0
            self._sink.append(
                EventKind.PICKUP,
                message_id=message_id,
                reply_id=str(meta.message_id),
                node_id=node_id,
                message_type=meta.message_type,
                round=server_round,
                pickup_ns=pickup_ns,
                bytes=reply_bytes,
                error=False,
                via=via,
            )
            if stamps is not None:
                self._names[node_id] = stamps.node
                self._record_stamps(stamps, node_id, message_id, server_round)

    def _record_stamps(
        self, stamps: ClientStamps, node_id: int, message_id: str, server_round: int
    ) -> None:
        self._sink.append(
            EventKind.PHASE,
            phase=stamps.phase,
            round=server_round,
            node=stamps.node,
            node_id=node_id,
            message_type=message_category(stamps.message_type),
            start_ns=stamps.start_ns,
            end_ns=stamps.end_ns,
            bytes_in=stamps.bytes_in,
            bytes_out=stamps.bytes_out,
            process_start_ns=stamps.process_start_ns,
            pid=stamps.pid,
            message_id=message_id,
            source="client_mod",
        )
