"""``flowerbed strategies``: the registered federated methods and what each takes."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from testbed.cli.common import Format, FormatOpt, fail

strategies_app = typer.Typer(
    help="List the registered federated methods and describe one.",
    no_args_is_help=True,
)


def _parameter_lines(title: str, parameters: dict[str, dict[str, Any]]) -> list[str]:
    if not parameters:
        return [f"  {title}: none"]
    lines = [f"  {title}:"]
    for name, info in parameters.items():
        unit = f" {info['unit']}" if info["unit"] else ""
        lines.append(f"    {name} = {info['default']!r}{unit}: {info['help']}")
    return lines


def _text(described: dict[str, Any]) -> str:
    lines = [f"{described['name']}: {described['description']}"]
    if described["paper"]:
        lines.append(f"  paper: {described['paper']}")
    lines.append(f"  server: {described['server']}   client: {described['client']}")
    lines += _parameter_lines("server parameters", described["server_parameters"])
    lines += _parameter_lines("client parameters", described["client_parameters"])
    lines.append(
        f"  runtimes: {', '.join(described['runtimes'])}"
        f"   models: {', '.join(described['models'])}"
    )
    if described["claim"]:
        lines.append(f"  claim: {described['claim']}")
    if described["bench"]:
        lines.append(
            f"  bench: python -m {described['bench']}   doc: {described['doc']}"
        )
    lines.append(f"  last documented result: {described['result'] or '(none)'}")
    return "\n".join(lines)


@strategies_app.command("list")
def strategies_list(fmt: FormatOpt = Format.text) -> None:
    """Every registered method: paper, parameters, runtimes, claim and result."""
    from strategies.registry import REGISTRY

    described = [REGISTRY[name].describe() for name in sorted(REGISTRY)]
    if fmt is Format.json:
        typer.echo(json.dumps(described, indent=2))
        return
    for entry in described:
        claim = f"  claim: {entry['claim']}" if entry["claim"] else ""
        result = f" -> {entry['result']}" if entry["result"] else ""
        typer.echo(f"{entry['name']:<12} {entry['description']}")
        if claim:
            typer.echo(f"{'':<12}{claim}{result}")


@strategies_app.command("show")
def strategies_show(
    name: Annotated[str, typer.Argument(help="A registered strategy name.")],
    fmt: FormatOpt = Format.text,
) -> None:
    """One method in full: paper, every parameter with default and unit, claim."""
    from strategies.registry import strategy_spec

    try:
        spec = strategy_spec(name)
    except KeyError as err:
        fail(str(err.args[0]), 2)
        return
    described = spec.describe()
    if fmt is Format.json:
        typer.echo(json.dumps(described, indent=2))
        return
    typer.echo(_text(described))
