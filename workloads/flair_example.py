"""A tiny generated file in FLAIR's HDF5 layout, for tests and a first campaign.

It holds no real image (FLAIR's images carry their owners' licences): each
image is noise plus one bright quadrant per coarse label it carries, so the
labels can be learnt and averaged precision rises above chance when a model
learns. Labels are drawn per image (seed ``seed``); each coarse label has two
fine-grained labels, of which the image carries one. The layout is that of
ml-flair's ``prepare_dataset.py`` (see workloads/flair.py).

Write one with ``python -m workloads.flair_example OUT.hdf5``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from workloads.flair_layout import LABEL_DELIMITER

COARSE = ("animal", "food", "people", "structure")
FINE = {
    "animal": ("cat", "dog"),
    "food": ("bread", "fruit"),
    "people": ("child", "adult"),
    "structure": ("bridge", "tower"),
}
DEFAULT_USERS = {"train": 4, "val": 2, "test": 2}


def _image(rng: np.random.Generator, size: int, present: list[int]) -> np.ndarray:
    image = rng.integers(0, 80, (size, size, 3))
    half = size // 2
    for label in present:
        row, col = divmod(label, 2)
        image[row * half : (row + 1) * half, col * half : (col + 1) * half] += 160
    return np.clip(image, 0, 255).astype(np.uint8)


def write_example_file(
    path: str | Path,
    users: Mapping[str, int] = DEFAULT_USERS,
    images_per_user: int = 6,
    image_size: int = 8,
    seed: int = 0,
) -> Path:
    """Write a FLAIR-layout HDF5 file at ``path``; return the path.

    ``users`` maps each split to its number of users (named ``<split>-user-<i>``).
    """
    import h5py

    if images_per_user < 1 or image_size < 2:
        raise ValueError("images_per_user must be >= 1 and image_size >= 2")
    rng = np.random.default_rng(seed)
    coarse_count: Counter[str] = Counter()
    fine_count: Counter[str] = Counter()
    out = Path(path)
    with h5py.File(out, "w") as file:
        for split, count in users.items():
            for u in range(count):
                images, coarse, fine = [], [], []
                for _ in range(images_per_user):
                    present = sorted(
                        rng.choice(len(COARSE), int(rng.integers(1, 3)), replace=False)
                    )
                    names = [COARSE[i] for i in present]
                    fines = [FINE[n][int(rng.integers(0, 2))] for n in names]
                    images.append(_image(rng, image_size, [int(i) for i in present]))
                    coarse.append(LABEL_DELIMITER.join(names))
                    fine.append(LABEL_DELIMITER.join(fines))
                    coarse_count.update(names)
                    fine_count.update(fines)
                user = f"/{split}/{split}-user-{u}"
                file[f"{user}/labels"] = np.asarray(coarse, dtype="S")
                file[f"{user}/fine_grained_labels"] = np.asarray(fine, dtype="S")
                file[f"{user}/image_ids"] = np.asarray(
                    [f"{split}{u}-{i}" for i in range(images_per_user)], dtype="S"
                )
                file.create_dataset(f"{user}/images", data=np.stack(images))
        # Every label in the counters, even one no image drew: the index is fixed.
        file["/metadata/label_counter"] = json.dumps(
            {name: coarse_count[name] for name in COARSE}
        )
        file["/metadata/fine_grained_label_counter"] = json.dumps(
            {name: fine_count[name] for names in FINE.values() for name in names}
        )
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m workloads.flair_example OUT.hdf5")
    print(write_example_file(sys.argv[1]))
