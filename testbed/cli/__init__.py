"""The ``flowerbed`` command line: one Typer app, one module per noun."""

from __future__ import annotations

import typer

from testbed.cli.campaign import campaign_app
from testbed.cli.cluster import cluster_app
from testbed.cli.errors import EdgeGroup
from testbed.cli.inventory import inventory_app
from testbed.cli.report import report_app
from testbed.cli.strategies import strategies_app

app = typer.Typer(
    cls=EdgeGroup,
    help="Measured federated-learning campaigns on emulated and real edge clusters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(inventory_app, name="inventory")
app.add_typer(cluster_app, name="cluster")
app.add_typer(campaign_app, name="campaign")
app.add_typer(report_app, name="report")
app.add_typer(strategies_app, name="strategies")


def main() -> None:
    """Entry point of ``flowerbed`` and ``python -m testbed.cli``."""
    app()
