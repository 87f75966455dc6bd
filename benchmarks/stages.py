"""Split the time of one in-process ``suggest`` call into stages by wrapping the real functions it calls.

Only the outermost wrapped call is timed (a model call made by the path planner counts as ``paths``); what is
left of the total is ``other`` (request set-up, response models).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STAGES = ("eligibility", "features", "model", "explanations", "paths", "other")


class StageTimer:
    """Accumulates exclusive outermost time per stage while its wrappers are installed."""

    def __init__(self) -> None:
        self.acc: dict[str, float] = defaultdict(float)
        self._depth = 0
        self._undo: list[tuple[Any, str, Any, bool]] = []
        self.wrapped: dict[str, list[str]] = defaultdict(list)

    def _wrap(self, fn: Callable[..., Any], stage: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.acc[stage] += time.perf_counter() - start
                self._depth -= 1

        return timed

    def wrap(self, obj: Any, attr: str, stage: str) -> bool:
        """Replace ``obj.attr`` by a timed wrapper (instance attribute or module global). False when absent."""
        fn = getattr(obj, attr, None)
        if fn is None or not callable(fn):
            return False
        own = attr in getattr(obj, "__dict__", {})
        setattr(obj, attr, self._wrap(fn, stage))
        self._undo.append((obj, attr, fn, own))
        self.wrapped[stage].append(f"{getattr(obj, '__name__', type(obj).__name__)}.{attr}")
        return True

    def restore(self) -> None:
        """Remove every wrapper."""
        for obj, attr, fn, own in reversed(self._undo):
            if own:
                setattr(obj, attr, fn)
            else:
                delattr(obj, attr)
        self._undo.clear()

    def reset(self) -> None:
        """Zero the accumulators."""
        self.acc.clear()


@contextmanager
def suggest_stages(snapshot: Any) -> Iterator[StageTimer]:
    """Wrap the stages of ``service.suggest.suggest`` for one snapshot (restored on exit)."""
    import service.suggest as sg

    timer = StageTimer()
    model = snapshot.loaded.model
    try:
        timer.wrap(snapshot.catalogue.evaluator, "evaluate", "eligibility")
        for name in ("encode_client", "first_stage", "features"):
            timer.wrap(model, name, "features")
        for name in ("score_rows", "explain_rows", "outcome_rows"):
            timer.wrap(model, name, "model")
        for name, value in list(vars(sg).items()):
            module = getattr(value, "__module__", "") or ""
            if not callable(value) or name.startswith("__"):
                continue
            if name in ("_paths",) or module.startswith("models.paths"):
                timer.wrap(sg, name, "paths")
            elif name in ("_reasons", "_gaps", "_RemedyIndex", "_named_status") or module.startswith("models.explain"):
                timer.wrap(sg, name, "explanations")
        yield timer
    finally:
        timer.restore()
