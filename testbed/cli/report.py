"""``flowerbed report``: turn campaign results into reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from inventory.errors import FlowerbedError
from testbed.cli.common import Format, FormatOpt, fail, jsonable
from testbed.cli.errors import DAMAGED_RESULTS, output_error

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
    strict: Annotated[
        bool,
        typer.Option(
            help="Exit with status 3 when a results file was damaged (the report "
            "is still written and says what it skipped)."
        ),
    ] = False,
) -> None:
    """Write report.html (self-contained), summary.md, figures and CSVs into RESULTS.

    A damaged results file (a corrupt event-log line, an unreadable optional
    file) is skipped, said on the terminal and in the report, and the figures
    computed without it are marked partial.
    """
    from analysis.damage import Damage
    from analysis.report import build_report

    if not results.is_dir():
        fail(
            f"{results} is not a results folder"
            + (" (it does not exist)" if not results.exists() else "")
            + ": give the folder `flowerbed campaign run` wrote (results/<campaign>)",
            2,
        )
    damage = Damage()
    try:
        path = build_report(
            results,
            warmup_rounds=warmup_rounds,
            target_accuracy=target_accuracy,
            timeline_round=timeline_round,
            damage=damage,
        )
    except OSError as err:
        fail(
            output_error(
                err,
                f"report build writes report.html, figures/ and CSVs into "
                f"{results}: make it writable or free space there, or copy the "
                "folder somewhere writable and build there",
            )
            or str(err),
            2,
        )
    for gap in damage:
        typer.secho(f"note: {gap.sentence()}", fg=typer.colors.YELLOW, err=True)
    if not quiet:
        typer.echo(f"figures and tables in {results}")
    typer.echo(str(path.resolve()))
    if damage:
        typer.secho(
            f"{len(damage)} damaged results file(s): the report marks what they "
            "touch as partial (Data quality lists them)",
            fg=typer.colors.YELLOW,
            err=True,
        )
        if strict:
            raise typer.Exit(DAMAGED_RESULTS)


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
    except FlowerbedError:
        raise
    except (FileNotFoundError, ValueError) as err:
        fail(str(err), 2)
    folder = out or results[0] / "compare"
    try:
        page = write_comparison(comparison, folder)
    except OSError as err:
        fail(
            output_error(
                err, f"give --out a writable folder with free space (not {folder})"
            )
            or str(err),
            2,
        )
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
