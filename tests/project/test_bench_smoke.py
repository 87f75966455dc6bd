"""The benchmark's smoke mode runs end to end (< 60 s) and its report has every section, so it cannot rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SECTIONS = (
    "suggestions",
    "service",
    "throughput",
    "model_time",
    "candidates",
    "training",
    "quality",
    "coding",
    "congestion",
)
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_smoke_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--quiet", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["smoke"] is True
    assert set(SECTIONS) <= set(report["sections"])
    for name in SECTIONS:
        section = report["sections"][name]
        assert section["status"] == "ok", f"{name}: {section['error']}"
        if name == "throughput" and shutil.which("wrk") is None:
            assert any("wrk is not installed" in n for n in section["notes"])
            continue
        assert section["rows"], f"{name}: no measured rows"
        assert section["checks"], f"{name}: no target checks"
        for check in section["checks"]:
            assert {"name", "value", "target", "op", "passed"} <= set(check)
    assert report["summary"]["checks_passed"] + report["summary"]["checks_failed"] > 0
