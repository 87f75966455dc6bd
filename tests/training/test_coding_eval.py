"""The coder's evaluation on the hand-coded titles: the issue's targets where met, floors where not yet.

The targets (issue 15): on the Finnish Helsinki titles top-5 occupation accuracy >= 0.85, ISCO 2-digit top-1
>= 0.80, top-1 at least 0.15 above the plain baseline; p99 <= 30 ms for 2,000 characters; index <= 5 s and
<= 150 MB. Missed targets are strict xfails: they fail the day they are met, so the docs get updated.
Times are checked loosely here (the suite shares the machine); ``make bench`` measures them properly.
"""

from __future__ import annotations

import pytest

from features.coding import Coder, default_coder
from features.coding.baseline import PlainLabelMatcher
from features.taxonomy import default_taxonomy
from training.coding_eval import HELSINKI, accuracy_table, descriptions, latency, load_coded


@pytest.fixture(scope="module")
def coder() -> Coder:
    return default_coder()


@pytest.fixture(scope="module")
def tables(coder: Coder) -> dict[str, dict[str, dict[str, float]]]:
    tax = default_taxonomy()
    baseline = PlainLabelMatcher(tax)
    return {
        "coder": accuracy_table(lambda t: coder.suggest(t).occupations, tax),
        "baseline": accuracy_table(lambda t: baseline.suggest(t), tax),
    }


def test_the_coded_sets_are_complete() -> None:
    helsinki = load_coded(HELSINKI)
    assert len(helsinki) == 98
    assert sum(i.language == "fi" for i in helsinki) == 96
    assert {i.split for i in helsinki} == {"dev", "held_out"}
    tax = default_taxonomy()
    assert all(tax.has_occupation(u) for i in helsinki for u in i.accepted)


def test_top1_beats_the_plain_baseline_by_at_least_015(tables: dict[str, dict[str, dict[str, float]]]) -> None:
    gain = tables["coder"]["helsinki_fi"]["occupation_top1"] - tables["baseline"]["helsinki_fi"]["occupation_top1"]
    assert gain >= 0.15


def test_accuracy_floors(tables: dict[str, dict[str, dict[str, float]]]) -> None:
    """Regression floors at the measured level (docs/coding.md has the table)."""
    coder = tables["coder"]
    assert coder["helsinki_fi"]["occupation_top5"] >= 0.80
    assert coder["helsinki_fi"]["isco2_top1"] >= 0.77
    assert coder["helsinki_fi_held_out"]["occupation_top5"] >= 0.72
    assert coder["helsinki_fi_sure"]["occupation_top5"] >= 0.90
    assert coder["extra_fi"]["occupation_top5"] >= 0.88
    assert coder["extra_en"]["occupation_top5"] >= 0.90
    for part, row in coder.items():
        base = tables["baseline"][part]
        assert row["occupation_top5"] >= base["occupation_top5"] - 1e-9, part


@pytest.mark.xfail(strict=True, reason="target missed: top-5 occupation accuracy is 0.80 (docs/coding.md)")
def test_target_top5_occupation_accuracy(tables: dict[str, dict[str, dict[str, float]]]) -> None:
    assert tables["coder"]["helsinki_fi"]["occupation_top5"] >= 0.85


@pytest.mark.xfail(strict=True, reason="target missed: ISCO 2-digit top-1 accuracy is 0.78 (docs/coding.md)")
def test_target_isco2_top1_accuracy(tables: dict[str, dict[str, dict[str, float]]]) -> None:
    assert tables["coder"]["helsinki_fi"]["isco2_top1"] >= 0.80


def test_latency_target_in_cpu_time_and_index_size(coder: Coder) -> None:
    """p99 <= 30 ms per 2,000-character text, in the coder's own CPU time (wall time depends on the neighbours)."""
    tax = default_taxonomy()
    texts = descriptions(tax, [i.title for i in load_coded(HELSINKI)])
    assert all(len(t) >= 1900 for t in texts)
    assert latency(coder, texts, cpu=True)["p99_ms"] <= 30.0
    assert coder.memory_bytes() <= 150e6
    assert coder.build_seconds <= 60.0  # the 5 s target is measured by `make bench`
