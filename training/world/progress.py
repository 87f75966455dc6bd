"""Progress bars for world generation: tqdm on an interactive stderr, silent otherwise (CI, logs, tests)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")

# Bars appear only for loops of at least this many items (small worlds finish before a bar would help).
MIN_TOTAL = 20_000


def enabled(total: int | None = None) -> bool:
    """True when stderr is a terminal and the loop (if its size is given) is large enough to deserve a bar."""
    return sys.stderr.isatty() and (total is None or total >= MIN_TOTAL)


def progress_bar(*, total: int, desc: str, unit: str = "", work: int | None = None) -> tqdm:  # type: ignore[type-arg]
    """A tqdm bar on stderr, disabled unless :func:`enabled` (use as a context manager, call ``update``).

    Args:
        total: number of steps of the bar.
        desc: label.
        unit: unit of a step.
        work: size of the job that decides whether a bar is worth showing (default ``total``).
    """
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=total >= 1000,
        leave=False,
        mininterval=0.5,
        disable=not enabled(total if work is None else work),
    )


def progress(items: Iterable[T], *, total: int, desc: str) -> Iterator[T]:
    """Wrap an iterable in a bar (see :func:`progress_bar`); yields the items unchanged."""
    with progress_bar(total=total, desc=desc) as bar:
        for item in items:
            yield item
            bar.update()
