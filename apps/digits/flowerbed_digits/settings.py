"""The app's run config, read once into a typed, validated dataclass."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strategies.registry import check_dataset, check_model
from workloads import DATASETS, FLAIR_LABELS


@dataclass(frozen=True)
class DigitsSettings:
    """Workload and strategy settings a campaign passes as Flower run config."""

    num_server_rounds: int = 2
    strategy: str = "fedavg"
    fraction_evaluate: float = 1.0
    local_epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 0.002
    samples_per_node: int = 200
    model_width: float = 1.17  # ~1.0M parameters (workloads.squeezenet.DEFAULT_WIDTH)
    seed: int = 0
    round_timeout_s: float = 600.0
    min_nodes: int = 2
    # "digits": one grey domain split over the nodes; "digits5": Digits-5-lite,
    # node p holds domain p mod 5 (workloads/digits5.py); "domain-files": one
    # domain per subfolder of data-dir (workloads/domain_files.py), e.g. the
    # real Digits-Five, at the same path on every node and the server; "text":
    # generated topic sentences (workloads/textcls.py), for strategy fedspine.
    dataset: str = "digits"
    data_dir: str = ""
    # "flair": FLAIR's HDF5 file at flair-path (workloads/flair.py), the same
    # path on every node and the server; flair-labels picks the coarse (17) or
    # fine (1,628) labels; the server evaluates on at most flair-eval-images
    # test images. A node's users come from its node config (flair-users).
    flair_path: str = ""
    flair_labels: str = "coarse"
    flair_eval_images: int = 2000
    # "squeezenet" (default) or "cnn", the FedBN/FedWon papers' digit CNN
    # (workloads/digitcnn.py; give it a model-width: 0.25 is 4.5 MB).
    model: str = "squeezenet"
    # The campaign's strategy parameters as a JSON object (Flower's run config
    # holds only scalars); server and client take their share via the registry.
    strategy_parameters: str = "{}"

    def __post_init__(self) -> None:
        if self.num_server_rounds < 1:
            raise ValueError("num-server-rounds must be >= 1")
        if self.local_epochs < 1 or self.batch_size < 1 or self.samples_per_node < 1:
            raise ValueError(
                "local-epochs, batch-size and samples-per-node must be >= 1"
            )
        if not 0.0 <= self.fraction_evaluate <= 1.0:
            raise ValueError("fraction-evaluate must be in [0, 1]")
        if self.model_width <= 0:
            raise ValueError("model-width must be > 0")
        if self.dataset not in DATASETS:
            raise ValueError(
                f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}"
            )
        if self.dataset == "domain-files" and not self.data_dir:
            raise ValueError(
                "dataset domain-files needs data-dir: the folder with one subfolder"
                " per domain (train.npz, test.npz)"
            )
        if self.dataset == "flair" and not self.flair_path:
            raise ValueError(
                "dataset flair needs flair-path: the HDF5 file of ml-flair's"
                " prepare_dataset.py (docs/datasets.md)"
            )
        if self.flair_labels not in FLAIR_LABELS:
            raise ValueError(
                f"flair-labels must be one of {', '.join(FLAIR_LABELS)},"
                f" got {self.flair_labels!r}"
            )
        if self.flair_eval_images < 1:
            raise ValueError("flair-eval-images must be >= 1")
        check_model(self.strategy, self.model, self.model_width)
        check_dataset(self.strategy, self.dataset)
        _ = self.parameters  # fail here, at the edge, on bad JSON

    @property
    def parameters(self) -> dict[str, Any]:
        """The strategy parameters, decoded from ``strategy-parameters``."""
        try:
            decoded = json.loads(self.strategy_parameters)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"strategy-parameters must be a JSON object, got"
                f" {self.strategy_parameters!r} ({err})"
            ) from None
        if not isinstance(decoded, dict):
            raise ValueError(
                f"strategy-parameters must be a JSON object, got {decoded!r}"
            )
        return decoded

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> DigitsSettings:
        """Build from Flower's ``context.run_config`` (kebab-case keys)."""
        kwargs: dict[str, Any] = {}
        for name, field in cls.__dataclass_fields__.items():
            key = name.replace("_", "-")
            if key in run_config:
                default: Any = field.default
                kwargs[name] = type(default)(run_config[key])
        return cls(**kwargs)
