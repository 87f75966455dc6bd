"""The scale benchmark's verdicts: targets judged only where measured, task seconds grouped by function."""

from __future__ import annotations

from benchmarks.allocate_scale import TARGET_WORKER_BYTES, report, task_seconds


def _run(workers: int, seconds: float, peak: int) -> dict[str, object]:
    return {"workers": workers, "seconds": seconds, "worker_peak_rss_bytes": [peak] * workers}


def test_full_size_runs_are_judged_against_every_target() -> None:
    config = {"clients": 100_000, "opportunities": 50_000, "top_k": 50}
    out = report([_run(1, 1400.0, 10**9), _run(2, 880.0, TARGET_WORKER_BYTES + 1)], config)["targets"]
    assert out["batch_seconds_2_workers"]["met"] is True
    assert out["speedup_2_vs_1"]["value"] == round(1400 / 880, 3)
    assert out["speedup_2_vs_1"]["met"] is False
    assert out["worker_peak_rss"]["met"] is False


def test_smaller_runs_do_not_claim_the_time_target_and_a_missing_count_leaves_the_speedup_open() -> None:
    out = report([_run(2, 100.0, 10**9)], {"clients": 10_000, "opportunities": 50_000, "top_k": 50})["targets"]
    assert out["batch_seconds_2_workers"]["met"] is None
    assert out["speedup_2_vs_1"]["met"] is None
    assert out["worker_peak_rss"]["met"] is True


def test_task_seconds_group_compute_spans_by_task_function() -> None:
    records = [
        {"key": "score_block_top_k-1a2b-3c", "startstops": [{"action": "compute", "start": 10.0, "stop": 12.5}]},
        {"key": "score_block_top_k-4d5e-6f", "startstops": [{"action": "transfer", "start": 9.0, "stop": 10.0}]},
        {"key": "solve-7a8b", "startstops": [{"action": "compute", "start": 11.0, "stop": 14.0}]},
    ]
    out = task_seconds(records)
    assert out["score_block_top_k"] == {"tasks": 1, "compute_s": 2.5, "first_start_s": 0.0, "last_end_s": 2.5}
    assert out["solve"]["compute_s"] == 3.0
    assert out["solve"]["last_end_s"] == 4.0
