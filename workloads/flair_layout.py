"""FLAIR's HDF5 layout without torch: the label index, the users, the errors.

What a campaign check needs to read of a FLAIR file (workloads/flair.py reads
the images). The layout and the user-to-node mapping are described there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from workloads import FLAIR_LABELS

LABEL_DELIMITER = "|"
CHANNELS = 3
TRAIN_SPLIT = "train"
# ml-flair's README calls the middle split "val", its text "dev": take either.
VALIDATION_SPLITS = ("val", "dev")
TEST_SPLIT = "test"
LABEL_KEY = {"coarse": "labels", "fine": "fine_grained_labels"}
COUNTER_KEY = {
    "coarse": "/metadata/label_counter",
    "fine": "/metadata/fine_grained_label_counter",
}
# pfl-research's variant of the file (its benchmarks/flair prepare scripts, from
# HuggingFace's apple/flair): a {label: index} mapping, and per user the labels as
# sparse (image row, label column) pairs in '<key>_row' and '<key>_col'.
MAPPING_KEY = {
    "coarse": "/metadata/label_mapping",
    "fine": "/metadata/fine_grained_label_mapping",
}
PREPARE_HINT = (
    "write the file with ml-flair's 'python3 prepare_dataset.py --dataset_dir=DIR"
    " --output_file=FILE.hdf5' (grouped by user; docs/datasets.md)"
)


class FlairFileError(ValueError):
    """A FLAIR file is missing, partial or malformed: what, where and the fix."""

    def __init__(self, what: str, where: str | Path, fix: str) -> None:
        self.what, self.where, self.fix = what, str(where), fix
        super().__init__(f"{where}: {what}. Fix: {fix}.")


def open_file(path: str) -> Any:
    """The HDF5 file at ``path``, open for reading (close it: ``with``)."""
    import h5py

    if not Path(path).is_file():
        raise FlairFileError(
            "the FLAIR file does not exist",
            path,
            "give flair-path the HDF5 file at the same path on every node;"
            f" {PREPARE_HINT}",
        )
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise FlairFileError(
            f"is not a readable HDF5 file ({err})", path, PREPARE_HINT
        ) from None


def split_group(file: Any, path: str, name: str) -> Any:
    """Group ``name`` of the open ``file``, or an error listing the groups there."""
    import h5py

    node = file.get(name)
    if not isinstance(node, h5py.Group):
        present = ", ".join(sorted(file)) or "none"
        raise FlairFileError(
            f"has no group '{name}' (top-level groups: {present})", path, PREPARE_HINT
        )
    return node


@lru_cache(maxsize=8)
def label_names(path: str, granularity: str) -> tuple[str, ...]:
    """The labels of ``granularity`` ("coarse" or "fine"): label i is the i-th.

    ml-flair's counter gives them in sorted order; pfl-research's mapping gives
    each its index.
    """
    if granularity not in FLAIR_LABELS:
        raise ValueError(f"granularity must be one of {FLAIR_LABELS}")
    counter_key, mapping_key = COUNTER_KEY[granularity], MAPPING_KEY[granularity]
    with open_file(path) as file:
        if counter_key in file:
            key = counter_key
        elif mapping_key in file:
            key = mapping_key
        else:
            raise FlairFileError(
                f"has no dataset '{counter_key}' (nor pfl-research's"
                f" '{mapping_key}'): the label index comes from it",
                path,
                PREPARE_HINT,
            )
        raw = file[key][()]
    try:
        labels = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except json.JSONDecodeError as err:
        raise FlairFileError(
            f"'{key}' is not JSON text ({err})", path, PREPARE_HINT
        ) from None
    if not isinstance(labels, dict) or len(labels) < 2:
        raise FlairFileError(
            f"'{key}' must be a JSON object of at least 2 labels", path, PREPARE_HINT
        )
    if key == counter_key:
        return tuple(sorted(str(k) for k in labels))
    by_index = sorted(labels, key=lambda label: labels[label])
    if [labels[label] for label in by_index] != list(range(len(labels))):
        raise FlairFileError(
            f"'{key}' must map its labels to 0..{len(labels) - 1}, each once",
            path,
            PREPARE_HINT,
        )
    return tuple(str(label) for label in by_index)


@lru_cache(maxsize=8)
def user_ids(path: str, split: str) -> tuple[str, ...]:
    """The users of ``split`` in sorted order."""
    with open_file(path) as file:
        return tuple(sorted(split_group(file, path, split)))


def validation_split(path: str) -> str:
    """The split nodes evaluate on: "val" (or "dev"), else "test"."""
    with open_file(path) as file:
        present = set(file)
    return next((s for s in VALIDATION_SPLITS if s in present), TEST_SPLIT)


def deal_users(
    users: Sequence[str], partition_id: int, num_partitions: int
) -> tuple[str, ...]:
    """Users ``p, p + P, ...`` of the sorted list; a node beyond the list wraps."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(
            f"partition_id must be in [0, {num_partitions}), got {partition_id!r}"
        )
    if not users:
        return ()
    if partition_id >= len(users):
        return (users[partition_id % len(users)],)
    return tuple(users[partition_id::num_partitions])


def parse_users(text: str) -> tuple[str, ...]:
    """Node config ``flair-users: "u1,u2"`` -> ("u1", "u2")."""
    return tuple(u.strip() for u in text.split(",") if u.strip())
