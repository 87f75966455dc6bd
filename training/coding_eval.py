"""Evaluation of the occupation coder on hand-coded titles: accuracy at three levels, baseline, latency, index cost.

``evaluate_coding()`` returns a JSON-ready report (``polku evaluate-coding --out report.json`` writes it):

- accuracy of the coder and of the plain baseline (:class:`features.coding.baseline.PlainLabelMatcher`) at
  top-1 and top-5, for the ESCO occupation, the ISCO-08 unit group (4 digits) and the sub-major group (2 digits),
  on the Helsinki titles (dev, held-out, all; per posting and per distinct title) and on the author-written
  Finnish and English titles. A prediction is right when it is the coded occupation or one of ``also_accepted``
  (ISCO levels: when its group is the group of one of them);
- latency of ``Coder.suggest`` on 2,000-character descriptions;
- the index's build time and memory.
"""

from __future__ import annotations

import csv
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.coding import Coder, OccupationMatch
from features.coding.baseline import PlainLabelMatcher
from features.taxonomy import Taxonomy, default_taxonomy

DATA_DIR = Path(__file__).parent / "data" / "coding"
HELSINKI = "helsinki_titles_esco.csv"
EXTRA = "extra_titles_esco.csv"
DESCRIPTION_CHARS = 2000
TARGETS: dict[str, tuple[str, float]] = {
    "helsinki_fi.occupation_top5": (">=", 0.85),
    "helsinki_fi.isco2_top1": (">=", 0.80),
    "helsinki_fi.top1_gain_over_baseline": (">=", 0.15),
    "latency.p99_ms": ("<=", 30.0),
    "index.build_seconds": ("<=", 5.0),
    "index.memory_mb": ("<=", 150.0),
}
Suggest = Callable[[str], list[OccupationMatch]]


@dataclass(frozen=True)
class CodedTitle:
    """One hand-coded title: the text, its language, the accepted ESCO URIs (first = the coded one), the split."""

    title: str
    language: str
    accepted: tuple[str, ...]
    split: str
    confidence: str


def load_coded(name: str, data_dir: Path = DATA_DIR) -> list[CodedTitle]:
    """Read one coded CSV file of ``training/data/coding``."""
    with (data_dir / name).open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        CodedTitle(
            title=r["title"],
            language=r["language"],
            accepted=(r["esco_uri"], *r["also_accepted"].split()),
            split=r.get("split") or "extra",
            confidence=r.get("confidence") or "sure",
        )
        for r in rows
    ]


def accuracy(items: Sequence[CodedTitle], suggest: Suggest, taxonomy: Taxonomy) -> dict[str, float]:
    """Top-1 and top-5 accuracy at occupation, ISCO-4 and ISCO-2 level (each in [0, 1]), with ``n``."""
    hits = dict.fromkeys(
        ("occupation_top1", "occupation_top5", "isco4_top1", "isco4_top5", "isco2_top1", "isco2_top5"), 0
    )
    for item in items:
        predicted = [m.uri for m in suggest(item.title)[:5]]
        isco = [taxonomy.isco_of_occupation(u) for u in predicted]
        gold_isco = {taxonomy.isco_of_occupation(u) for u in item.accepted}
        for level, pred, gold in (
            ("occupation", predicted, set(item.accepted)),
            ("isco4", isco, gold_isco),
            ("isco2", [c[:2] for c in isco], {c[:2] for c in gold_isco}),
        ):
            hits[f"{level}_top1"] += bool(pred) and pred[0] in gold
            hits[f"{level}_top5"] += any(p in gold for p in pred)
    n = len(items)
    return {"n": float(n), **{k: (v / n if n else 0.0) for k, v in hits.items()}}


def _distinct(items: Sequence[CodedTitle]) -> list[CodedTitle]:
    seen: dict[str, CodedTitle] = {}
    for item in items:
        seen.setdefault(item.title.strip().lower(), item)
    return list(seen.values())


def accuracy_table(suggest: Suggest, taxonomy: Taxonomy, data_dir: Path = DATA_DIR) -> dict[str, dict[str, float]]:
    """Accuracy on every part: Helsinki fi (dev, held-out, all, distinct titles, sure only), sv, extra fi/en."""
    helsinki = load_coded(HELSINKI, data_dir)
    extra = load_coded(EXTRA, data_dir)
    fi = [i for i in helsinki if i.language == "fi"]
    parts: dict[str, list[CodedTitle]] = {
        "helsinki_fi": fi,
        "helsinki_fi_dev": [i for i in fi if i.split == "dev"],
        "helsinki_fi_held_out": [i for i in fi if i.split == "held_out"],
        "helsinki_fi_distinct_titles": _distinct(fi),
        "helsinki_fi_sure": [i for i in fi if i.confidence == "sure"],
        "helsinki_sv": [i for i in helsinki if i.language == "sv"],
        "extra_fi": [i for i in extra if i.language == "fi"],
        "extra_en": [i for i in extra if i.language == "en"],
    }
    answers: dict[str, list[OccupationMatch]] = {}  # parts overlap: ask once per title

    def cached(title: str) -> list[OccupationMatch]:
        if title not in answers:
            answers[title] = suggest(title)
        return answers[title]

    return {name: accuracy(items, cached, taxonomy) for name, items in parts.items()}


def descriptions(taxonomy: Taxonomy, titles: Sequence[str], chars: int = DESCRIPTION_CHARS) -> list[str]:
    """Job-ad-like texts of ``chars`` characters: a title line, then Finnish sentences from ESCO skill labels.

    The skills come from an unrelated occupation (so the text is long and realistic in vocabulary but gives the
    coder no hint): these texts measure time, not accuracy.
    """
    out = []
    uris = taxonomy.occupation_uris
    for i, title in enumerate(titles):
        essential, optional = taxonomy.occupation_skills(uris[(i * 31) % len(uris)])
        text = f"{title}\nTehtävässäsi pääset hyödyntämään osaamistasi. "
        for j, skill in enumerate([*essential, *optional] * 5):
            text += f"{'Osaat' if j % 2 else 'Tehtäviin kuuluu'} {taxonomy.skill_label(skill, 'fi')}. "
            if len(text) >= chars:
                break
        out.append(text[:chars].rsplit(" ", 1)[0])
    return out


def latency(coder: Coder, texts: Sequence[str], repeats: int = 1, *, cpu: bool = False) -> dict[str, float]:
    """Milliseconds per ``Coder.suggest`` call: p50, p95, p99 and max (after one warm-up call).

    With ``cpu`` the calling thread's CPU time is measured instead of wall time: on a shared machine it shows
    the coder's own cost, without the time other processes took the core.
    """
    clock = time.thread_time if cpu else time.perf_counter
    coder.suggest(texts[0])
    times: list[float] = []
    for _ in range(repeats):
        for text in texts:
            start = clock()
            coder.suggest(text)
            times.append((clock() - start) * 1000)
    times.sort()
    q = statistics.quantiles(times, n=100, method="inclusive")
    return {"n": float(len(times)), "p50_ms": q[49], "p95_ms": q[94], "p99_ms": q[98], "max_ms": times[-1]}


def index_cost(taxonomy: Taxonomy, *, memory: bool = True) -> dict[str, float]:
    """Build seconds of a fresh index and (with ``memory``) the bytes it allocates, traced in a second build."""
    taxonomy.occupation_alt_labels(taxonomy.occupation_uris[0])  # the labels file is the taxonomy's, not the index's
    gc.collect()
    coder = Coder(taxonomy)
    out = {"build_seconds": coder.build_seconds}
    if memory:
        del coder
        gc.collect()
        tracemalloc.start()
        try:
            kept = Coder(taxonomy)
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        out |= {"memory_mb": current / 1e6, "peak_build_mb": peak / 1e6}
        del kept
    return out


def evaluate_coding(
    *,
    taxonomy: Taxonomy | None = None,
    coder: Coder | None = None,
    memory: bool = True,
    repeats: int = 2,
    latency_texts: int | None = None,
) -> dict[str, Any]:
    """The whole report: accuracy of coder and baseline, gains, latency, index cost and target checks.

    Without a ``coder`` a fresh one is built and timed; with ``memory`` the index's allocations are traced in one
    more build. Latency is wall time over ``latency_texts`` descriptions (default: one per Helsinki title) times
    ``repeats``; its CPU-time twin (``cpu_*``) shows the coder's own cost on a busy machine.
    """
    tax = taxonomy or default_taxonomy()
    cost = index_cost(tax, memory=memory) if coder is None else {"build_seconds": coder.build_seconds}
    coder = coder or Coder(tax)
    cost["matrices_mb"] = coder.memory_bytes() / 1e6
    baseline = PlainLabelMatcher(tax)
    table = {
        "coder": accuracy_table(lambda t: coder.suggest(t, k=5).occupations, tax),
        "baseline": accuracy_table(lambda t: baseline.suggest(t, k=5), tax),
    }
    titles = [i.title for i in load_coded(HELSINKI)][:latency_texts]
    texts = descriptions(tax, titles)
    lat = latency(coder, texts, repeats=repeats)
    lat |= {f"cpu_{k}": v for k, v in latency(coder, texts, repeats=repeats, cpu=True).items() if k != "n"}
    gain = table["coder"]["helsinki_fi"]["occupation_top1"] - table["baseline"]["helsinki_fi"]["occupation_top1"]
    values = {
        "helsinki_fi.occupation_top5": table["coder"]["helsinki_fi"]["occupation_top5"],
        "helsinki_fi.isco2_top1": table["coder"]["helsinki_fi"]["isco2_top1"],
        "helsinki_fi.top1_gain_over_baseline": gain,
        "latency.p99_ms": lat["p99_ms"],
        "index.build_seconds": cost["build_seconds"],
        "index.memory_mb": cost.get("memory_mb"),
    }
    checks = [
        {"name": name, "value": values[name], "op": op, "target": target, "passed": _passes(values[name], op, target)}
        for name, (op, target) in TARGETS.items()
    ]
    return {
        "coder_version": _coder_version(),
        "taxonomy_version": tax.version,
        "accuracy": table,
        "latency": {"description_chars": DESCRIPTION_CHARS, **lat},
        "index": cost,
        "checks": checks,
    }


def _passes(value: float | None, op: str, target: float) -> bool | None:
    if value is None:
        return None
    return value >= target if op == ">=" else value <= target


def _coder_version() -> str:
    from features.coding import CODER_VERSION

    return CODER_VERSION


def format_table(report: dict[str, Any]) -> str:
    """A text table of the main numbers (coder vs baseline per part, latency, index)."""
    lines = [
        f"{'part':30} {'who':8} {'n':>4} "
        + " ".join(f"{c:>6}" for c in ("occ@1", "occ@5", "i4@1", "i4@5", "i2@1", "i2@5"))
    ]
    keys = ("occupation_top1", "occupation_top5", "isco4_top1", "isco4_top5", "isco2_top1", "isco2_top5")
    for part in report["accuracy"]["coder"]:
        for who in ("coder", "baseline"):
            row = report["accuracy"][who][part]
            lines.append(f"{part:30} {who:8} {int(row['n']):>4} " + " ".join(f"{row[k]:6.3f}" for k in keys))
    lat, idx = report["latency"], report["index"]
    lines.append(
        f"latency ({lat['description_chars']} chars, n={int(lat['n'])}): p50 {lat['p50_ms']:.1f} ms, "
        f"p99 {lat['p99_ms']:.1f} ms (CPU time: p50 {lat['cpu_p50_ms']:.1f}, p99 {lat['cpu_p99_ms']:.1f} ms); "
        f"index: build {idx['build_seconds']:.2f} s" + (f", {idx['memory_mb']:.0f} MB" if "memory_mb" in idx else "")
    )
    for c in report["checks"]:
        mark = {True: "ok", False: "MISSED", None: "n/a"}[c["passed"]]
        value = "n/a" if c["value"] is None else f"{c['value']:.3f}"
        lines.append(f"  [{mark}] {c['name']} = {value} ({c['op']} {c['target']})")
    return "\n".join(lines)
