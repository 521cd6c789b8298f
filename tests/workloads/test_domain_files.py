from pathlib import Path

import numpy as np
import pytest
import torch

from workloads.domain_files import (
    DomainFilesError,
    domain_data,
    domain_names,
    node_data,
    pooled_test_set,
)


def _write(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        np.savez(folder / f"{split}.npz", x=x, y=y)


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    # an MNIST-like grey domain (28x28 uint8) and an SVHN-like RGB one (32x32 float)
    _write(
        tmp_path / "mnist",
        rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        np.arange(12) % 10,
    )
    _write(tmp_path / "svhn", rng.random((8, 32, 32, 3)), np.arange(8) % 10)
    (tmp_path / "notes").mkdir()  # no train.npz: not a domain
    return tmp_path


def test_domains_are_subfolders_with_a_train_archive_in_name_order(
    data_dir: Path,
) -> None:
    assert domain_names(data_dir) == ("mnist", "svhn")


def test_images_become_normalised_three_channel_32x32(data_dir: Path) -> None:
    mnist = domain_data(data_dir, 0)
    assert mnist.domain == "mnist"
    assert mnist.x_train.shape == (12, 3, 32, 32)
    assert mnist.x_train.dtype == torch.float32
    assert torch.equal(mnist.x_train[:, 0], mnist.x_train[:, 2])  # grey copied
    assert -1.0 <= float(mnist.x_train.min()) and float(mnist.x_train.max()) <= 1.0
    svhn = domain_data(data_dir, 1)
    raw = np.load(data_dir / "svhn" / "train.npz")["x"]
    expected = (torch.from_numpy(raw[0]).float().permute(2, 0, 1) - 0.5) / 0.5
    assert torch.allclose(svhn.x_train[0], expected)  # 32x32: not resampled
    assert svhn.y_test.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]


def test_nodes_take_domain_p_mod_d_and_share_its_pool(data_dir: Path) -> None:
    first = node_data(data_dir, 0, 4, seed=1)  # mnist, shared with node 2
    third = node_data(data_dir, 2, 4, seed=1)
    assert first.domain == third.domain == "mnist"
    assert len(first.y_train) + len(third.y_train) == 12
    assert node_data(data_dir, 3, 4).domain == "svhn"
    assert len(node_data(data_dir, 1, 4, samples_per_node=3).y_train) == 3
    x, y = pooled_test_set(data_dir)
    assert x.shape == (20, 3, 32, 32) and len(y) == 20


@pytest.mark.parametrize(
    ("x", "y", "fragment"),
    [
        (np.zeros((4, 28), np.uint8), np.zeros(4, int), "x must be (N, H, W)"),
        (np.zeros((4, 8, 8, 2), np.uint8), np.zeros(4, int), "C 1 or 3"),
        (np.full((4, 8, 8), 2.0), np.zeros(4, int), "must lie in [0, 1]"),
        (np.zeros((4, 8, 8), np.uint8), np.zeros(3, int), "one label per image"),
        (np.zeros((4, 8, 8), np.uint8), np.full(4, 10), "labels must be in [0, 10)"),
        (np.zeros((4, 8, 8), np.uint8), np.zeros(4), "integers"),
    ],
)
def test_malformed_archives_name_the_file_and_the_problem(
    tmp_path: Path, x: np.ndarray, y: np.ndarray, fragment: str
) -> None:
    _write(tmp_path / "bad", x, y)
    with pytest.raises(DomainFilesError) as info:
        domain_data(tmp_path, 0)
    assert str(tmp_path / "bad") in str(info.value)
    assert fragment in str(info.value)


def test_missing_folders_files_and_pickles_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DomainFilesError, match="is not a folder"):
        domain_names(tmp_path / "nowhere")
    with pytest.raises(DomainFilesError, match="no subfolder holds a train.npz"):
        domain_names(tmp_path)
    (tmp_path / "a").mkdir()
    np.savez(tmp_path / "a" / "train.npz", x=np.zeros((2, 8, 8), np.uint8), y=[0, 1])
    with pytest.raises(DomainFilesError, match="test.npz is missing"):
        domain_data(tmp_path, 0)
    # an object array needs pickle to load: refused, nothing is unpickled
    np.savez(tmp_path / "a" / "test.npz", x=np.array([{"a": 1}], dtype=object), y=[0])
    with pytest.raises(DomainFilesError, match="not a readable .npz of plain arrays"):
        domain_data(tmp_path, 0)
