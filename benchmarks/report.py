"""Report model of a benchmark run: sections with figures and target checks, JSON output and a text table."""

from __future__ import annotations

import json
import logging
import math
import platform
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

Op = Literal["<=", ">="]


@dataclass
class Check:
    """One target: ``value op target`` (``passed`` is None when the value could not be measured)."""

    name: str
    value: float | None
    target: float
    op: Op
    unit: str = ""
    passed: bool | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.value is None or not math.isfinite(self.value):
            self.passed = None
        else:
            self.passed = self.value <= self.target if self.op == "<=" else self.value >= self.target


@dataclass
class Section:
    """One benchmark section: status, measured rows, target checks, notes, seconds spent."""

    name: str
    title: str
    status: Literal["ok", "failed", "skipped"] = "ok"
    rows: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def add_row(self, **values: Any) -> dict[str, Any]:
        """Append a measured row (values are rounded for the report)."""
        row = {k: _clean(v) for k, v in values.items()}
        self.rows.append(row)
        return row

    def check(self, name: str, value: float | None, op: Op, target: float, unit: str = "", note: str = "") -> Check:
        """Record a target check."""
        c = Check(name=name, value=None if value is None else round(float(value), 4), target=target, op=op, unit=unit)
        c.note = note
        self.checks.append(c)
        return c

    def note(self, text: str) -> None:
        """Add a free-text note."""
        self.notes.append(text)


def _clean(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def run_section(name: str, title: str, fn: Callable[[Section], None]) -> Section:
    """Run one section; an exception is recorded in the section instead of stopping the benchmark."""
    section = Section(name=name, title=title)
    start = time.perf_counter()
    logger.info("== %s: %s", name, title)
    try:
        fn(section)
    except SkipSection as exc:
        section.status = "skipped"
        section.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a failing section is a result, not the end of the run
        section.status = "failed"
        section.error = f"{type(exc).__name__}: {exc}"
        section.notes.append(traceback.format_exc(limit=8))
        logger.exception("section %s failed", name)
    section.seconds = round(time.perf_counter() - start, 2)
    logger.info("== %s %s in %.1fs", name, section.status, section.seconds)
    return section


class SkipSection(Exception):
    """A section cannot run here (a prerequisite is missing); recorded as skipped."""


def latency_stats(samples_s: Iterable[float]) -> dict[str, float | int]:
    """p50/p95/p99/mean/max in milliseconds of latency samples in seconds."""
    arr = np.asarray(list(samples_s), dtype=np.float64) * 1000.0
    if arr.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "n": int(arr.size),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "mean_ms": float(arr.mean()),
        "max_ms": float(arr.max()),
    }


def environment() -> dict[str, Any]:
    """Machine and library versions."""
    import os
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for pkg in ("numpy", "scipy", "lightgbm", "fastapi", "uvicorn", "sqlalchemy", "pydantic", "mlflow"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "versions": versions,
    }


def build_report(sections: list[Section], *, smoke: bool, seconds: float, sizes: dict[str, Any]) -> dict[str, Any]:
    """The JSON report."""
    checks = [c for s in sections for c in s.checks]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": smoke,
        "seconds": round(seconds, 1),
        "environment": environment(),
        "sizes": sizes,
        "summary": {
            "sections": {s.name: s.status for s in sections},
            "checks_passed": sum(1 for c in checks if c.passed is True),
            "checks_failed": sum(1 for c in checks if c.passed is False),
            "checks_unmeasured": sum(1 for c in checks if c.passed is None),
        },
        "sections": {s.name: asdict(s) for s in sections},
    }


def write_report(report: dict[str, Any], path: Path) -> Path:
    """Write the JSON report (directories created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    return path


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return str(v)


def format_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Rows as an aligned text table (union of keys, in first-seen order)."""
    if not rows:
        return []
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols and not isinstance(r[k], dict | list))
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    out = ["  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    out.extend("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells)
    return out


def format_report(report: dict[str, Any]) -> str:
    """Human-readable summary: per section the measured rows, then every target with pass/fail."""
    lines: list[str] = []
    for name, s in report["sections"].items():
        lines.append("")
        lines.append(f"[{name}] {s['title']} — {s['status']} ({s['seconds']}s)")
        if s.get("error"):
            lines.append(f"  error: {s['error']}")
        lines.extend(format_rows(s["rows"]))
        for n in s["notes"]:
            if "Traceback" not in n:
                lines.append(f"  note: {n}")
    lines.append("")
    lines.append("Targets")
    target_rows = []
    for name, s in report["sections"].items():
        for c in s["checks"]:
            verdict = {True: "PASS", False: "FAIL", None: "n/a"}[c["passed"]]
            target_rows.append(
                {
                    "section": name,
                    "check": c["name"],
                    "value": c["value"],
                    "target": f"{c['op']} {_fmt(c['target'])} {c['unit']}".strip(),
                    "result": verdict,
                }
            )
    lines.extend(format_rows(target_rows))
    summ = report["summary"]
    lines.append(
        f"\n{summ['checks_passed']} passed, {summ['checks_failed']} failed, {summ['checks_unmeasured']} unmeasured; "
        f"total {report['seconds']}s"
    )
    return "\n".join(lines)
