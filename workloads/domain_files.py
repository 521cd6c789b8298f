"""Multi-domain image data from local files: the real Digits-Five, or any such set.

Digits-5-lite (workloads/digits5.py) stands in for the Digits-Five benchmark of
FedBN and FedWon (MNIST, SVHN, USPS, SynthDigits, MNIST-M). A lab that has the
real images runs the same campaigns on them with ``dataset: domain-files`` and
``data-dir: DIR``. Each domain is a subfolder of DIR holding two NumPy archives:

    DIR/mnist/train.npz   x: (N, H, W) or (N, H, W, C) images, y: (N,) labels
    DIR/mnist/test.npz
    DIR/svhn/train.npz
    ...

- Domains are the subfolders that hold a ``train.npz``, in name order; node
  ``partition-id`` ``p`` holds domain ``p mod D``, shared as in Digits-5-lite.
- ``x`` is uint8 (0-255) or float in [0, 1], with 1 (grey) or 3 (RGB) channels
  last; every image is resized to 32x32 (bilinear), grey is copied to R, G
  and B, and every domain is normalised as ``(x - 0.5) / 0.5``.
- ``y`` holds integer class labels in ``[0, NUM_CLASSES)``.

Archives are read with ``allow_pickle=False``: nothing in them can run code.
docs/methods.md shows how to convert FedBN's pickled Digits-Five partitions.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from workloads.digits import IMAGE_SIZE, NUM_CLASSES
from workloads.digits5 import CHANNELS, DomainData, node_share

SPLITS = ("train", "test")


class DomainFilesError(ValueError):
    """A data folder or archive is missing or malformed; says which and what to do."""


def domain_names(data_dir: str | Path) -> tuple[str, ...]:
    """The domains under ``data_dir``: subfolders with a train.npz, in name order."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DomainFilesError(
            f"data-dir {root} is not a folder; put one subfolder per domain there,"
            " each with train.npz and test.npz (workloads/domain_files.py)"
        )
    names = tuple(sorted(d.name for d in root.iterdir() if (d / "train.npz").is_file()))
    if not names:
        raise DomainFilesError(
            f"data-dir {root} has no domain: no subfolder holds a train.npz"
        )
    return names


def _images(path: Path, x: np.ndarray) -> torch.Tensor:
    """(N, H, W[, C]) uint8 or [0, 1] floats -> float32 (N, 3, 32, 32) in [-1, 1]."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or len(x) == 0:
        raise DomainFilesError(
            f"{path}: x must be (N, H, W) or (N, H, W, C) with C 1 or 3 and N > 0,"
            f" got shape {x.shape}"
        )
    if x.dtype == np.uint8:
        values = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        values = x.astype(np.float32)
        if values.min() < 0.0 or values.max() > 1.0:
            raise DomainFilesError(
                f"{path}: float images must lie in [0, 1], got"
                f" [{values.min():.3g}, {values.max():.3g}]; store uint8 or rescale"
            )
    else:
        raise DomainFilesError(f"{path}: x must be uint8 or float, got {x.dtype}")
    images = torch.from_numpy(values).permute(0, 3, 1, 2)
    if images.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        images = F.interpolate(
            images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True
        ).clamp(0.0, 1.0)
    images = images.expand(-1, CHANNELS, -1, -1).contiguous()
    return (images - 0.5) / 0.5


def _labels(path: Path, y: np.ndarray, count: int) -> torch.Tensor:
    if y.shape != (count,) or not np.issubdtype(y.dtype, np.integer):
        raise DomainFilesError(
            f"{path}: y must be ({count},) integers, one label per image,"
            f" got {y.dtype} {y.shape}"
        )
    if count and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise DomainFilesError(
            f"{path}: labels must be in [0, {NUM_CLASSES}), got [{y.min()}, {y.max()}]"
        )
    return torch.from_numpy(y.astype(np.int64))


def _split(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if not path.is_file():
        raise DomainFilesError(f"{path} is missing; every domain needs {SPLITS}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive or "y" not in archive:
                raise DomainFilesError(
                    f"{path} must hold arrays 'x' and 'y', has {sorted(archive)}"
                )
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError) as err:
        if isinstance(err, DomainFilesError):
            raise
        raise DomainFilesError(
            f"{path} is not a readable .npz of plain arrays ({err}); write it with"
            " numpy.savez(path, x=images, y=labels)"
        ) from None
    return _images(path, x), _labels(path, y, len(x))


@lru_cache(maxsize=16)
def _domain(data_dir: str, domain: int) -> DomainData:
    names = domain_names(data_dir)
    if not 0 <= domain < len(names):
        raise ValueError(f"domain must be in [0, {len(names)}), got {domain!r}")
    folder = Path(data_dir) / names[domain]
    x_train, y_train = _split(folder / "train.npz")
    x_test, y_test = _split(folder / "test.npz")
    return DomainData(names[domain], x_train, y_train, x_test, y_test)


def domain_data(data_dir: str | Path, domain: int) -> DomainData:
    """Domain ``domain``'s whole training pool and test set (read once, cached)."""
    return _domain(str(Path(data_dir).resolve()), domain)


def node_data(
    data_dir: str | Path,
    partition_id: int,
    num_partitions: int,
    samples_per_node: int | None = None,
    seed: int = 0,
) -> DomainData:
    """Node ``partition_id``'s data: domain ``partition_id mod D``, as Digits-5-lite."""
    count = len(domain_names(data_dir))
    return node_share(
        lambda d: domain_data(data_dir, d),
        count,
        partition_id,
        num_partitions,
        samples_per_node,
        seed,
    )


def pooled_test_set(data_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Every domain's test images together: the server's evaluation set."""
    domains = [domain_data(data_dir, d) for d in range(len(domain_names(data_dir)))]
    return torch.cat([d.x_test for d in domains]), torch.cat(
        [d.y_test for d in domains]
    )
