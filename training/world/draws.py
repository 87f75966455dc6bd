"""Fast scalar random draws, bit-identical to the ``numpy.random.Generator.choice`` calls they replace.

``Generator.choice`` costs tens of microseconds per call (it validates ``p``, builds its cumulative sum and
turns Python sequences into arrays every time). The world builders draw a few dozen scalars per client, so at
100k clients that overhead dominates. These helpers consume exactly the same bits in the same order as
numpy 2's ``choice`` (see ``numpy/random/_generator.pyx``), so a world stays identical for a given seed;
``tests/training/test_world.py`` checks the equivalence.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def cumulative(p: Sequence[float] | npt.NDArray[np.float64]) -> list[float]:
    """The cumulative distribution ``Generator.choice`` builds from ``p`` (same float operations)."""
    cdf = np.asarray(p, dtype=np.float64).cumsum()
    cdf /= cdf[-1]
    return [float(x) for x in cdf]


class Draws:
    """Scalar draws from one generator.

    Args:
        rng: the generator (shared with the caller, which may keep drawing from it directly).
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def weighted(self, cdf: list[float]) -> int:
        """Same as ``rng.choice(len(p), p=p)`` where ``cdf = cumulative(p)``."""
        return bisect_right(cdf, self.rng.random())

    def index(self, n: int) -> int:
        """Same as ``rng.choice(seq)`` (returned as a position into ``seq``, ``n = len(seq)``)."""
        return int(self.rng.integers(0, n))

    def sample(self, n: int, k: int) -> list[int]:
        """Same as ``rng.choice(seq, k, replace=False)`` (positions into ``seq``, ``n = len(seq)``)."""
        if k == 0:  # Floyd's algorithm draws nothing
            return []
        if k == 1:  # one bounded draw over [0, n), then a shuffle of one element (which draws nothing)
            return [int(self.rng.integers(0, n))]
        return [int(x) for x in self.rng.choice(n, k, replace=False)]

    def weighted_sample(self, p: npt.NDArray[np.float64], cdf: list[float], k: int) -> list[int]:
        """Same as ``rng.choice(len(p), k, replace=False, p=p)`` where ``cdf = cumulative(p)``."""
        found: list[int] = []
        work = np.array(p, dtype=np.float64)
        while len(found) < k:
            x = self.rng.random(k - len(found))
            if found:
                work[found] = 0.0
                cdf = cumulative(work)
            for j in (bisect_right(cdf, float(v)) for v in x):
                if j not in found:
                    found.append(j)
        return found
