import pytest

from bench.methods_fedwon import (
    SETUPS,
    RunResult,
    batch_size_jobs,
    batch_size_table,
    jobs,
    paired,
    rounds_to,
    sweep_job,
)


def _result(method: str, seed: int, final: float, batch: int = 16) -> RunResult:
    return RunResult(method, batch, seed, 0.1, [[0.1] * 5, [final] * 5], 1.0, 1.0)


def test_rounds_to_is_the_first_round_at_or_above_the_target() -> None:
    assert rounds_to([0.5, 0.9, 0.95, 0.85], 0.9) == 2
    assert rounds_to([0.5, 0.89], 0.9) is None


def test_paired_differences_match_seeds_and_count_ties_as_not_below() -> None:
    results = [
        _result("FedWon", 0, 0.90),
        _result("FedBN", 0, 0.90),
        _result("FedWon", 1, 0.80),
        _result("FedBN", 1, 0.85),
        _result("FedWon", 2, 0.70),  # no FedBN run for seed 2: not paired
        _result("FedBN", 0, 0.10, batch=1),  # another cell: ignored
    ]
    line = paired(results, "FedWon", "FedBN", 16)
    assert "+0.000 -0.050" in line
    assert "mean -0.025" in line
    assert "1 of 2 seeds >= 0" in line
    assert "no common seeds" in paired(results, "FedWon", "FedAvg", 16)


@pytest.mark.parametrize("model", sorted(SETUPS))
def test_every_job_trains_the_chosen_network_with_its_threshold(model: str) -> None:
    todo = jobs([0, 1], model)
    assert {j.study.model for j in todo} == {model}
    assert {j.study.clip_lambda for j in todo} == {SETUPS[model].clip_lambda}
    # 4 methods at batch 16 and all but plain FedAvg at batch 1, per seed
    assert len(todo) == 2 * (4 + 3)


def test_sweep_specs_name_a_method_or_default_to_fedwon() -> None:
    job = sweep_job("0.1,0.2,50,7")
    assert (job.method.label, job.lr, job.study.clip_lambda) == ("FedWon", 0.1, 0.2)
    assert (job.study.rounds, job.seed, job.study.model) == (50, 7, "cnn")
    fedbn = sweep_job("FedBN:0.05,,25,3", "squeezenet")
    assert (fedbn.method.label, fedbn.lr, fedbn.seed) == ("FedBN", 0.05, 3)
    assert not fedbn.method.batchnorm_everything_shared
    assert fedbn.study.model == "squeezenet"
    assert fedbn.study.clip_lambda == SETUPS["squeezenet"].clip_lambda
    assert sweep_job("FedWon:0.02").study.clip_lambda == SETUPS["cnn"].clip_lambda
    with pytest.raises(ValueError, match="unknown method 'FedProx'"):
        sweep_job("FedProx:0.1,1")


def test_batch_size_jobs_scale_the_rate_and_keep_the_small_cell() -> None:
    todo = batch_size_jobs([16, 4, 1], [0])
    assert {j.method.label for j in todo} == {"FedAvg+BN", "FedBN", "FedWon"}
    scale = {j.study.batch_size: j.lr_scale for j in todo}
    assert scale == {16: 1.0, 4: 0.25, 1: 0.1}
    assert {(j.study.rounds, j.study.samples_per_client) for j in todo} == {(10, 128)}


def test_batch_size_table_has_a_row_per_size_largest_first() -> None:
    results = [
        _result("FedBN", 0, 0.8, batch=1),
        _result("FedBN", 1, 0.6, batch=1),
        _result("FedBN", 0, 0.9, batch=16),
    ]
    lines = batch_size_table(results).splitlines()
    assert lines[0] == "| batch | FedBN |"
    assert lines[2] == "| 16 | 0.900 +- 0.000 |"
    assert lines[3] == "| 1 | 0.700 +- 0.141 |"
