import time

import numpy as np
import pytest
import torch

from workloads import digits


def test_raw_digits_match_scikit_learn_loader() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()

    pixels, labels = digits._load_raw()

    np.testing.assert_array_equal(pixels, bunch.data)
    np.testing.assert_array_equal(labels, bunch.target)


def test_test_set_shape_dtype_and_stratification() -> None:
    _, labels = digits._load_raw()
    class_sizes = np.bincount(labels)

    x, y = digits.test_set()

    expected = np.array([round(0.2 * n) for n in class_sizes])
    assert x.shape == (int(expected.sum()), 1, 32, 32)
    assert x.dtype == torch.float32
    assert y.dtype == torch.int64
    np.testing.assert_array_equal(torch.bincount(y, minlength=10).numpy(), expected)
    assert digits.pool_size() + len(y) == 1797


def test_pool_is_normalised_and_test_set_close_to_it() -> None:
    pool_x = torch.from_numpy(digits._arrays()[0].copy())
    x, _ = digits.test_set()

    assert abs(float(pool_x.mean())) < 1e-4
    assert abs(float(pool_x.std()) - 1.0) < 1e-3
    # Raw pixels 0..16 scale to [0, 1] before normalising; bilinear stays inside.
    mean = float(pool_x.mean())
    assert float(pool_x.min()) < mean < float(pool_x.max())
    assert abs(float(x.mean())) < 0.1
    assert 0.9 < float(x.std()) < 1.1


def test_upsampling_preserves_image_content() -> None:
    pixels, _ = digits._load_raw()

    big = digits._upsample(pixels[:5])

    assert big.shape == (5, 1, 32, 32)
    assert big.min() >= 0.0 and big.max() <= 1.0
    # Averaging each 4x4 block back to 8x8 gives a slightly blurred original.
    pooled = big.reshape(5, 8, 4, 8, 4).mean(axis=(2, 4)).reshape(5, 64)
    original = pixels[:5] / 16
    assert np.abs(pooled - original).mean() < 0.1
    for row, expected in zip(pooled, original, strict=True):
        assert np.corrcoef(row, expected)[0, 1] > 0.95


def test_test_set_is_a_copy_so_the_cache_cannot_be_mutated() -> None:
    x, _ = digits.test_set()
    x.zero_()

    x_again, _ = digits.test_set()

    assert float(x_again.abs().sum()) > 0


def test_test_set_is_disjoint_from_pool() -> None:
    pool_x, _, test_x, _ = digits._arrays()
    pool_rows = {row.tobytes() for row in pool_x}
    # Some digits images are exact duplicates in the source; allow a handful.
    shared = sum(row.tobytes() in pool_rows for row in test_x)

    assert shared <= 5


def _indices(part: digits.DigitsPartition) -> set[bytes]:
    return {row.numpy().tobytes() for row in torch.cat([part.x_train, part.x_val])}


@pytest.mark.parametrize("alpha", [None, 0.5])
def test_partitions_are_disjoint(alpha: float | None) -> None:
    parts = [digits.partition(i, 5, seed=3, dirichlet_alpha=alpha) for i in range(5)]

    seen: set[bytes] = set()
    total = 0
    for part in parts:
        rows = _indices(part)
        assert not rows & seen
        seen |= rows
        total += part.num_train + part.num_val
    assert total == digits.pool_size()


def test_partition_sizes_follow_samples_per_node_and_validation_fraction() -> None:
    parts = [digits.partition(i, 4, samples_per_node=200) for i in range(4)]

    for part in parts:
        assert part.num_train == 160
        assert part.num_val == 40
        assert part.x_train.shape == (160, 1, 32, 32)
        assert part.y_train.shape == (160,)
        assert part.x_train.dtype == torch.float32
        assert part.y_train.dtype == torch.int64


def test_iid_partition_without_cap_shares_the_pool_evenly() -> None:
    parts = [digits.partition(i, 3, validation_fraction=0.0) for i in range(3)]

    sizes = [p.num_train for p in parts]
    assert sum(sizes) == digits.pool_size()
    assert max(sizes) - min(sizes) <= 1
    for part in parts:
        assert part.num_val == 0
        # IID: every class shows up in a share of ~480 samples.
        assert len(torch.unique(part.y_train)) == 10


def test_partition_is_deterministic_and_seed_dependent() -> None:
    first = digits.partition(1, 4, samples_per_node=100, seed=7)
    digits._arrays.cache_clear()
    digits._shares.cache_clear()

    again = digits.partition(1, 4, samples_per_node=100, seed=7)
    other = digits.partition(1, 4, samples_per_node=100, seed=8)

    assert torch.equal(first.x_train, again.x_train)
    assert torch.equal(first.y_val, again.y_val)
    assert not torch.equal(first.y_train, other.y_train)


def test_dirichlet_small_alpha_skews_labels_more_than_iid() -> None:
    def mean_classes(alpha: float | None) -> float:
        parts = [digits.partition(i, 10, dirichlet_alpha=alpha) for i in range(10)]
        return float(np.mean([len(torch.unique(p.y_train)) for p in parts]))

    assert mean_classes(None) == 10
    assert mean_classes(0.1) < 6


def test_asking_for_more_than_the_share_caps_with_warning() -> None:
    share = len(digits._shares(8, 0, None)[0])

    with pytest.warns(UserWarning, match=f"asked for 500 .* holds {share}"):
        part = digits.partition(0, 8, samples_per_node=500)

    assert part.num_train + part.num_val == share


def test_asking_for_more_than_the_share_raises_when_strict() -> None:
    with pytest.raises(ValueError, match=r"asked for 2000 .* holds 1438 .*of 1438"):
        digits.partition(0, 1, samples_per_node=2000, strict=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"partition_id": 4, "num_partitions": 4}, "partition_id"),
        ({"partition_id": 0, "num_partitions": 0}, "num_partitions"),
        ({"partition_id": 0, "num_partitions": 5000}, "exceeds the training pool"),
        ({"partition_id": 0, "num_partitions": 2, "samples_per_node": 0}, "samples"),
        ({"partition_id": 0, "num_partitions": 2, "dirichlet_alpha": 0.0}, "alpha"),
        ({"partition_id": 0, "num_partitions": 2, "validation_fraction": 1.0}, "valid"),
    ],
)
def test_bad_partition_arguments_are_rejected(
    kwargs: dict[str, float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        digits.partition(**kwargs)  # type: ignore[arg-type]


def test_build_is_fast() -> None:
    digits._arrays.cache_clear()
    digits._shares.cache_clear()

    start = time.perf_counter()
    digits.partition(0, 10, samples_per_node=100)
    digits.test_set()
    elapsed = time.perf_counter() - start

    assert elapsed < 0.5
