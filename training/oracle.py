"""OracleRanker: ranks by the synthetic world's noise-free expected utility (evaluation only, never served)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt


class TruthLike(Protocol):
    """What the oracle needs from ``training.world`` ``Truth``."""

    def expected_utility(
        self, client_ids: Sequence[str], opportunity_ids: Sequence[str], exclude: Sequence[str] = ()
    ) -> npt.NDArray[np.float64]:
        """Pairwise, aligned, noise-free utility (without the ``exclude`` terms)."""
        ...  # pragma: no cover

    def relevance(self, client_ids: Sequence[str], opportunity_ids: Sequence[str]) -> npt.NDArray[np.integer[Any]]:
        """Graded relevance 0..4 from utility thresholds."""
        ...  # pragma: no cover


class OracleRanker:
    """Scores (client, opportunity) pairs by the world's latent expected utility.

    It reads the simulation's ground truth, so it is the ceiling every real ranker is measured against; it cannot
    score a feature matrix and is never packaged or served.

    With ``exclude`` it leaves utility terms out: ``("quality", "affinity")`` is the *observable ceiling* (the
    best any model of the observable features can do), ``("affinity",)`` that plus perfect item quality.

    Args:
        truth: the world's ``Truth``.
        exclude: utility terms to leave out.
    """

    name: ClassVar[str] = "oracle"

    def __init__(self, truth: TruthLike, exclude: Sequence[str] = ()) -> None:
        self.truth = truth
        self.exclude = tuple(exclude)

    def score_pairs(self, client_ids: Sequence[str], opportunity_ids: Sequence[str]) -> npt.NDArray[np.float64]:
        """Expected utility of each aligned pair.

        Args:
            client_ids: client id per pair.
            opportunity_ids: opportunity id per pair.

        Returns:
            float64 score per pair (higher is better); empty for no pairs.
        """
        if len(client_ids) != len(opportunity_ids):
            raise ValueError("client_ids and opportunity_ids must align")
        if len(client_ids) == 0:
            return np.empty(0, dtype=np.float64)
        utility = self.truth.expected_utility(list(client_ids), list(opportunity_ids), self.exclude)
        return np.asarray(utility, dtype=np.float64)

    def rank(self, client_id: str, opportunity_ids: Sequence[str], k: int) -> npt.NDArray[np.intp]:
        """Positions (into ``opportunity_ids``) of the ``k`` best items for one client, best first.

        Args:
            client_id: the client.
            opportunity_ids: candidate items.
            k: how many to return.

        Returns:
            Up to ``k`` positions; ties keep the candidates' order.
        """
        scores = self.score_pairs([client_id] * len(opportunity_ids), opportunity_ids)
        return np.argsort(-scores, kind="stable")[:k].astype(np.intp)
