"""Server-side timers: aggregation stamps and the client stamps that arrive in replies.

:func:`measured` turns any strategy of ``flwr.serverapp.strategy`` into one that
writes, for every round, the client mod's stamps of each reply and the time spent
in ``aggregate_train`` to an event sink. The strategy's behaviour is unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import Strategy

from instrumentation.client_mod import STAMPS_KEY, ClientStamps


class EventSink(Protocol):
    """Anything that takes events, such as :class:`instrumentation.events.EventLog`."""

    def append(self, event: str, **fields: Any) -> None:
        """Record one event."""


def record_client_stamps(sink: EventSink, replies: Iterable[Message]) -> int:
    """Write a ``phase`` event per reply that carries client stamps; return how many."""
    written = 0
    for reply in replies:
        if reply.has_error() or STAMPS_KEY not in reply.content:
            continue
        stamps = ClientStamps.from_config_record(
            reply.content.config_records[STAMPS_KEY]
        )
        sink.append(
            "phase",
            phase=stamps.phase,
            round=stamps.round,
            node=stamps.node,
            node_id=int(reply.metadata.src_node_id),
            message_type=stamps.message_type,
            start_ns=stamps.start_ns,
            end_ns=stamps.end_ns,
            bytes_in=stamps.bytes_in,
            bytes_out=stamps.bytes_out,
            process_start_ns=stamps.process_start_ns,
            pid=stamps.pid,
            source="client_mod",
        )
        written += 1
    return written


def record_failures(
    sink: EventSink, server_round: int, replies: Iterable[Message]
) -> None:
    """Write a ``failure`` event for every error reply (a node that did not answer)."""
    for reply in replies:
        if reply.has_error():
            sink.append(
                "failure",
                round=server_round,
                node_id=int(reply.metadata.src_node_id),
                message_type=reply.metadata.message_type,
                reason=str(reply.error.reason),
            )


S = TypeVar("S", bound=Strategy)


def measured(strategy_cls: type[S]) -> Callable[..., S]:
    """Return a factory for ``strategy_cls`` that also records stamps to ``sink``.

    Usage: ``measured(FedAvg)(sink=event_log, fraction_train=1.0)``.
    """

    class Measured(strategy_cls):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, sink: EventSink, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._sink = sink

        def aggregate_train(
            self, server_round: int, replies: Iterable[Message]
        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
            replies = list(replies)
            record_client_stamps(self._sink, replies)
            record_failures(self._sink, server_round, replies)
            start_ns = time.time_ns()
            result = super().aggregate_train(server_round, replies)
            end_ns = time.time_ns()
            self._sink.append(
                "phase",
                phase="aggregation",
                round=server_round,
                node="server",
                node_id=0,
                message_type="",
                start_ns=start_ns,
                end_ns=end_ns,
                source="server_timer",
            )
            _, metrics = result
            if metrics is not None:
                self._sink.append(
                    "metrics", round=server_round, scope="train", values=dict(metrics)
                )
            return result  # type: ignore[no-any-return]

        def aggregate_evaluate(
            self, server_round: int, replies: Iterable[Message]
        ) -> MetricRecord | None:
            replies = list(replies)
            record_client_stamps(self._sink, replies)
            record_failures(self._sink, server_round, replies)
            metrics = super().aggregate_evaluate(server_round, replies)
            if metrics is not None:
                self._sink.append(
                    "metrics",
                    round=server_round,
                    scope="evaluate",
                    values=dict(metrics),
                )
            return metrics  # type: ignore[no-any-return]

    Measured.__name__ = f"Measured{strategy_cls.__name__}"
    Measured.__qualname__ = Measured.__name__
    return Measured
