"""The seed study's published figures beside this campaign's: Hayek et al. (2025).

"Federated Learning over 5G, WiFi, and Ethernet: Measurements and Evaluation"
measured Flower + FedAvg with SqueezeNet on CIFAR-10 on Raspberry Pis over an
OpenAirInterface 5G SA network (n78, TDD with about a quarter of symbols for the
uplink), WiFi and Ethernet. Its headline figures are :data:`HAYEK_2025`.

:func:`reference_table` sets each beside this campaign's value from the study
table (:mod:`analysis.study`): the ratio of median uplink seconds per node round
between two networks, the same ratio of the link-busy uplink seconds
(``uplink_busy``, :mod:`analysis.linkbound`) and, for the share of the round,
the median of the slowest node's uplink over the round time. Each row says
whether this campaign's figure is the links' or the hosts'
(:func:`analysis.linkbound.ratio_basis`). docs/emulation.md explains why an
emulated campaign's figures differ from the study's.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.linkbound import ratio_basis
from analysis.study import UPLINK_SHARE_QUANTITY, Study, find_ratio

CITATION = (
    "Hayek et al. (2025), Federated Learning over 5G, WiFi, and Ethernet: "
    "Measurements and Evaluation"
)
REFERENCE_COLUMNS = [
    "figure",
    "study",
    "campaign",
    "campaign_low",
    "campaign_high",
    "campaign_link_busy",
    "basis",
]


@dataclass(frozen=True)
class ReferenceFigure:
    """One published figure: a ratio of two networks' uplinks, or an uplink share."""

    label: str
    value: float
    numerator: str
    denominator: str | None = None  # None: the numerator's share of the round

    @property
    def is_share(self) -> bool:
        """Whether this is a share of the round rather than a ratio."""
        return self.denominator is None


HAYEK_2025 = (
    ReferenceFigure("5G uplink / Ethernet uplink", 33.3, "5g", "ethernet"),
    ReferenceFigure("5G uplink / WiFi uplink", 17.8, "5g", "wifi"),
    ReferenceFigure("5G uplink share of the round", 0.23, "5g"),
)


def _share(study: Study, network: str) -> pd.Series | None:
    table = study.table
    rows = table[
        (table["quantity"] == UPLINK_SHARE_QUANTITY)
        & (table["network"].str.lower() == network.lower())
    ]
    return None if rows.empty else rows.iloc[0]


def reference_table(
    study: Study,
    bounds: pd.DataFrame,
    figures: tuple[ReferenceFigure, ...] = HAYEK_2025,
) -> pd.DataFrame:
    """Each published figure beside this campaign's (NaN where it did not measure
    the networks it needs)."""
    rows = []
    for fig in figures:
        value = low = high = busy = float("nan")
        basis = "not measured"
        if fig.denominator is None:
            row = _share(study, fig.numerator)
            if row is not None:
                value, low, high = row["median"], row["median_low"], row["median_high"]
                basis = "the slowest node's uplink over the round, median"
        else:
            row = find_ratio(study.ratios, "uplink", fig.numerator, fig.denominator)
            if row is not None:
                value, low, high = row["ratio"], row["ratio_low"], row["ratio_high"]
                names = [n for n in (row["numerator"], row["denominator"])]
                basis = ratio_basis(bounds, [str(n) for n in names])
                link = find_ratio(
                    study.ratios, "uplink_busy", fig.numerator, fig.denominator
                )
                if link is not None:
                    busy = float(link["ratio"])
        rows.append(
            {
                "figure": fig.label,
                "study": fig.value,
                "campaign": float(value),
                "campaign_low": float(low),
                "campaign_high": float(high),
                "campaign_link_busy": busy,
                "basis": basis,
            }
        )
    return pd.DataFrame(rows, columns=REFERENCE_COLUMNS)
