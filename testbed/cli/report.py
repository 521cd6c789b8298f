"""``flowerbed report``: turn campaign results into reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from testbed.cli.common import Format, FormatOpt, fail, jsonable

report_app = typer.Typer(
    help="Turn campaign results into reports.", no_args_is_help=True
)

WarmupOpt = Annotated[
    int,
    typer.Option(
        "--warmup-rounds",
        min=0,
        help="Leave rounds 1..N out of the study and straggler tables.",
    ),
]
TargetOpt = Annotated[
    float | None,
    typer.Option(
        "--target-accuracy",
        min=0.0,
        max=1.0,
        help="Accuracy the time-to-target table counts to "
        "(default: 90% of the best any run reached).",
    ),
]


@report_app.command("build")
def report_build(
    results: Annotated[Path, typer.Argument(help="A campaign's results folder.")],
    quiet: Annotated[bool, typer.Option(help="Print only the report's path.")] = False,
    warmup_rounds: WarmupOpt = 0,
    target_accuracy: TargetOpt = None,
    timeline_round: Annotated[
        int,
        typer.Option(min=1, help="Round the per-node timelines show (else the first)."),
    ] = 2,
) -> None:
    """Write report.html (self-contained), summary.md, figures and CSVs into RESULTS."""
    from analysis.report import build_report

    try:
        path = build_report(
            results,
            warmup_rounds=warmup_rounds,
            target_accuracy=target_accuracy,
            timeline_round=timeline_round,
        )
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    if not quiet:
        typer.echo(f"figures and tables in {results}")
    typer.echo(str(path.resolve()))


@report_app.command("compare")
def report_compare(
    results: Annotated[
        list[Path], typer.Argument(help="Two or more campaigns' results folders.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for compare.html, .md and CSVs [default: "
            "<first folder>/compare]."
        ),
    ] = None,
    warmup_rounds: WarmupOpt = 0,
    target_accuracy: TargetOpt = None,
    output_format: FormatOpt = Format.text,
) -> None:
    """Put the study tables of several campaigns side by side, with differences.

    A difference "exceeds spread" when the two medians' 95% bootstrap intervals
    (over rounds and repetitions) do not overlap.
    """
    from analysis.compare import compare_campaigns, write_comparison

    try:
        comparison = compare_campaigns(
            results, warmup_rounds=warmup_rounds, target_accuracy=target_accuracy
        )
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    page = write_comparison(comparison, out or results[0] / "compare")
    study = comparison.study
    if output_format == Format.json:
        records = json.loads(study.to_json(orient="records"))
        typer.echo(
            json.dumps(
                jsonable(
                    {"labels": comparison.labels, "study": records, "html": str(page)}
                ),
                indent=2,
            )
        )
        return
    for text in comparison.notes:
        typer.echo(f"note: {text}")
    first = comparison.labels[0]
    for label in comparison.labels[1:]:
        flagged = study[study[f"{label}:exceeds_spread"]]
        typer.echo(
            f"{label} vs {first}: {len(flagged)} of {len(study)} medians differ by "
            "more than the run-to-run spread"
        )
        for r in flagged.to_dict("records"):
            typer.echo(
                f"  {r['network']:<10} {r['strategy']:<10} {r['quantity']:<15} "
                f"{r[f'{first}:median']:10.3f} -> {r[f'{label}:median']:10.3f} "
                f"({r[f'{label}:diff_pct']:+.1f}%)"
            )
    typer.echo(str(page.resolve()))
