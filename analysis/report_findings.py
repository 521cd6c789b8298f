"""The report's first section: a few sentences saying what the campaign found.

Each sentence is computed from the tables the report shows further down, so a
finding and its table cannot disagree: :func:`slowest_network` and
:func:`uplink_ratios` read the study table (:mod:`analysis.study`),
:func:`round_shares` the phase shares (:func:`analysis.summary.phase_shares`),
:func:`round_floor` the floor table (:mod:`analysis.floor`),
:func:`straggler` the straggler summary (:mod:`analysis.stragglers`, the one
definition of the slowest node: the busiest) and :func:`learning` the
convergence tables (:mod:`analysis.convergence`). A function returns None when
its data is missing; the section then says what is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.html import esc, note
from analysis.linkbound import physics_flags, ratio_basis
from analysis.stragglers import MIN_ROUNDS_FOR_VERDICT
from analysis.study import (
    MIN_INTERVAL_ROUNDS,
    ROUND_QUANTITY,
    UPLINK_SHARE_QUANTITY,
    Study,
    has_interval,
    sample_ranges,
)
from analysis.summary import CLASS_LABELS, class_shares, network_order


@dataclass(frozen=True)
class FindingsData:
    """The tables the findings are computed from (one report's)."""

    study: Study
    samples: pd.DataFrame
    shares: pd.DataFrame
    straggler_summary: pd.DataFrame
    learning: pd.DataFrame
    targets: pd.DataFrame
    target: float | None
    chance: float
    floors: pd.DataFrame = field(default_factory=pd.DataFrame)
    bounds: pd.DataFrame = field(default_factory=pd.DataFrame)


def _join(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _at(frame: pd.DataFrame, row: str, column: str) -> float:
    """One cell as a float."""
    value: Any = frame.loc[row, column]
    return float(value)


def _strategy(study: Study) -> str | None:
    strategies = sorted(set(study.table["strategy"])) if len(study.table) else []
    return strategies[0] if strategies else None


def _rows(study: Study, quantity: str) -> pd.DataFrame:
    """The study rows of ``quantity`` for the first strategy, by network."""
    table = study.table
    rows = table[
        (table["quantity"] == quantity) & (table["strategy"] == _strategy(study))
    ]
    return rows.set_index("network").reindex(network_order(rows["network"]))


def _rounds(rows: pd.DataFrame) -> str:
    counts = sorted({int(r) for r in rows["rounds"]})
    text = " to ".join(str(c) for c in (counts[0], counts[-1]) if counts)
    if len(counts) == 1:
        text = str(counts[0])
    return f"{text} round{'s' if counts and counts[-1] != 1 else ''}"


def slowest_network(study: Study) -> str | None:
    """Which network has the longest median round, and which phase grows most there."""
    rounds = _rows(study, ROUND_QUANTITY).dropna(subset=["median"])
    if rounds.empty:
        return None
    if len(rounds) == 1:
        network = str(rounds.index[0])
        return (
            f"Only {network} was measured: a median round takes "
            f"{rounds['median'].iloc[0]:.1f} s ({_rounds(rounds)})."
        )
    slowest = str(rounds["median"].idxmax())
    fastest = str(rounds["median"].idxmin())
    table = study.table
    phases = table[
        (table["strategy"] == _strategy(study))
        & ~table["quantity"].isin([ROUND_QUANTITY, UPLINK_SHARE_QUANTITY])
    ]
    wide = phases.pivot_table(index="quantity", columns="network", values="median")
    sentence = (
        f"{slowest} is the slowest network: a median round takes "
        f"{_at(rounds, slowest, 'median'):.1f} s there against "
        f"{_at(rounds, fastest, 'median'):.1f} s on {fastest} ({_rounds(rounds)} each)"
    )
    if {slowest, fastest} <= set(wide.columns):
        growth = (wide[slowest] - wide[fastest]).dropna()
        if len(growth) and growth.max() > 0:
            phase = str(growth.idxmax())
            sentence += (
                f"; the phase that grows most is {phase} "
                f"({_at(wide, phase, slowest):.2f} s against "
                f"{_at(wide, phase, fastest):.2f} s per node and round)"
            )
    return sentence + "."


def _ratio_interval(study: Study, numerator: str, denominator: str) -> str:
    ratios = study.ratios
    for num, den, invert in (
        (numerator, denominator, False),
        (denominator, numerator, True),
    ):
        sel = ratios[
            (ratios["quantity"] == "uplink")
            & (ratios["strategy"] == _strategy(study))
            & (ratios["numerator"] == num)
            & (ratios["denominator"] == den)
        ]
        if len(sel):
            low, high = (
                float(sel["ratio_low"].iloc[0]),
                float(sel["ratio_high"].iloc[0]),
            )
            if invert:
                low, high = 1.0 / high, 1.0 / low
            return f"{study.confidence:.0%} CI {low:.2f}–{high:.2f}×"
    return ""


def uplink_ratios(
    study: Study, samples: pd.DataFrame, bounds: pd.DataFrame | None = None
) -> str | None:
    """How many times longer the slowest uplink takes than each other network's.

    With an interval where both networks have :data:`MIN_INTERVAL_ROUNDS`
    rounds; below that, the ranges of the per-node-round uplink seconds. With
    ``bounds`` (:func:`analysis.linkbound.bound_table`), it says whether the
    ratio is the links' or the hosts' (:func:`analysis.linkbound.ratio_basis`).
    """
    uplink = _rows(study, "uplink").dropna(subset=["median"])
    uplink = uplink[uplink["median"] > 0]
    if len(uplink) < 2:
        return None
    slowest = str(uplink["median"].idxmax())
    others = [str(n) for n in uplink.index if n != slowest]
    enough = all(has_interval(r) for r in uplink["rounds"])
    parts = []
    for other in others:
        ratio = _at(uplink, slowest, "median") / _at(uplink, other, "median")
        interval = _ratio_interval(study, slowest, other) if enough else ""
        parts.append(
            f"{ratio:.2f}× as long as on {other}"
            + (f" ({interval})" if interval else "")
        )
    counts = [int(_at(uplink, str(n), "n")) for n in uplink.index]
    samples_n = (
        f"{counts[0]} node rounds each"
        if len(set(counts)) == 1
        else _join([str(c) for c in counts]) + " node rounds"
    )
    sentence = f"On {slowest} the uplink takes {_join(parts)} (medians of {samples_n}"
    basis = ""
    if bounds is not None:
        basis = " This is " + ratio_basis(bounds, [str(n) for n in uplink.index]) + "."
    if enough:
        return sentence + f", {_rounds(uplink)} each)." + basis
    ranges = sample_ranges(samples)
    ranges = ranges[
        (ranges["quantity"] == "uplink") & (ranges["strategy"] == _strategy(study))
    ].set_index("network")
    spans = [
        f"{n} {ranges.loc[n, 'min']:.2f}–{ranges.loc[n, 'max']:.2f} s"
        for n in uplink.index
        if n in ranges.index
    ]
    return (
        sentence
        + (
            f"; {_rounds(uplink)} are fewer than the {MIN_INTERVAL_ROUNDS} an interval "
            f"needs, so here are the ranges: {_join(spans)})."
        )
        + basis
    )


def link_or_host(bounds: pd.DataFrame) -> str | None:
    """Which networks' uplinks the links set and which the hosts, with the
    contradictions of physics this causes (:mod:`analysis.linkbound`)."""
    if bounds.empty or "direction" not in bounds.columns:
        return None
    up = bounds[bounds["direction"] == "up"]
    if up.empty:
        return None
    parts = []
    for verdict in ("link-bound", "host-bound"):
        rows = up[up["verdict"] == verdict]
        if rows.empty:
            continue
        items = _join(
            [
                f"{r.network} ({r.median_over_floor:.1f}× its floor)"
                for r in rows.itertuples()
            ]
        )
        parts.append(f"{verdict} on {items}")
    sentence = (
        "Model uploads are "
        + "; ".join(parts)
        + " (median wire time over wire bytes ÷ link rate; over 2× is the host's "
        "and Flower's time, not the link's)."
    )
    flags = physics_flags(bounds, "up")
    return " ".join([sentence, *flags])


def round_shares(shares: pd.DataFrame) -> str | None:
    """What the node rounds' time goes to: Flower, the network, computation."""
    if shares.empty:
        return None
    wide = class_shares(shares)
    if wide.empty:
        return None
    dominant = wide.idxmax(axis=1)
    networks = [str(n) for n in wide.index]
    classes = [
        str(c)
        for c in wide.columns
        if not (c == "unresolved" and wide[c].max() < 0.005)
    ]
    top = str(dominant.iloc[0]) if dominant.nunique() == 1 else None
    classes.sort(key=lambda c: c != top)
    where = f" on {_join(networks)}" if len(networks) > 1 else ""
    parts = [
        f"{CLASS_LABELS[c]} {_join([f'{_at(wide, n, c):.0%}' for n in networks])}"
        for c in classes
    ]
    if top is not None:
        verb = "take" if top == "flower" else "takes"
        label = CLASS_LABELS[top]
        values = _join([f"{_at(wide, n, top):.0%}" for n in networks])
        head = (
            f"{label[0].upper()}{label[1:]} {verb} the largest share of a node's "
            f"round on every network: {values} of all node-round seconds{where}"
        )
        parts = parts[1:]
    else:
        head = (
            "What takes the largest share of a node's round differs by network "
            f"(shares of all node-round seconds{where})"
        )
    return (
        f"{head}; {'; '.join(parts)} "
        "(every phase counted, waits and start-up included)."
    )


def round_floor(floors: pd.DataFrame) -> str | None:
    """How far the first network's median round lies above its floor, and the mode.

    The first network in :func:`analysis.summary.network_order` (Ethernet when
    measured) for the first strategy, as in the round-vs-floor table.
    """
    if floors.empty:
        return None
    rows = floors[floors["strategy"] == sorted(set(floors["strategy"]))[0]]
    rows = rows.dropna(subset=["median_round_s", "median_floor_s"])
    rows = rows[rows["median_floor_s"] > 0]
    if rows.empty:
        return None
    first = network_order(rows["network"])[0]
    row = rows[rows["network"] == first].iloc[0]
    sentence = (
        f"A median {first} round takes {row['median_round_s']:.1f} s, "
        f"{row['round_over_floor']:.2f}× its floor of {row['median_floor_s']:.1f} s "
        "(downlink + training + evaluation + uplink + aggregation)"
    )
    share = float(row["flower_share"])
    if share == share:
        sentence += f"; Flower's waiting and start-up take {share:.0%} of it"
    levers = (
        f": {row['levers']}" if isinstance(row["levers"], str) and row["levers"] else ""
    )
    return sentence + f" (launch: {row['mode']}{levers})."


def straggler(summary: pd.DataFrame) -> str | None:
    """The consistent straggler (the busiest node), per network, if there is one."""
    if summary.empty:
        return None
    sentences = []
    for (top, verdict), rows in summary.groupby(
        ["top_straggler", "verdict"], sort=False
    ):
        networks = _join(network_order(rows["network"]))
        every = len(rows) == len(summary) and len(summary) > 1
        where = "every network" if every else networks
        counts = _join(
            sorted({f"{r.top_rounds} of {r.rounds}" for r in rows.itertuples()})
        )
        causes = sorted({str(c) for c in rows["usual_cause"] if c})
        cause = f", usually in {_join(causes)}" if causes else ""
        if verdict == "consistent":
            sentences.append(
                f"{top} is the consistent straggler on {where}: the busiest node in "
                f"{counts} rounds{cause}."
            )
        elif verdict == "competing":
            sentences.append(
                f"No node is a consistent straggler on {where}: the busiest node "
                f"changes from round to round ({top} most often, {counts})."
            )
        else:
            sentences.append(
                f"{top} was the busiest node on {where} ({counts} rounds{cause}); too "
                f"few rounds to call it a consistent straggler "
                f"({MIN_ROUNDS_FOR_VERDICT} needed)."
            )
    return " ".join(sentences)


def learning(data: FindingsData) -> str:
    """Time to the target accuracy, or plainly that the runs did not learn."""
    table = data.learning
    if table.empty:
        return (
            "No accuracy was recorded (no metrics events in the runs' event logs), "
            "so this report cannot say whether the model learned."
        )
    chance = f"chance is {data.chance:.3f}"
    failed = table[table["runs_learned"] == 0]
    finals = _join(
        [f"{r.median_final_accuracy:.3f} on {r.network}" for r in table.itertuples()]
    )
    if len(failed) == len(table):
        return (
            f"The model did not learn: the median final accuracy is {finals} "
            f"({chance}); no run ended {0.05:.2f} above chance and its initial model."
        )
    parts = []
    if len(failed):
        parts.append(
            f"Runs on {_join(network_order(failed['network']))} did not learn "
            f"(median final accuracy "
            + _join([f"{r.median_final_accuracy:.3f}" for r in failed.itertuples()])
            + f", {chance})."
        )
    parts.append(_time_to_target(data, finals))
    return " ".join(parts)


def _time_to_target(data: FindingsData, finals: str) -> str:
    targets = data.targets
    if data.target is None or targets.empty:
        return (
            f"Median final accuracy {finals}; no target accuracy lies above the "
            "first round's, so there is no time to target."
        )
    reached = targets[targets["runs_reaching"] > 0]
    times = _join(
        [
            f"{r.median_time_to_target_s:.0f} s on {r.network} "
            f"({r.runs_reaching} of {r.runs} runs)"
            for r in reached.itertuples()
        ]
    )
    missed = targets[targets["runs_reaching"] == 0]
    tail = (
        f"; no run on {_join(network_order(missed['network']))} reached it"
        if len(missed)
        else ""
    )
    if reached.empty:
        return (
            f"No run reached the target accuracy {data.target:.3f}; median final "
            f"accuracy {finals}."
        )
    return (
        f"Accuracy {data.target:.3f} was reached after {times}{tail}; median "
        f"final accuracy {finals}."
    )


def findings(data: FindingsData) -> list[str]:
    """The Findings sentences, in the order the section shows them."""
    sentences = [
        slowest_network(data.study),
        uplink_ratios(data.study, data.samples, data.bounds),
        link_or_host(data.bounds),
        round_shares(data.shares),
        round_floor(data.floors),
        straggler(data.straggler_summary),
        learning(data),
    ]
    return [s for s in sentences if s]


def findings_section(data: FindingsData, notices: Sequence[str] = ()) -> str:
    """The Findings section's body: one list item per sentence, then notices."""
    sentences = findings(data)
    items = "".join(f"<li>{esc(s)}</li>" for s in sentences)
    body = f'<ul class="findings">{items}</ul>' if items else ""
    strategies = (
        sorted(set(data.study.table["strategy"])) if len(data.study.table) else []
    )
    if len(strategies) > 1:
        body += note(
            f"Findings are for strategy {strategies[0]}; the tables below have "
            + _join(strategies[1:])
            + "."
        )
    if not sentences:
        body += note("No finding: the phase table has no complete round.")
    return body + "".join(notices)
