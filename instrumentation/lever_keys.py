"""Run-config keys of the measuring Grid's levers, importable without Flower.

The campaign model (testbed/campaign/launch.py) names them when it validates a
campaign file; importing instrumentation/wake.py for them would import Flower.
"""

from __future__ import annotations

# Read by the measuring Grid (instrumentation/measured_grid.py), declared by
# testbed/campaign/app_bundle.py.
REPLY_PULL_KEY = "flowerbed-reply-pull-s"
WAKE_KEY = "flowerbed-wake"
