"""What a campaign file's check imports: neither Flower nor torch (issue 14, part 4)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "flwr")


def _modules_after(statement: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after ``statement`` in a fresh process."""
    code = (
        f"{statement}\n"
        "import json, sys\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout))


@pytest.mark.parametrize(
    "statement",
    [
        "import strategies.registry",
        "import inventory.loader",
        "import instrumentation.schema",
        "import workloads",
        # what a campaign file's check calls: names, parameters, model and width
        "from strategies.registry import check_model, check_parameters\n"
        "check_model('fedbn', 'cnn', 0.5)\n"
        "check_parameters('heterofl', {'mode': 'static', 'ratios': [0.5]})\n"
        "check_parameters('fedbuff', {'buffer_size': 2, 'max_wall_s': 9})",
    ],
)
def test_imports_neither_flower_nor_torch(statement: str) -> None:
    loaded = _modules_after(statement)
    assert not loaded & set(HEAVY), statement


def test_the_control_does_import_them() -> None:
    # the check above could not fail if the probe never saw these packages
    loaded = _modules_after(
        "from strategies.registry import client_side\nclient_side('fedbn')"
    )
    assert set(HEAVY) <= loaded
