"""FLAIR's HDF5 layout: labels, users to nodes, multi-hot targets, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from workloads import flair
from workloads.flair_example import COARSE, FINE, write_example_file
from workloads.flair_layout import FlairFileError


def _write_by_hand(path: Path, edit: Callable[[h5py.File], None] | None = None) -> str:
    """Two train users and one test user, as ml-flair's prepare_dataset.py writes."""
    rng = np.random.default_rng(1)
    users = {
        "train/12@N01": ([b"food|people", b"animal"], [b"fruit|child", b"dog"]),
        "train/34@N02": ([b"structure"], [b"bridge"]),
        "test/56@N03": ([b"animal|food|people"], [b"cat|bread|adult"]),
    }
    with h5py.File(path, "w") as file:
        for user, (coarse, fine) in users.items():
            file[f"/{user}/labels"] = np.asarray(coarse, dtype="S")
            file[f"/{user}/fine_grained_labels"] = np.asarray(fine, dtype="S")
            file[f"/{user}/image_ids"] = np.asarray(
                [str(i) for i in range(len(coarse))], dtype="S"
            )
            file.create_dataset(
                f"/{user}/images",
                data=rng.integers(0, 256, (len(coarse), 64, 64, 3), dtype=np.uint8),
            )
        file["/metadata/label_counter"] = json.dumps(
            {"people": 2, "animal": 2, "food": 2, "structure": 1}
        )
        file["/metadata/fine_grained_label_counter"] = json.dumps(
            {n: 1 for names in FINE.values() for n in names}
        )
        if edit is not None:
            edit(file)
    return str(path)


def test_label_index_is_the_counter_sorted_and_targets_are_multi_hot(
    tmp_path: Path,
) -> None:
    path = _write_by_hand(tmp_path / "f.hdf5")

    data = flair.read_users(path, "train", ["12@N01", "34@N02"], "coarse")

    assert flair.label_names(path, "coarse") == COARSE  # animal, food, people, ...
    assert data.y.tolist() == [[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    assert tuple(data.x.shape) == (3, 3, 32, 32)  # 64x64 read, 32x32 given
    assert data.x.min() >= -1.0 and data.x.max() <= 1.0
    fine = flair.read_users(path, "test", ["56@N03"], "fine")
    names = flair.label_names(path, "fine")
    assert len(names) == 8
    assert [names[i] for i in fine.y[0].nonzero().flatten()] == [
        "adult",
        "bread",
        "cat",
    ]


def test_images_are_downsampled_not_cropped(tmp_path: Path) -> None:
    # A 64x64 image whose left half is white: after resizing, the left half is
    # still (about) white and the right half black.
    def left_white(file: h5py.File) -> None:
        image = np.zeros((1, 64, 64, 3), np.uint8)
        image[:, :, :32] = 255
        del file["/train/34@N02/images"]
        file["/train/34@N02/images"] = image

    path = _write_by_hand(tmp_path / "f.hdf5", left_white)

    (x,) = flair.read_users(path, "train", ["34@N02"], "coarse").x

    assert torch.allclose(x[:, :, :15], torch.ones(3, 32, 15))
    assert torch.allclose(x[:, :, 17:], -torch.ones(3, 32, 15))


@pytest.mark.parametrize(
    ("partition", "nodes", "expected"),
    [
        (0, 2, ("a", "c", "e")),
        (1, 2, ("b", "d")),
        (2, 3, ("c",)),
        (0, 1, ("a", "b", "c", "d", "e")),
        (6, 7, ("b",)),  # more nodes than users: node 6 wraps to user 6 mod 5
    ],
)
def test_users_are_dealt_round_robin_in_sorted_order(
    partition: int, nodes: int, expected: tuple[str, ...]
) -> None:
    assert flair.deal_users(("a", "b", "c", "d", "e"), partition, nodes) == expected


def test_node_config_users_are_parsed_and_override_the_deal(tmp_path: Path) -> None:
    path = str(write_example_file(tmp_path / "f.hdf5"))
    named = flair.parse_users(" train-user-3 ,train-user-1,")

    node = flair.node_data(path, 0, 2, users=named)
    dealt = flair.node_data(path, 0, 2)

    assert named == ("train-user-3", "train-user-1")
    assert node.train.users == named
    assert dealt.train.users == ("train-user-0", "train-user-2")
    assert dealt.test.users == ("val-user-0",)  # nodes evaluate on val users
    assert len(node.train.x) == len(dealt.train.x) == 12  # 2 users x 6 images


def test_samples_cap_each_set_and_the_server_reads_the_test_split(
    tmp_path: Path,
) -> None:
    path = str(write_example_file(tmp_path / "f.hdf5"))

    node = flair.node_data(path, 1, 2, max_images=8)
    server = flair.server_test_set(path, "coarse", 7)

    assert len(node.train.x) == 8 and len(node.train.y) == 8
    assert len(server.x) == 7
    assert server.users == ("test-user-0", "test-user-1")
    assert server.y.shape == (7, len(COARSE))


def test_a_file_without_val_evaluates_nodes_on_test_users(tmp_path: Path) -> None:
    path = str(write_example_file(tmp_path / "f.hdf5", {"train": 2, "test": 1}))

    assert flair.node_data(path, 1, 2).test.users == ("test-user-0",)


def _delete(key: str) -> Callable[[h5py.File], None]:
    def edit(file: h5py.File) -> None:
        del file[key]

    return edit


def _replace(key: str, value: np.ndarray) -> Callable[[h5py.File], None]:
    def edit(file: h5py.File) -> None:
        del file[key]
        file[key] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (_delete("/train"), ["has no group 'train'", "top-level groups: metadata"]),
        (
            _delete("/train/12@N01/labels"),
            ["/train/12@N01", "has no dataset 'labels'", "prepare_dataset.py"],
        ),
        (
            _delete("/train/12@N01/images"),
            ["/train/12@N01", "has no dataset 'images'"],
        ),
        (
            _delete("/metadata/label_counter"),
            ["has no dataset '/metadata/label_counter'"],
        ),
        (
            _replace("/train/12@N01/images", np.zeros((2, 8, 8), np.uint8)),
            ["'images' must be (N, H, W, 3) uint8", "(2, 8, 8)"],
        ),
        (
            _replace("/train/12@N01/labels", np.asarray([b"food"], dtype="S")),
            ["'labels' must hold one entry per image, shape (2,)", "got (1,)"],
        ),
        (
            _replace("/train/12@N01/labels", np.asarray([b"food", b"ufo"], "S")),
            ["label 'ufo', absent from the metadata counter"],
        ),
    ],
)
def test_a_partial_or_malformed_file_names_what_is_missing(
    tmp_path: Path, edit: Callable[[h5py.File], None], fragments: list[str]
) -> None:
    path = _write_by_hand(tmp_path / "f.hdf5", edit)

    with pytest.raises(FlairFileError) as info:
        flair.read_users(path, "train", ["12@N01"], "coarse")

    message = str(info.value)
    assert path in message and "Fix:" in message
    for fragment in fragments:
        assert fragment in message


def test_missing_unreadable_files_and_unknown_users_say_so(tmp_path: Path) -> None:
    path = _write_by_hand(tmp_path / "f.hdf5")
    (tmp_path / "text.hdf5").write_text("not hdf5")

    with pytest.raises(FlairFileError, match="does not exist"):
        flair.label_names(str(tmp_path / "nope.hdf5"), "coarse")
    with pytest.raises(FlairFileError, match="not a readable HDF5 file"):
        flair.user_ids(str(tmp_path / "text.hdf5"), "train")
    with pytest.raises(FlairFileError, match="no user 'someone' in split 'train'"):
        flair.read_users(path, "train", ["someone"], "coarse")


def _write_pfl_research_layout(path: Path) -> str:
    """pfl-research's variant of the layout: a label mapping, sparse label pairs."""
    mapping = {"structure": 0, "animal": 1, "people": 2, "food": 3}  # not sorted
    fine = {n: i for i, n in enumerate(n for names in FINE.values() for n in names)}
    with h5py.File(path, "w") as file:
        user = "/train/12@N01"
        file.create_dataset(f"{user}/images", data=np.zeros((3, 16, 16, 3), np.uint8))
        # image 0: food, people; image 1: animal; image 2: none
        file[f"{user}/labels_row"] = np.asarray([0, 0, 1], np.uint16)
        file[f"{user}/labels_col"] = np.asarray([3, 2, 1], np.uint8)
        file[f"{user}/fine_grained_labels_row"] = np.asarray([1], np.uint16)
        file[f"{user}/fine_grained_labels_col"] = np.asarray([fine["dog"]], np.uint16)
        file["/metadata/label_mapping"] = json.dumps(mapping)
        file["/metadata/fine_grained_label_mapping"] = json.dumps(fine)
    return str(path)


def test_pfl_researchs_sparse_variant_is_read_with_its_own_label_index(
    tmp_path: Path,
) -> None:
    path = _write_pfl_research_layout(tmp_path / "pfl.hdf5")

    coarse = flair.read_users(path, "train", ["12@N01"], "coarse")
    fine = flair.read_users(path, "train", ["12@N01"], "fine", max_images=2)

    assert flair.label_names(path, "coarse") == (
        "structure",
        "animal",
        "people",
        "food",
    )
    assert coarse.y.tolist() == [[0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]]
    names = flair.label_names(path, "fine")
    assert fine.y.shape == (2, 8)
    assert [names[i] for i in fine.y[1].nonzero().flatten()] == ["dog"]
    assert fine.y[0].sum() == 0


def test_a_bad_sparse_pair_or_mapping_names_it(tmp_path: Path) -> None:
    path = _write_pfl_research_layout(tmp_path / "pfl.hdf5")
    with h5py.File(path, "a") as file:
        del file["/train/12@N01/labels_col"]
        file["/train/12@N01/labels_col"] = np.asarray([3, 2, 9], np.uint8)
        del file["/metadata/fine_grained_label_mapping"]
        file["/metadata/fine_grained_label_mapping"] = json.dumps({"a": 0, "b": 5})

    with pytest.raises(FlairFileError, match="'labels_col' holds label index 9"):
        flair.read_users(path, "train", ["12@N01"], "coarse")
    with pytest.raises(
        FlairFileError, match=r"must map its labels to 0\.\.1, each once"
    ):
        flair.label_names(path, "fine")
