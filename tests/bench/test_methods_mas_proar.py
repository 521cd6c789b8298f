"""The MAS and PROAR-PFed benches: tiny runs are sane and reproducible."""

from bench.methods_mas import run as run_mas
from bench.methods_proar import run as run_proar
from strategies.settings_iii import OTAConfig


def test_mas_bench_splits_and_costs_less_than_independent() -> None:
    common = {"clients": 2, "rounds": 3, "merge_rounds": 1, "groups": 2}
    mas = run_mas("mas", 0, lr=0.05, hidden=8, **common)
    independent = run_mas("independent", 0, lr=0.05, hidden=8, **common)
    merged = run_mas("merged", 0, lr=0.05, hidden=8, **common)
    assert mas.groups.count("|") == 1 and merged.groups == "all"
    assert merged.megabytes < mas.megabytes < independent.megabytes
    assert len(mas.losses) == 5 and all(loss > 0 for loss in mas.losses)
    assert run_mas("mas", 0, lr=0.05, hidden=8, **common).losses == mas.losses


def test_proar_bench_is_seeded_and_needs_the_ris_at_low_snr() -> None:
    common = {"clients": 4, "rounds": 3, "alpha": 0.5, "lr": 0.05}
    quiet = OTAConfig(snr_db=0.0, ris_elements=16)
    first = run_proar(quiet, True, 0, **common)
    assert first == run_proar(quiet, True, 0, **common)
    assert 0.0 <= first[0] <= 1.0
    none = run_proar(OTAConfig(snr_db=-60.0, ris_elements=0), False, 0, **common)
    assert none[0] < first[0]
