"""Multi-label training (BCE) and averaged precision, on figures worked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from workloads import flair
from workloads.digitcnn import DigitCNNConfig, build_digit_cnn
from workloads.flair_example import write_example_file
from workloads.multilabel import (
    average_precision,
    evaluate_multilabel,
    train_multilabel,
)


def test_average_precision_matches_the_hand_computed_figures() -> None:
    targets = np.array([[1, 0], [0, 1], [1, 1]])
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6]])
    # Label 0 ranks pos, neg, pos: AP = 1/2 * 1 + 1/2 * 2/3 = 5/6. Label 1
    # ranks pos, pos, neg: AP = 1. Pooled: pos, neg, pos, pos, neg, pos gives
    # 1/4 * (1 + 2/3 + 3/4 + 4/6) = 37/48.
    macro, micro = average_precision(scores, targets)

    assert macro == pytest.approx((5 / 6 + 1) / 2)
    assert micro == pytest.approx(37 / 48)


def test_labels_without_positives_leave_the_macro_mean() -> None:
    targets = np.array([[1, 0], [0, 0]])
    scores = np.array([[0.2, 0.9], [0.8, 0.1]])

    macro, _ = average_precision(scores, targets)
    empty = average_precision(scores, np.zeros_like(targets))

    assert macro == pytest.approx(0.5)  # label 0 only: pos ranked second
    assert all(math.isnan(v) for v in empty)


def test_bce_training_raises_averaged_precision_on_the_example_file(
    tmp_path: Path,
) -> None:
    # Prepare: a generated file whose labels show as bright quadrants.
    path = str(
        write_example_file(
            tmp_path / "f.hdf5", {"train": 4, "test": 2}, images_per_user=40
        )
    )
    train = flair.read_users(path, "train", flair.user_ids(path, "train"), "coarse")
    test = flair.server_test_set(path, "coarse", 1000)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_digit_cnn(DigitCNNConfig(num_classes=4, width=0.1))
    before = evaluate_multilabel(model, test.x, test.y)

    # Execute
    result = train_multilabel(
        model,
        torch.optim.Adam(model.parameters(), lr=0.01),
        train.x,
        train.y,
        epochs=8,
        batch_size=16,
    )
    after = evaluate_multilabel(model, test.x, test.y)

    # Assert: the model learnt the labels; the figures are in range.
    assert result.num_examples == 160 and result.steps == 8 * 10
    assert after.loss < before.loss
    assert after.macro_ap > 0.95 and before.macro_ap < 0.7
    assert after.micro_ap > 0.95
    assert after.num_examples == 80


def test_shapes_are_checked() -> None:
    model = build_digit_cnn(DigitCNNConfig(num_classes=4, width=0.1))
    with pytest.raises(ValueError, match="multi-hot"):
        evaluate_multilabel(model, torch.zeros(2, 3, 32, 32), torch.zeros(2))
    with pytest.raises(ValueError, match="both be"):
        average_precision(np.zeros((2, 3)), np.zeros((2, 2)))
