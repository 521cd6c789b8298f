"""FLAIR, Apple's federated multi-label image dataset, read from its HDF5 file.

The layout is the one ``prepare_dataset.py`` of github.com/apple/ml-flair
writes (without ``--not_group_data_by_user``), one group per split, then one
per Flickr user::

    /train/<user_id>/images               (N, H, W, 3) uint8 (256x256 in the download)
    /train/<user_id>/labels               (N,) bytes: coarse labels joined by '|'
    /train/<user_id>/fine_grained_labels  (N,) bytes: fine labels joined by '|'
    /train/<user_id>/image_ids            (N,) bytes (not read here)
    /val/<user_id>/...   /test/<user_id>/...
    /metadata/label_counter               JSON text {label: count}
    /metadata/fine_grained_label_counter  JSON text {label: count}

Label ``i`` is the ``i``-th label of the counter in sorted order, as
ml-flair's ``prepare_tfrecords.py`` numbers them. Targets are multi-hot rows.
pfl-research's variant of the file is read too: ``/metadata/label_mapping``
({label: index}) and per user ``labels_row``/``labels_col`` index pairs.
Images are resized to 32x32 (bilinear, antialiased) and normalised as
``(x - 0.5) / 0.5``, so a CPU trains the app's small networks on them.

Users map to nodes in sorted user-id order: node ``partition-id`` ``p`` of
``P`` trains on train users ``p, p + P, p + 2P, ...`` unless its node config
names its users (``flair-users: "u1,u2"``). Each node evaluates on the
validation users dealt the same way; the server evaluates on the test split.

Errors are ``FlairFileError`` (workloads/flair_layout.py), shaped like
flowerbed's errors (what, where, fix); workloads imports no other package, so
it is a ValueError there and the campaign check turns it into a CampaignError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from workloads.digits import IMAGE_SIZE
from workloads.flair_layout import (
    CHANNELS,
    LABEL_DELIMITER,
    LABEL_KEY,
    PREPARE_HINT,
    TEST_SPLIT,
    TRAIN_SPLIT,
    FlairFileError,
    deal_users,
    label_names,
    open_file,
    parse_users,
    split_group,
    user_ids,
    validation_split,
)

__all__ = [
    "CHANNELS",
    "FlairFileError",
    "FlairNode",
    "MultiLabelData",
    "deal_users",
    "label_names",
    "node_data",
    "parse_users",
    "read_users",
    "server_test_set",
    "user_ids",
]


@dataclass(frozen=True, eq=False)
class MultiLabelData:
    """Images ``x`` (N, 3, 32, 32) float32 and multi-hot targets ``y`` (N, L)."""

    x: torch.Tensor
    y: torch.Tensor
    users: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.x.shape[1:]) != (CHANNELS, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"x must be (N, 3, 32, 32), got {tuple(self.x.shape)}")
        if self.y.ndim != 2 or len(self.y) != len(self.x):
            raise ValueError(
                f"y must be ({len(self.x)}, L) multi-hot, got {tuple(self.y.shape)}"
            )


@dataclass(frozen=True, eq=False)
class FlairNode:
    """One node's FLAIR data: its train users' images and its validation users'."""

    train: MultiLabelData
    test: MultiLabelData


def _images(where: str, images: np.ndarray) -> torch.Tensor:
    if images.ndim != 4 or images.shape[-1] != CHANNELS or images.dtype != np.uint8:
        raise FlairFileError(
            f"'images' must be (N, H, W, 3) uint8, got {images.dtype}"
            f" {tuple(images.shape)}",
            where,
            PREPARE_HINT,
        )
    x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        x = F.interpolate(
            x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True
        ).clamp(0.0, 1.0)
    return (x.contiguous() - 0.5) / 0.5


def _targets(
    where: str, key: str, raw: np.ndarray, count: int, labels: tuple[str, ...]
) -> torch.Tensor:
    if raw.shape != (count,):
        raise FlairFileError(
            f"'{key}' must hold one entry per image, shape ({count},),"
            f" got {tuple(raw.shape)}",
            where,
            PREPARE_HINT,
        )
    index = {label: i for i, label in enumerate(labels)}
    y = torch.zeros(count, len(labels))
    for row, entry in enumerate(raw):
        text = entry.decode() if isinstance(entry, bytes) else str(entry)
        for label in filter(None, text.split(LABEL_DELIMITER)):
            if label not in index:
                raise FlairFileError(
                    f"'{key}' of image {row} has label {label!r}, absent from the"
                    " metadata counter",
                    where,
                    PREPARE_HINT,
                )
            y[row, index[label]] = 1.0
    return y


def _sparse_targets(
    where: str,
    key: str,
    rows: np.ndarray,
    cols: np.ndarray,
    count: int,
    labels: tuple[str, ...],
) -> torch.Tensor:
    """pfl-research's (row, col) pairs -> multi-hot rows of the first ``count``."""
    if rows.shape != cols.shape or rows.ndim != 1:
        raise FlairFileError(
            f"'{key}_row' and '{key}_col' must be 1-D and of one length, got"
            f" {tuple(rows.shape)} and {tuple(cols.shape)}",
            where,
            PREPARE_HINT,
        )
    if len(cols) and int(cols.max()) >= len(labels):
        raise FlairFileError(
            f"'{key}_col' holds label index {int(cols.max())}, beyond the"
            f" {len(labels)} labels of the metadata mapping",
            where,
            PREPARE_HINT,
        )
    kept = rows < count
    y = torch.zeros(count, len(labels))
    y[torch.from_numpy(rows[kept].astype(np.int64)), cols[kept].astype(np.int64)] = 1.0
    return y


def _user_targets(
    where: str, user: Any, key: str, count: int, labels: tuple[str, ...]
) -> torch.Tensor:
    """The first ``count`` images' targets: label strings, or sparse index pairs."""
    if key in user:
        return _targets(where, key, np.asarray(user[key][:count]), count, labels)
    if f"{key}_row" in user and f"{key}_col" in user:
        rows, cols = np.asarray(user[f"{key}_row"]), np.asarray(user[f"{key}_col"])
        return _sparse_targets(where, key, rows, cols, count, labels)
    raise FlairFileError(
        f"has no dataset '{key}' (nor pfl-research's '{key}_row' and '{key}_col')",
        where,
        PREPARE_HINT,
    )


def read_users(
    path: str,
    split: str,
    users: Sequence[str],
    granularity: str,
    max_images: int | None = None,
) -> MultiLabelData:
    """The images and multi-hot targets of ``users`` of ``split``, in that order.

    Stops after ``max_images`` images (the last user's images are cut).
    """
    labels = label_names(path, granularity)
    key = LABEL_KEY[granularity]
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    taken = 0
    with open_file(path) as file:
        group = split_group(file, path, split)
        for user in users:
            if max_images is not None and taken >= max_images:
                break
            where = f"{path}:/{split}/{user}"
            if user not in group:
                raise FlairFileError(
                    f"has no user '{user}' in split '{split}'",
                    path,
                    "name users of that split in the node's flair-users",
                )
            if "images" not in group[user]:
                raise FlairFileError("has no dataset 'images'", where, PREPARE_HINT)
            stop = None if max_images is None else max_images - taken
            images = np.asarray(group[user]["images"][:stop])
            xs.append(_images(where, images))
            ys.append(_user_targets(where, group[user], key, len(images), labels))
            taken += len(images)
    if taken == 0:
        raise FlairFileError(
            f"users {list(users)} of split '{split}' hold no image",
            path,
            "give the node users that have images",
        )
    return MultiLabelData(torch.cat(xs), torch.cat(ys), tuple(users))


def node_data(
    path: str,
    partition_id: int,
    num_partitions: int,
    granularity: str = "coarse",
    users: Sequence[str] = (),
    max_images: int | None = None,
) -> FlairNode:
    """Node ``partition_id``'s train users (``users`` or dealt) and validation users.

    ``max_images`` caps each of the two sets (the run's samples-per-node).
    """
    mine = tuple(users) or deal_users(
        user_ids(path, TRAIN_SPLIT), partition_id, num_partitions
    )
    if not mine:
        raise FlairFileError(
            f"split '{TRAIN_SPLIT}' has no user", path, "use a file with train users"
        )
    held_out = validation_split(path)
    evaluators = deal_users(user_ids(path, held_out), partition_id, num_partitions)
    if not evaluators:
        raise FlairFileError(
            f"split '{held_out}' has no user to evaluate on", path, PREPARE_HINT
        )
    return FlairNode(
        read_users(path, TRAIN_SPLIT, mine, granularity, max_images),
        read_users(path, held_out, evaluators, granularity, max_images),
    )


def server_test_set(path: str, granularity: str, max_images: int) -> MultiLabelData:
    """The server's evaluation set: test users in order, up to ``max_images``."""
    return read_users(
        path, TEST_SPLIT, user_ids(path, TEST_SPLIT), granularity, max_images
    )
