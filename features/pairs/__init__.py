"""Pair features: (client, opportunity) pairs to a float32 matrix, one pipeline for training and serving.

The package is split by role: :mod:`~features.pairs.names` (feature names and shared constants),
:mod:`~features.pairs.encoding` (clients and catalogues in array form), :mod:`~features.pairs.families` (every
feature family, written once over clients x items arrays that broadcast), :mod:`~features.pairs.retrieval` (the
cheap first stage) and :mod:`~features.pairs.featurizer` (:class:`PairFeaturizer`, the scikit-learn transformer).
"""

from features.pairs.encoding import EncodedClients, EncodedItems, PairBatch
from features.pairs.featurizer import PairFeaturizer
from features.pairs.names import (
    DEFAULT_PRIOR_RATE,
    FEATURE_NAMES,
    FORMAT,
    FORMAT_VERSION,
    ISCO_DEPTHS,
    ITEM_HISTORY_FEATURES,
    LANGS,
    NO_INTAKE_DAYS,
    PRIOR_YEARS_SCALE,
)

__all__ = [
    "DEFAULT_PRIOR_RATE",
    "FEATURE_NAMES",
    "FORMAT",
    "FORMAT_VERSION",
    "ISCO_DEPTHS",
    "ITEM_HISTORY_FEATURES",
    "LANGS",
    "NO_INTAKE_DAYS",
    "PRIOR_YEARS_SCALE",
    "EncodedClients",
    "EncodedItems",
    "PairBatch",
    "PairFeaturizer",
]
