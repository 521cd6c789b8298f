"""Which Flower versions the warm launcher trusts: it relies on Flower internals.

The zygote calls ``flwr.supernode.cli.flwr_clientapp.flwr_clientapp`` in a forked
child, which holds only as long as that function, its argv and its process model
stay what they were in the versions tested here.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Sequence

# Release series the warm launcher was tested with ("1.42" admits 1.42.0, 1.42.1...).
TESTED_FLWR_SERIES: tuple[str, ...] = ("1.42",)
_RELEASE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def warm_supported(
    version: str,
    supported: Sequence[str] = TESTED_FLWR_SERIES,
    what: str = "the warm launcher",
) -> tuple[bool, str]:
    """Whether Flower ``version`` may run warm, and a sentence saying why (not)."""
    match = _RELEASE.fullmatch(version.strip())
    if match is None:
        return False, (
            f"flwr {version!r} is not a final release (X.Y.Z): {what} "
            "runs only on tested releases; launching stock"
        )
    series = f"{match[1]}.{match[2]}"
    if series not in supported:
        return False, (
            f"flwr {version} is not in the tested series {', '.join(supported)}: "
            f"{what} relies on Flower internals; launching stock"
        )
    return True, f"flwr {version} is in the tested series {series}"


def installed_flwr_version() -> str:
    """The version of the ``flwr`` distribution this Python would import."""
    return importlib.metadata.version("flwr")
