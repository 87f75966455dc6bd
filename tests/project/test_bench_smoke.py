"""The benchmark's smoke mode runs end to end (< 60 s) and its report has every section, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

SECTIONS = ("suggestions", "service", "model_time", "candidates", "training", "quality", "coding", "congestion")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_smoke_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--quiet", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["smoke"] is True
    assert set(SECTIONS) <= set(report["sections"])
    for name in SECTIONS:
        section = report["sections"][name]
        assert section["status"] == "ok", f"{name}: {section['error']}"
        assert section["rows"], f"{name}: no measured rows"
        assert section["checks"], f"{name}: no target checks"
        for check in section["checks"]:
            assert {"name", "value", "target", "op", "passed"} <= set(check)
    assert report["summary"]["checks_passed"] + report["summary"]["checks_failed"] > 0
    assert elapsed < 90, f"smoke benchmark took {elapsed:.0f}s"
