import pytest

from bench.methods_fedspine import Run, device_seconds, main


def test_time_to_target_is_the_clock_of_the_first_round_at_or_above_it() -> None:
    run = Run("bandit", (1.0, 2.5, 4.0), (0.5, 0.8, 0.7), ({}, {}, {}))
    assert run.time_to(0.8) == 2.5
    assert run.time_to(0.9) is None


def test_a_slower_device_or_a_heavier_arm_takes_longer() -> None:
    assert device_seconds(0.5, 2, 48, 0.2) == pytest.approx(
        5 * device_seconds(0.5, 2, 48, 1.0)
    )
    assert device_seconds(0.0, 8, 48, 1.0) > device_seconds(0.75, 2, 48, 1.0)


def test_the_bench_runs_every_policy_and_prints_its_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = "--seeds 0 --rounds 2 --ratios 0 0.5 --ranks 2 --speeds 1 0.5"
    argv += " --samples 16 --pretrain-steps 2 --target 0.99"
    assert main(argv.split()) == 0
    out = capsys.readouterr().out
    for policy in ("bandit", "fixed p=0 r=2", "fixed p=0.5 r=2"):
        assert f"| {policy} |" in out
    assert "best fixed:" in out
