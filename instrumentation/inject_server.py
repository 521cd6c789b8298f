"""Any app's ServerApp with flowerbed's event log, grid proxy and aggregation timers.

:func:`wrap_server_app` first installs the aggregation timers on Flower's strategy
classes, then loads the app's own ``ServerApp`` object and changes only its class,
to a subclass whose ``__call__(grid, context)``:

1. opens the :class:`EventLog` named by the run config ``flowerbed-event-log``
   (run id ``flowerbed-run-id``), applies the reply back-off lever if the run
   config turns it on (``flowerbed-reply-backoff``, instrumentation/reply_backoff.py;
   undone when the app returns) and writes ``app_start`` with its outcome;
2. calls the app with a :class:`MeasuredGrid` in place of ``grid`` (with the
   low-latency levers the run config turns on: ``GridLevers``);
3. writes ``app_end`` (``status`` ``ok``, or ``failed`` with the error) and closes.

The timers wrap ``aggregate_train`` and ``aggregate_evaluate`` of every subclass
of ``flwr.serverapp.strategy.Strategy``, including the app's own subclasses
(through ``__init_subclass__``), and time only the outermost call, so a user
override that calls ``super()`` is one aggregation, not two. ``aggregate_train``
writes a ``phase`` event ``aggregation`` (docs/events.md); ``aggregate_evaluate``
writes an ``evaluate_aggregation`` event, kept apart so that a round has exactly
one aggregation phase. Both write the aggregated ``metrics``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from instrumentation.events import EventLog
from instrumentation.inject_client import InjectError, load_component
from instrumentation.measured_grid import GridLevers, MeasuredGrid
from instrumentation.patience import NODE_WAIT_KEY, make_patient, set_policy
from instrumentation.reply_backoff import backoff_requested, reply_backoff
from instrumentation.schema import EventKind, EventSink

logger = logging.getLogger(__name__)

EVENT_LOG_KEY = "flowerbed-event-log"
RUN_ID_KEY = "flowerbed-run-id"
DEFAULT_LOG_NAME = "flowerbed-events.jsonl"
TIMED_METHODS = ("aggregate_train", "aggregate_evaluate")

_state = threading.local()
_current_sink: EventSink | None = None
_installed = False


def set_current_sink(sink: EventSink | None) -> None:
    """Where the strategy timers write (None: they only pass calls through)."""
    global _current_sink
    _current_sink = sink


def current_sink() -> EventSink | None:
    """The sink the strategy timers write to, if a measured ServerApp is running."""
    return _current_sink


@contextmanager
def _outermost() -> Iterator[bool]:
    """Whether this is the outermost timed strategy call on this thread."""
    depth = getattr(_state, "depth", 0)
    _state.depth = depth + 1
    try:
        yield depth == 0
    finally:
        _state.depth = depth


def _server_round(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    value = args[0] if args else kwargs.get("server_round", 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _record(
    sink: EventSink, name: str, server_round: int, start_ns: int, result: Any
) -> None:
    end_ns = time.time_ns()
    if name == "aggregate_train":
        sink.append(
            EventKind.PHASE,
            phase="aggregation",
            round=server_round,
            node="server",
            node_id=0,
            message_type="",
            start_ns=start_ns,
            end_ns=end_ns,
            source="server_timer",
        )
        metrics = result[1] if isinstance(result, tuple) and len(result) == 2 else None
        scope = "train"
    else:
        sink.append(
            EventKind.EVALUATE_AGGREGATION,
            round=server_round,
            node="server",
            start_ns=start_ns,
            end_ns=end_ns,
            source="server_timer",
        )
        metrics, scope = result, "evaluate"
    if isinstance(metrics, Mapping) and metrics:
        sink.append(
            EventKind.METRICS, round=server_round, scope=scope, values=dict(metrics)
        )


def _timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with an outermost-call timer writing to the current sink."""

    @functools.wraps(method)
    def timed(self: Strategy, *args: Any, **kwargs: Any) -> Any:
        with _outermost() as outermost:
            sink = _current_sink
            if not outermost or sink is None:
                return method(self, *args, **kwargs)
            start_ns = time.time_ns()
            result = method(self, *args, **kwargs)
            _record(sink, name, _server_round(args, kwargs), start_ns, result)
            return result

    timed.__flowerbed_timed__ = True  # type: ignore[attr-defined]
    return timed


def _time_methods(cls: type) -> None:
    """Wrap the aggregation methods ``cls`` itself defines (once), and make its
    configure methods patient (``instrumentation/patience.py``)."""
    make_patient(cls)
    for name in TIMED_METHODS:
        method = cls.__dict__.get(name)
        if not callable(method) or getattr(method, "__isabstractmethod__", False):
            continue
        if getattr(method, "__flowerbed_timed__", False):
            continue
        setattr(cls, name, _timed(name, method))


def _all_subclasses(cls: type) -> list[type]:
    found: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def install_strategy_timers() -> None:
    """Time aggregation on every Strategy subclass, present and future (idempotent)."""
    global _installed
    if _installed:
        return
    for cls in _all_subclasses(Strategy):
        _time_methods(cls)
    previous = Strategy.__dict__.get("__init_subclass__")

    def init_subclass(cls: type[Strategy], /, **kwargs: Any) -> None:
        if previous is not None:
            previous.__func__(cls, **kwargs)
        else:
            super(Strategy, cls).__init_subclass__(**kwargs)
        _time_methods(cls)

    Strategy.__init_subclass__ = classmethod(init_subclass)  # type: ignore[method-assign,assignment]
    _installed = True


def _open_log(context: Context) -> EventLog:
    run_config = context.run_config
    path = str(run_config.get(EVENT_LOG_KEY, "") or "")
    if not path:
        path = os.path.join(os.getcwd(), DEFAULT_LOG_NAME)
        logger.warning(
            "run config %s is empty: writing flowerbed events to %s",
            EVENT_LOG_KEY,
            path,
        )
    run_id = str(run_config.get(RUN_ID_KEY, "") or "") or f"flower-{context.run_id}"
    return EventLog(path, run_id=run_id)


def _node_wait_s(context: Context) -> float | None:
    """``flowerbed-node-wait-s`` from the run config; None (no patience) if unset."""
    value = context.run_config.get(NODE_WAIT_KEY)
    try:
        wait_s = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return wait_s if wait_s > 0 else None


def _measured_call(self: ServerApp, grid: Grid, context: Context) -> None:
    """``ServerApp.__call__`` inside flowerbed's event log (Flower's keywords)."""
    parent: type[ServerApp] = type(self).__bases__[0]
    with (
        _open_log(context) as events,
        reply_backoff(backoff_requested(context.run_config)) as backoff,
    ):
        events.append(
            EventKind.APP_START,
            flower_run_id=int(context.run_id),
            serverapp=str(getattr(self, "__flowerbed_target__", "")),
            **(backoff.event_fields() if backoff is not None else {}),
        )
        set_current_sink(events)
        set_policy(_node_wait_s(context), events)
        start_ns = time.time_ns()
        try:
            measured = MeasuredGrid(
                grid, events, GridLevers.from_run_config(context.run_config)
            )
            parent.__call__(self, grid=measured, context=context)
        except BaseException as err:
            events.append(
                EventKind.APP_END,
                status="failed",
                error_type=type(err).__name__,
                error=str(err)[:2000],
                start_ns=start_ns,
                end_ns=time.time_ns(),
            )
            raise
        finally:
            set_current_sink(None)
            set_policy(None, None)
        events.append(
            EventKind.APP_END, status="ok", start_ns=start_ns, end_ns=time.time_ns()
        )


def measure_server_app(app: ServerApp, target: str = "") -> ServerApp:
    """Give ``app`` (in place) a class that runs it inside flowerbed's measurement."""
    cls = type(app)
    if not getattr(cls, "__flowerbed_measured__", False):
        app.__class__ = type(
            f"Measured{cls.__name__}",
            (cls,),
            {
                "__call__": _measured_call,
                "__flowerbed_measured__": True,
                "__module__": cls.__module__,
            },
        )
    app.__flowerbed_target__ = target  # type: ignore[attr-defined]
    return app


def wrap_server_app(target: str) -> ServerApp:
    """Install the strategy timers, then load ServerApp ``target`` and measure it."""
    install_strategy_timers()
    app = load_component(target)
    if not isinstance(app, ServerApp):
        raise InjectError(
            f'serverapp component "{target}" is a {type(app).__name__}, not a '
            "flwr.serverapp.ServerApp; flowerbed measures Message-API apps only"
        )
    return measure_server_app(app, target)
