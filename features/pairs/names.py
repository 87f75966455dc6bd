"""Feature names, column order and the constants the pair features share."""

from __future__ import annotations

from typing import Final

from features.records import KINDS, ROUTES

LANGS: Final[tuple[str, ...]] = ("fi", "sv", "en")
ISCO_DEPTHS: Final[tuple[int, ...]] = (1, 2, 3, 4)
FORMAT: Final = "polku-pair-featurizer"
FORMAT_VERSION: Final = 2
DEFAULT_PRIOR_RATE: Final = 0.3
"""Acceptance prior used before :meth:`PairFeaturizer.fit` has seen any history."""
NO_INTAKE_DAYS: Final = 730.0
"""Days to start reported for an item with no intake left (the ``no_intake`` flag says so too)."""
PRIOR_YEARS_SCALE: Final = 3.0
"""Years of prior work at which occupation experience reaches 1 - 1/e of its full weight."""
RECOGNITION_ORDER: Final[dict[str, int]] = {"none": 0, "pending": 1, "partial": 2, "recognised": 3, "not_needed": 3}
DATE_KEY: Final = 10_000_000  # > any date.toordinal(): item index * _DATE_KEY + ordinal sorts by (item, date)

FEATURE_NAMES: Final[tuple[str, ...]] = (
    # skills
    "ess_cov",
    "ess_cov_any",
    "ess_missing",
    "ess_n",
    "opt_cov",
    "opt_cov_any",
    "opt_n",
    "goal_skill_gain",
    # occupation
    *(f"occ_prior_isco{d}" for d in ISCO_DEPTHS),
    *(f"occ_goal_isco{d}" for d in ISCO_DEPTHS),
    "has_occupation",
    # language, literacy, digital
    *(f"lang_gap_{lang}" for lang in LANGS),
    "lang_gap_best",
    "lang_required",
    "lang_margin_fi",
    "lang_gain_fi",
    "client_fi_level",
    "lang_fi_uncertain",
    "s2_support",
    "lit_gap",
    "lit_gain",
    "digital_gap",
    # education
    "edu_met",
    "edu_gap",
    "isced_gain",
    "recog_required",
    "recog_met",
    "client_recognition",
    # place and time
    "dist_km",
    "dist_ratio",
    "days_to_start",
    "no_intake",
    "continuous",
    "duration_weeks",
    "seats_left",
    "fill_ratio",
    # support
    "support_need",
    "item_support",
    "support_x",
    "support_gap",
    # kind and route, preferences
    *(f"kind_{k}" for k in KINDS),
    *(f"route_{r}" for r in ROUTES),
    "pref_work",
    "pref_education",
    "path_match",
    "pay_subsidy",
    "te_decision",
    # history and client
    "hist_accept_rate",
    "item_history_n",
    "item_accept_effect",
    "item_outcome_effect",
    "age",
    "client_digital",
    "client_literacy",
    "client_isced",
)
"""Stable feature names, in column order."""
COL: Final[dict[str, int]] = {name: i for i, name in enumerate(FEATURE_NAMES)}
ITEM_HISTORY_FEATURES: Final[tuple[str, ...]] = (
    "hist_accept_rate",
    "item_history_n",
    "item_accept_effect",
    "item_outcome_effect",
)
"""Columns learnt from the training period about each item itself (not about the client-item fit).

``item_history_n`` is log(1 + times shown); ``item_accept_effect`` and ``item_outcome_effect`` are the item's
shrunken acceptance and outcome effects (logit units, 0 = the item's route and kind prior) estimated by
``training.item_effects`` and stored in the featurizer (:meth:`PairFeaturizer.set_item_effects`).
"""
