"""The event log's contract: every event kind and the fields it must and may carry.

docs/events.md explains each kind; this module is the same table as code, so the
writers (instrumentation/, testbed/, strategies/) and the readers (analysis/) spell
a kind one way. It imports nothing but the standard library: the campaign-file
parser, the strategies and the analysis import it without pulling in Flower or torch.

A spec lists what today's writers always write (``required``) and what they write
only sometimes (``optional``). Older logs may lack fields added since; readers
tolerate that (docs/events.md says how), so validate only what is written now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

# The keys the event log itself sets on every event (instrumentation/events.py).
COMMON_FIELDS = ("event", "run_id", "t_ns")


class EventKind(StrEnum):
    """The ``event`` value of each kind of line in ``events.jsonl``."""

    RUN_START = "run_start"
    RUN_END = "run_end"
    PHASE = "phase"
    DISPATCH = "dispatch"
    PICKUP = "pickup"
    CLOCK = "clock"
    TRANSFER = "transfer"
    NODE_TRANSFER = "node_transfer"
    METRICS = "metrics"
    SUPERNODE_LOG = "supernode_log"
    APP_START = "app_start"
    APP_END = "app_end"
    EVALUATE_AGGREGATION = "evaluate_aggregation"
    FAILURE = "failure"
    DEGRADED = "degraded"
    FAULT = "fault"
    RUN_ERROR = "run_error"
    FETCH_ERROR = "fetch_error"
    FEDBUFF_UPDATE = "fedbuff_update"
    CLOCK_ERROR = "clock_error"
    CHRONY = "chrony"
    LOG_REPAIRED = "log_repaired"
    WAKE = "wake"


class EventSink(Protocol):
    """Anything that takes events: the event log (instrumentation/events.py), or a
    list in tests. ``event`` is an :class:`EventKind`."""

    def append(self, event: str, **fields: Any) -> None:
        """Record one event."""


@dataclass(frozen=True)
class EventSpec:
    """One kind's fields besides :data:`COMMON_FIELDS`: always written, or sometimes."""

    kind: EventKind
    required: frozenset[str]
    optional: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        both = self.required & self.optional
        if both:
            raise ValueError(f"{self.kind}: {sorted(both)} both required and optional")
        common = (self.required | self.optional) & set(COMMON_FIELDS)
        if common:
            raise ValueError(f"{self.kind}: {sorted(common)} are set by the log")

    @property
    def fields(self) -> frozenset[str]:
        """Every field the kind may carry, required or optional."""
        return self.required | self.optional


def _spec(kind: EventKind, required: str, optional: str = "") -> EventSpec:
    return EventSpec(kind, frozenset(required.split()), frozenset(optional.split()))


_TRANSFER = (
    "node network direction start_ns end_ns bytes packets retransmissions source"
)
_MESSAGE = "message_id node_id message_type round"

SPECS: Mapping[EventKind, EventSpec] = {
    spec.kind: spec
    for spec in (
        _spec(
            EventKind.RUN_START,
            "network strategy repetition",
            "address security transport launch levers",
        ),
        _spec(EventKind.RUN_END, "status reason", "rounds flower_run_id"),
        _spec(
            EventKind.PHASE,
            "phase round node node_id message_type start_ns end_ns source",
            "bytes_in bytes_out process_start_ns pid message_id",
        ),
        _spec(
            EventKind.DISPATCH,
            f"{_MESSAGE} dispatch_ns pushed_ns created_ns bytes via",
            "group_id",
        ),
        _spec(EventKind.PICKUP, f"{_MESSAGE} reply_id pickup_ns bytes error via"),
        _spec(
            EventKind.CLOCK,
            "node path when offset_ns uncertainty_ns rtt_ns samples_used",
            "injected_offset_ns",
        ),
        _spec(EventKind.TRANSFER, _TRANSFER, "busy_ns owed_ns"),
        _spec(EventKind.NODE_TRANSFER, f"{_TRANSFER} side", "busy_ns owed_ns"),
        _spec(EventKind.METRICS, "round scope values", "start_ns end_ns"),
        _spec(EventKind.SUPERNODE_LOG, "node kind at_ns message_type message_id"),
        _spec(
            EventKind.APP_START,
            "flower_run_id serverapp",
            "reply_backoff reply_backoff_reason",
        ),
        _spec(EventKind.APP_END, "status start_ns end_ns", "error error_type"),
        _spec(EventKind.EVALUATE_AGGREGATION, "round start_ns end_ns", "node source"),
        _spec(
            EventKind.FAILURE,
            "round node_id message_type reason",
            "node message_id code source",
        ),
        _spec(EventKind.DEGRADED, "round step wanted present node_ids waited_s"),
        _spec(
            EventKind.FAULT,
            "kind node round action duration_s t_fault_ns error",
        ),
        _spec(EventKind.RUN_ERROR, "reason"),
        _spec(EventKind.FETCH_ERROR, "missing"),
        _spec(
            EventKind.FEDBUFF_UPDATE,
            "node_id trained_on_version staleness sent_ns arrival_ns outcome weight"
            " version_after server_step num_examples message_id reason",
        ),
        _spec(EventKind.CLOCK_ERROR, "node path when error", "injected_offset_ns"),
        _spec(EventKind.CHRONY, "when host tracking error"),
        _spec(EventKind.LOG_REPAIRED, "reason"),
        _spec(EventKind.WAKE, "stage message_id node_id round at_ns", "error"),
    )
}


def spec_of(kind: str) -> EventSpec:
    """The spec of ``kind``; a ValueError listing the known kinds otherwise."""
    try:
        return SPECS[EventKind(kind)]
    except ValueError:
        known = ", ".join(k.value for k in EventKind)
        raise ValueError(
            f"unknown event kind {kind!r}; docs/events.md defines: {known}"
        ) from None


def field_problems(
    kind: str, fields: Iterable[str], *, strict: bool = False
) -> list[str]:
    """What is wrong with an event of ``kind`` carrying ``fields`` (besides the
    common keys); empty if nothing. ``strict`` also reports undeclared fields.
    """
    try:
        spec = spec_of(kind)
    except ValueError as err:
        return [str(err)]
    present = set(fields) - set(COMMON_FIELDS)
    problems = [
        f"event {kind!r} lacks field {name!r} (docs/events.md)"
        for name in sorted(spec.required - present)
    ]
    if strict:
        problems += [
            f"event {kind!r} has undeclared field {name!r}; add it to"
            " instrumentation/schema.py and docs/events.md"
            for name in sorted(present - spec.fields)
        ]
    return problems


def validate_event(event: Mapping[str, object], *, strict: bool = False) -> list[str]:
    """Problems of one complete event (as read back from a log); empty if valid.

    Checks the common keys (``event``, a non-empty ``run_id``, an integer
    ``t_ns``), that the kind is known and that its required fields are present;
    with ``strict``, also that it carries no field its spec does not declare.
    """
    problems = []
    run_id, t_ns = event.get("run_id"), event.get("t_ns")
    if not isinstance(run_id, str) or not run_id:
        problems.append(f"run_id must be a non-empty string, got {run_id!r}")
    if not isinstance(t_ns, int) or isinstance(t_ns, bool):
        problems.append(f"t_ns must be integer nanoseconds, got {t_ns!r}")
    kind = event.get("event")
    if not isinstance(kind, str):
        return [f"event kind must be a string, got {kind!r}", *problems]
    return problems + field_problems(kind, event.keys(), strict=strict)
