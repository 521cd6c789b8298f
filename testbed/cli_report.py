"""``flowerbed report``: turn campaign results into reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from testbed.cli_common import fail

report_app = typer.Typer(
    help="Turn campaign results into reports.", no_args_is_help=True
)


@report_app.command("build")
def report_build(
    results: Annotated[Path, typer.Argument(help="A campaign's results folder.")],
    quiet: Annotated[bool, typer.Option(help="Print only the report's path.")] = False,
) -> None:
    """Write report.html (self-contained), figures and CSV tables into RESULTS."""
    from analysis.report import build_report

    try:
        path = build_report(results)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    if not quiet:
        typer.echo(f"figures and tables in {results}")
    typer.echo(str(path.resolve()))
