"""Any app's ClientApp with flowerbed's timing mod around every message it handles.

:func:`wrap_client_app` loads the app's own ``ClientApp`` object and changes only
its class, to a subclass whose ``__call__`` runs :func:`timing_mod` around the
original call. Registered handlers, the app's own mods and its lifespan stay as
the app defined them; only train and evaluate replies gain the stamps record. A
wake message (instrumentation/wake.py) is answered at once, without the app.
"""

from __future__ import annotations

import importlib
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from instrumentation.client_mod import timing_mod
from instrumentation.wake import is_wake, wake_reply


class InjectError(ImportError):
    """An app component that cannot be loaded or is not the expected Flower type."""


def load_component(target: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the object it names."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise InjectError(
            f'component "{target}" is not of the form "package.module:attribute"; '
            "fix [tool.flwr.app.components] in the app's pyproject.toml"
        )
    module = importlib.import_module(module_name)
    obj: Any = module
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError as err:
            raise InjectError(
                f'component "{target}": module {module_name} '
                f"({getattr(module, '__file__', '?')}) has no attribute {attr_path}"
            ) from err
    return obj


def _measured_call(self: ClientApp, message: Message, context: Context) -> Message:
    """``ClientApp.__call__`` with the timing mod outside it (Flower's keywords)."""
    if is_wake(message):
        return wake_reply(message)
    parent: type[ClientApp] = type(self).__bases__[0]

    def original(message: Message, context: Context) -> Message:
        return parent.__call__(self, message, context)

    return timing_mod(message, context, original)


def measure_client_app(app: ClientApp) -> ClientApp:
    """Give ``app`` (in place) a class that stamps train and evaluate messages."""
    cls = type(app)
    if getattr(cls, "__flowerbed_measured__", False):
        return app
    measured = type(
        f"Measured{cls.__name__}",
        (cls,),
        {
            "__call__": _measured_call,
            "__flowerbed_measured__": True,
            "__module__": cls.__module__,
        },
    )
    app.__class__ = measured
    return app


def wrap_client_app(target: str) -> ClientApp:
    """Load the app's ClientApp named by ``target`` and measure it."""
    app = load_component(target)
    if not isinstance(app, ClientApp):
        raise InjectError(
            f'clientapp component "{target}" is a {type(app).__name__}, not a '
            "flwr.clientapp.ClientApp; flowerbed measures Message-API apps only"
        )
    return measure_client_app(app)
