"""Section 7: the occupation coder on the hand-coded titles (accuracy vs the plain baseline), latency, index cost."""

from __future__ import annotations

from benchmarks.data import Fixtures
from benchmarks.report import Section

LEVELS = ("occupation_top1", "occupation_top5", "isco4_top1", "isco4_top5", "isco2_top1", "isco2_top5")


def run(section: Section, fx: Fixtures) -> None:
    """``training.coding_eval.evaluate_coding``: rows per part and ranker, the issue's targets as checks."""
    from features.coding import default_coder
    from training.coding_eval import evaluate_coding

    smoke = fx.sizes == fx.sizes.smoke()
    # The smoke run builds the index once (its build time is the one reported) and traces no memory.
    report = evaluate_coding(
        coder=default_coder() if smoke else None,
        memory=not smoke,
        repeats=1 if smoke else 5,
        latency_texts=20 if smoke else None,
    )
    for part in report["accuracy"]["coder"]:
        for who in ("coder", "baseline"):
            values = report["accuracy"][who][part]
            section.add_row(part=part, ranker=who, n=int(values["n"]), **{k: values[k] for k in LEVELS})
    section.add_row(part="latency", ranker="coder", **report["latency"])
    section.add_row(part="index", ranker="coder", **report["index"])
    for c in report["checks"]:
        section.check(c["name"], c["value"], c["op"], c["target"])
    section.note(
        "accuracy: hand-coded City of Helsinki titles (training/data/coding, dev and held-out parts by coded "
        "occupation) and author-written fi/en titles; docs/coding.md explains the coding and the numbers"
    )
