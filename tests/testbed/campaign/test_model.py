from pathlib import Path

import pytest

from testbed.campaign.model import DEFAULT_APP, CampaignError, load_campaign

REPO = Path(__file__).resolve().parents[3]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_shipped_campaigns_load() -> None:
    for path in sorted((REPO / "campaigns").glob("*.yaml")):
        campaign = load_campaign(path)
        assert campaign.networks
        assert campaign.app == DEFAULT_APP


def test_demo_campaign_values() -> None:
    campaign = load_campaign(REPO / "campaigns" / "demo.yaml")
    assert campaign.networks == ("ethernet", "wifi", "5g")
    assert campaign.rounds == 2
    assert campaign.strategy.name == "fedavg"
    assert campaign.workload_dict["samples-per-node"] == 200


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("name: x\n", "networks", "non-empty list"),
        ("networks: [wifi]\n", "name", "missing"),
        ("name: x\nnetworks: [wifi, wifi]\n", "networks", "twice"),
        ("name: x\nnetworks: [wifi]\nrounds: 0\n", "rounds", ">= 1"),
        ("name: x\nnetworks: [wifi]\nrounds: two\n", "rounds", "must be int"),
        ("name: x\nnetworks: [wifi]\nround: 2\n", "round", "did you mean 'rounds'"),
        (
            "name: x\nnetworks: [wifi]\nstrategy: fedmagic\n",
            "strategy.name",
            "unknown strategy",
        ),
        (
            "name: x\nnetworks: [wifi]\n"
            "strategy: {name: fedavg, parameters: {mu: 1}}\n",
            "strategy.parameters",
            "no parameter",
        ),
        (
            "name: x\nnetworks: [wifi]\nworkload: {samples-per-nod: 5}\n",
            "workload.samples-per-nod",
            "did you mean 'samples-per-node'",
        ),
        (
            "name: x\nnetworks: [wifi]\nworkload: {batch-size: big}\n",
            "workload.batch-size",
            "int",
        ),
        (
            "name: x\nnetworks: [wifi]\nworkload: {model: resnet}\n",
            "workload.model",
            "must be one of squeezenet, cnn, got 'resnet'",
        ),
        (
            "name: x\nnetworks: [wifi]\nworkload: {dataset: mnist}\n",
            "workload.dataset",
            "must be one of digits, digits5",
        ),
        (
            "name: x\nnetworks: [wifi]\nstrategy: heterofl\n"
            "workload: {model: cnn, model-width: 0.25}\n",
            "workload.model",
            "trains only model squeezenet, not 'cnn' (it cuts sub-models by channel",
        ),
        (
            "name: x\nnetworks: [wifi]\nworkload: {model: cnn, model-width: 4}\n",
            "workload.model",
            "model-width must be in (0, 2] with model cnn",
        ),
        (
            "name: x\nnetworks: [wifi]\nworkload: {model: cnn}\n",
            "workload.model-width",
            "25M parameters, 100 MB a message",
        ),
        (
            "name: x\nnetworks: [wifi]\nworkload: {dataset: domain-files}\n",
            "workload.data-dir",
            "is needed with 'dataset: domain-files'",
        ),
        (
            "name: x\nnetworks: [wifi]\nworkload: {dataset: flair}\n",
            "workload.flair-path",
            "is needed with 'dataset: flair'",
        ),
        (
            "name: x\nnetworks: [wifi]\n"
            "workload: {dataset: flair, flair-path: f.hdf5, flair-labels: medium}\n",
            "workload.flair-labels",
            "must be one of coarse, fine, got 'medium'",
        ),
        (
            "name: x\nnetworks: [wifi]\nstrategy: fedspine\n",
            "workload.dataset",
            "strategy 'fedspine' cannot train on dataset 'digits'",
        ),
        (
            "name: x\nnetworks: [wifi]\nworkload: {dataset: text}\n",
            "workload.dataset",
            "dataset text goes with strategy fedspine",
        ),
        ("name: x\nnetworks: [wifi]\nrun_deadline_s: -1\n", "run_deadline_s", "> 0"),
        ("name: 'a b'\nnetworks: [wifi]\n", "name", "not a valid campaign name"),
        ("name: x\nnetworks: [wifi]\napp: nowhere\n", "app", "no pyproject.toml"),
        ("[1, 2]\n", "-", "mapping"),
        ("name: [\n", "-", "not valid YAML"),
    ],
)
def test_bad_campaigns_name_file_key_and_fix(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    message = str(info.value)
    assert str(path) in message
    assert f"key '{key}'" in message
    assert fragment in message
    assert "Fix:" in message


def test_missing_campaign_file(tmp_path: Path) -> None:
    with pytest.raises(CampaignError, match="file not found"):
        load_campaign(tmp_path / "nope.yaml")


def test_a_flair_file_here_is_checked_when_the_campaign_loads(tmp_path: Path) -> None:
    import h5py

    from workloads.flair_example import write_example_file

    good = write_example_file(tmp_path / "good.hdf5")
    partial = write_example_file(tmp_path / "partial.hdf5")
    with h5py.File(partial, "a") as file:
        del file["/test"]
    text = "name: x\nnetworks: [wifi]\nworkload: {{dataset: flair, flair-path: {}}}\n"

    campaign = load_campaign(_write(tmp_path, text.format(good)))
    with pytest.raises(CampaignError) as info:
        load_campaign(_write(tmp_path, text.format(partial)))

    assert campaign.workload_dict["flair-path"] == str(good)
    message = str(info.value)
    assert "key 'workload.flair-path'" in message
    assert f"{partial}: has no group 'test'" in message
    assert "prepare_dataset.py" in message
