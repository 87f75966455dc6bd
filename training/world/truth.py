"""The latent truth of the synthetic world: expected utility of every (client, opportunity) pair.

Utility (in logit-like units) is a fixed, documented function of what a counsellor can observe plus latent parts
no model sees (:data:`DEFAULT_WEIGHTS`, :func:`Truth.components`):

* observable fit: essential/optional skill coverage, goal occupation (ISCO-4, else ISCO-2) and prior-occupation
  match, Finnish (or other required language) shortfall after S2 support, literacy shortfall, travel distance
  and exceeding the client's travel limit, support need above the support the item gives, weeks to the next
  intake, preferred path (work/education), and route need (a language course fits people just below its entry,
  literacy training those without functional literacy, basic skills those with little schooling, the
  rehabilitative module those with high support need, bridging those with higher education);
* latent: per-item quality ``q_i ~ N(0, 1)`` and client×item affinity ``u_c·v_i/√d`` with ``u, v ~ N(0, I_d)``,
  both drawn from ``(seed, crc32(id))`` so they depend on ids only.

Audit attributes (gender, mother tongue, country) are never an input. Relevance is the utility cut at
:data:`RELEVANCE_THRESHOLDS` into grades 0..4. Observed outcomes in the history are noisy draws around this
utility (:mod:`training.world.history`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import sparse

from features.language import level_ordinal
from features.records import KINDS, LITERACY_LEVELS, ROUTES, SUPPORT_LEVELS, ClientProfile, Opportunity
from features.taxonomy import Taxonomy, default_taxonomy

LATENT_DIM: Final = 4
RELEVANCE_THRESHOLDS: Final[tuple[float, ...]] = (-0.25, 0.5, 1.25, 2.0)
DEFAULT_WEIGHTS: Final[dict[str, float]] = {
    "quality": 0.45,
    "affinity": 0.45,
    "ess_cov": 1.5,
    "opt_cov": 0.5,
    "goal_isco4": 1.2,
    "goal_isco2": 0.4,
    "prior_isco4": 0.5,
    "lang_gap": -0.55,
    "literacy_gap": -0.8,
    "dist_km": -0.025,
    "too_far": -1.0,
    "support_gap": -0.5,
    "wait_weeks": -0.04,
    "path_match": 0.4,
    "route_need": 1.0,
    "kind_vacancy": -0.3,
    "kind_work_trial": 0.0,
    "kind_training": 0.2,
}
_LANGS: Final = ("fi", "sv", "en")
_S2_OFFSET: Final = 2
_FAR_FUTURE: Final = 10**7
_DATE_ROW: Final = 4 * _FAR_FUTURE  # key stride per item row in the intake-date search


def _latent(seed: int, ids: Sequence[str], salt: int, dim: int) -> npt.NDArray[np.float64]:
    out = np.empty((len(ids), dim), dtype=np.float64)
    for k, ident in enumerate(ids):
        out[k] = np.random.default_rng([seed, salt, zlib.crc32(ident.encode())]).standard_normal(dim)
    return out


def _csr(rows: Sequence[Sequence[int]], n_cols: int) -> sparse.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.fromiter((j for r in rows for j in r), dtype=np.int64, count=int(indptr[-1]))
    data = np.ones(len(indices), dtype=np.float32)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(rows), n_cols))


def _dense(rows: Sequence[Sequence[int]], n_cols: int) -> npt.NDArray[np.bool_]:
    out = np.zeros((len(rows), max(n_cols, 1)), dtype=bool)
    row_of = np.fromiter((k for k, r in enumerate(rows) for _ in r), dtype=np.int64)
    col = np.fromiter((j for r in rows for j in r), dtype=np.int64, count=len(row_of))
    out[row_of, col] = True
    return out


def _rowwise_overlap(a: sparse.csr_matrix, b: sparse.csr_matrix) -> npt.NDArray[np.float64]:
    return np.asarray(a.multiply(b).sum(axis=1), dtype=np.float64).ravel()


class Truth:
    """Noise-free expected utility and graded relevance of (client, opportunity) pairs.

    Args:
        clients: the world's clients (audit attributes are not accepted).
        opportunities: the catalogue.
        cohort_of: client id -> cohort year (reference date = 1 September of that year).
        seed: seed of the latent parts.
        weights: utility weights (default :data:`DEFAULT_WEIGHTS`).
        taxonomy: taxonomy for distances (default: the shipped one).
    """

    def __init__(
        self,
        clients: Sequence[ClientProfile],
        opportunities: Sequence[Opportunity],
        cohort_of: Mapping[str, int],
        *,
        seed: int,
        weights: Mapping[str, float] | None = None,
        taxonomy: Taxonomy | None = None,
    ) -> None:
        self.seed = int(seed)
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        self.thresholds = RELEVANCE_THRESHOLDS
        tax = taxonomy or default_taxonomy()
        self.taxonomy = tax
        self.client_ids = [c.client_id for c in clients]
        self.opportunity_ids = [o.opportunity_id for o in opportunities]
        self.client_pos = {cid: i for i, cid in enumerate(self.client_ids)}
        self.opportunity_pos = {oid: i for i, oid in enumerate(self.opportunity_ids)}
        self.item_quality = _latent(self.seed, self.opportunity_ids, 1, 1)[:, 0]
        self.client_factors = _latent(self.seed, self.client_ids, 2, LATENT_DIM)
        self.item_factors = _latent(self.seed, self.opportunity_ids, 3, LATENT_DIM)
        self._encode(clients, opportunities, cohort_of, tax)

    # -- encoding -----------------------------------------------------------------------------------------------
    def _encode(
        self,
        clients: Sequence[ClientProfile],
        opps: Sequence[Opportunity],
        cohort_of: Mapping[str, int],
        tax: Taxonomy,
    ) -> None:
        sidx = tax.skill_index
        n_sk = len(sidx)
        self._c_skills = _csr([[sidx[s.uri] for s in c.skills] for c in clients], n_sk)
        self._i_ess = _csr([[sidx[u] for u in o.required_skills.essential] for o in opps], n_sk)
        self._i_opt = _csr([[sidx[u] for u in o.required_skills.optional] for o in opps], n_sk)
        self._n_ess = np.asarray(self._i_ess.sum(axis=1)).ravel()
        self._n_opt = np.asarray(self._i_opt.sum(axis=1)).ravel()
        isco4 = sorted(
            {o.occupation.isco for o in opps if o.occupation and o.occupation.isco}
            | {g.isco for c in clients for g in c.goals.target_occupations if g.isco}
            | {p.occupation.isco for c in clients for p in c.prior_occupations if p.occupation.isco}
        )
        isco2 = sorted({c[:2] for c in isco4})
        p4 = {c: i for i, c in enumerate(isco4)}
        p2 = {c: i for i, c in enumerate(isco2)}
        self._c_goal4 = _dense(
            [[p4[g.isco] for g in c.goals.target_occupations if g.isco in p4] for c in clients], len(isco4)
        )
        self._c_goal2 = _dense(
            [sorted({p2[g.isco[:2]] for g in c.goals.target_occupations if g.isco}) for c in clients], len(isco2)
        )
        self._c_prior4 = _dense(
            [sorted({p4[p.occupation.isco] for p in c.prior_occupations if p.occupation.isco in p4}) for c in clients],
            len(isco4),
        )
        occ = [o.occupation.isco if o.occupation and o.occupation.isco else None for o in opps]
        self._i_isco4 = np.array([p4[c] if c in p4 else -1 for c in occ], dtype=np.int64)
        self._i_isco2 = np.array([p2[c[:2]] if c else -1 for c in occ], dtype=np.int64)
        # client scalars
        self._c_lang = np.array([[c.language_ordinal(lang) for lang in _LANGS] for c in clients], dtype=np.int64)
        self._c_lit = np.array([LITERACY_LEVELS.index(c.literacy) for c in clients], dtype=np.int64)
        self._c_isced = np.array([c.highest_isced for c in clients], dtype=np.int64)
        self._c_digital = np.array([c.digital_skills for c in clients], dtype=np.int64)
        self._c_support = np.array([SUPPORT_LEVELS.index(c.support_need) for c in clients], dtype=np.int64)
        self._c_age = np.array([c.age for c in clients], dtype=np.int64)
        paths = ("work", "education", "either")
        self._c_path = np.array([paths.index(c.goals.preferred_path) for c in clients], dtype=np.int64)
        self._c_travel = np.array([c.constraints.max_travel_km for c in clients], dtype=np.float64)
        refs = [date(int(cohort_of[c.client_id]), 9, 1) for c in clients]
        starts = [max(r, c.goals.earliest_start or r) for r, c in zip(refs, clients, strict=True)]
        self._c_start = np.array([d.toordinal() for d in starts], dtype=np.int64)
        muns = sorted({c.constraints.municipality for c in clients} | {o.municipality for o in opps})
        mpos = {m: i for i, m in enumerate(muns)}
        self._dist = tax.distance_matrix(muns, muns).astype(np.float64)
        self._c_mun = np.array([mpos[c.constraints.municipality] for c in clients], dtype=np.int64)
        # item scalars
        self._i_mun = np.array([mpos[o.municipality] for o in opps], dtype=np.int64)
        self._i_kind = np.array([KINDS.index(o.kind) for o in opps], dtype=np.int64)
        self._i_route = np.array([ROUTES.index(o.route) if o.route else -1 for o in opps], dtype=np.int64)
        self._i_lang = np.array(
            [[level_ordinal(o.min_language[lang]) if lang in o.min_language else 0 for lang in _LANGS] for o in opps],
            dtype=np.int64,
        ).reshape(len(opps), len(_LANGS))
        self._i_s2 = np.array([o.s2_support for o in opps], dtype=bool)
        self._i_lit = np.array([LITERACY_LEVELS.index(o.min_literacy) for o in opps], dtype=np.int64)
        self._i_support = np.array([SUPPORT_LEVELS.index(o.support_level) for o in opps], dtype=np.int64)
        self._i_lit_reached = np.array(
            [
                LITERACY_LEVELS.index(o.completion.literacy_reached) if o.completion.literacy_reached else -1
                for o in opps
            ],
            dtype=np.int64,
        )
        self._i_fi_reached = np.array(
            [
                level_ordinal(o.completion.language_reached["fi"]) if "fi" in o.completion.language_reached else -1
                for o in opps
            ],
            dtype=np.int64,
        )
        n_dates = max([len(o.intake.dates) for o in opps] + [1])
        dates = np.full((len(opps), n_dates + 1), _FAR_FUTURE, dtype=np.int64)  # >= 1 padding column per row
        for i, o in enumerate(opps):
            if o.intake.continuous:
                dates[i, 0] = -_FAR_FUTURE
            else:
                dates[i, : len(o.intake.dates)] = sorted(d.toordinal() for d in o.intake.dates)
        self._i_continuous = dates[:, 0] == -_FAR_FUTURE
        # Row-offset keys: a pair's next intake is one searchsorted over all rows (rows sorted, padded with
        # _FAR_FUTURE, so the first key >= (row, start) always lies in the pair's own row).
        self._date_keys = (np.arange(len(opps), dtype=np.int64)[:, None] * _DATE_ROW + dates).ravel()
        self._date_values = dates.ravel()

    # -- client columns shared with the history simulation ---------------------------------------------------------
    @property
    def client_age(self) -> npt.NDArray[np.int64]:
        """Age per client (positions as in ``client_ids``)."""
        return self._c_age

    @property
    def client_language(self) -> npt.NDArray[np.int64]:
        """Language ordinals per client, columns fi, sv, en (``ClientProfile.language_ordinal``)."""
        return self._c_lang

    @property
    def client_literacy(self) -> npt.NDArray[np.int64]:
        """Literacy index per client (into ``LITERACY_LEVELS``)."""
        return self._c_lit

    @property
    def client_isced(self) -> npt.NDArray[np.int64]:
        """Highest ISCED level per client."""
        return self._c_isced

    @property
    def client_travel(self) -> npt.NDArray[np.float64]:
        """Maximum travel distance (km) per client."""
        return self._c_travel

    # -- utility ------------------------------------------------------------------------------------------------
    def _positions(
        self, client_ids: Sequence[str], opportunity_ids: Sequence[str]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        if len(client_ids) != len(opportunity_ids):
            raise ValueError(
                f"pairs must align: {len(client_ids)} client ids vs {len(opportunity_ids)} opportunity ids"
            )
        try:
            c = np.fromiter((self.client_pos[x] for x in client_ids), dtype=np.int64, count=len(client_ids))
            i = np.fromiter(
                (self.opportunity_pos[x] for x in opportunity_ids), dtype=np.int64, count=len(opportunity_ids)
            )
        except KeyError as e:
            raise KeyError(f"unknown id {e.args[0]!r} in this world's truth") from None
        return c, i

    def components(self, c: npt.NDArray[np.int64], i: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[np.float64]]:
        """Unweighted utility terms for aligned position arrays (client positions, item positions)."""
        ess = _rowwise_overlap(self._c_skills[c], self._i_ess[i])
        opt = _rowwise_overlap(self._c_skills[c], self._i_opt[i])
        kind, route = self._i_kind[i], self._i_route[i]
        path = self._c_path[c]
        is_job = kind != KINDS.index("training")
        path_match = np.where(path == 2, 0.5, np.where(is_job, path == 0, path == 1).astype(np.float64))
        start = self._c_start[c]
        wait_days = self._date_values[np.searchsorted(self._date_keys, i * _DATE_ROW + start, side="left")]
        wait = np.where(self._i_continuous[i], 0.0, np.minimum((wait_days - start) / 7.0, 52.0))
        fit = self.fit_terms(c, i, ess, opt)
        dist = fit["dist_km"]
        # Key order is the summation order of utility_at (kept fixed so that utilities stay bit-identical).
        return {
            "quality": self.item_quality[i],
            "affinity": np.einsum("nd,nd->n", self.client_factors[c], self.item_factors[i]) / np.sqrt(LATENT_DIM),
            **{k: fit[k] for k in ("ess_cov", "opt_cov", "goal_isco4", "goal_isco2", "prior_isco4", "lang_gap")},
            "literacy_gap": np.clip(self._i_lit[i] - self._c_lit[c], 0, None).astype(np.float64),
            "dist_km": dist,
            "too_far": (dist > self._c_travel[c]).astype(np.float64),
            "support_gap": np.clip(self._c_support[c] - self._i_support[i], 0, None).astype(np.float64),
            "wait_weeks": wait,
            "path_match": path_match,
            "route_need": self._route_need(c, i, route),
            "kind_vacancy": (kind == KINDS.index("vacancy")).astype(np.float64),
            "kind_work_trial": (kind == KINDS.index("work_trial")).astype(np.float64),
            "kind_training": (kind == KINDS.index("training")).astype(np.float64),
        }

    def fit_terms(
        self,
        c: npt.NDArray[np.int64],
        i: npt.NDArray[np.int64],
        ess: npt.NDArray[np.float64],
        opt: npt.NDArray[np.float64],
    ) -> dict[str, npt.NDArray[np.float64]]:
        """The observable-fit terms a counsellor also sees (skills, occupations, language gap, distance).

        ``c`` and ``i`` are position arrays that broadcast against each other (aligned pairs, or a
        ``(clients, 1)`` column against a ``(1, items)`` row for a dense block); ``ess``/``opt`` are the
        numbers of the item's essential/optional skills the client has, in the broadcast shape.
        """
        n_ess, n_opt = self._n_ess[i], self._n_opt[i]
        has4 = self._i_isco4[i] >= 0
        goal4 = np.where(has4, self._c_goal4[c, np.maximum(self._i_isco4[i], 0)], 0)
        has2 = self._i_isco2[i] >= 0
        goal2 = np.where(has2, self._c_goal2[c, np.maximum(self._i_isco2[i], 0)], 0)
        prior4 = np.where(has4, self._c_prior4[c, np.maximum(self._i_isco4[i], 0)], 0)
        need = self._i_lang[i] - self._c_lang[c] - np.where(self._i_s2[i], _S2_OFFSET, 0)[..., None]
        required = self._i_lang[i] > 0
        gap = np.where(required, np.clip(need, 0, None), 99).min(axis=-1)
        gap = np.where(required.any(axis=-1), gap, 0)
        return {
            "ess_cov": np.where(n_ess > 0, ess / np.maximum(n_ess, 1), 0.0),
            "opt_cov": np.where(n_opt > 0, opt / np.maximum(n_opt, 1), 0.0),
            "goal_isco4": goal4.astype(np.float64),
            "goal_isco2": ((goal2 > 0) & (goal4 == 0)).astype(np.float64),
            "prior_isco4": (prior4 > 0).astype(np.float64),
            "lang_gap": gap.astype(np.float64),
            "dist_km": self._dist[self._c_mun[c], self._i_mun[i]],
        }

    def skill_overlap_block(
        self, rows: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Dense ``(len(rows), len(items))`` counts of shared essential and optional skills."""
        cs = self._c_skills[rows]
        ess = (cs @ self._i_ess[items].T).toarray().astype(np.float64)
        opt = (cs @ self._i_opt[items].T).toarray().astype(np.float64)
        return ess, opt

    def _route_need(
        self, c: npt.NDArray[np.int64], i: npt.NDArray[np.int64], route: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        fi = self._c_lang[c, 0]
        entry = self._i_lang[i, 0]
        lit, isced, support = self._c_lit[c], self._c_isced[c], self._c_support[c]
        r = {name: route == ROUTES.index(name) for name in ROUTES}
        need = np.zeros(len(c), dtype=np.float64)
        lang_fit = np.clip(1.0 - np.abs(fi - entry) / 2.0, 0.0, 1.0) * (fi < self._i_fi_reached[i])
        need += r["language"] * lang_fit
        need += r["literacy"] * (lit < self._i_lit_reached[i]) * 1.2
        need += r["basic_skills"] * (0.8 * (isced < 2) + 0.4 * (self._c_digital[c] < 2) + 0.4 * (lit < 2))
        need += r["preparatory"] * 0.6 * (self._c_age[c] < 30) * (isced < 3)
        need += r["degree"] * 0.6 * (isced < 3)
        need += r["apprenticeship"] * 0.6 * (isced < 3)
        need += r["rehabilitative"] * (1.0 * (support == 2) - 0.5 * (support == 0))
        need += r["higher_education_bridge"] * 0.8 * (isced >= 6)
        job = self._i_kind[i] == KINDS.index("vacancy")
        need -= job * 0.8 * (support == 2)
        return need

    def utility_at(
        self, c: npt.NDArray[np.int64], i: npt.NDArray[np.int64], exclude: Sequence[str] = ()
    ) -> npt.NDArray[np.float64]:
        """Expected utility for aligned position arrays, optionally without some terms (e.g. the latent ones)."""
        comps = self.components(np.asarray(c, dtype=np.int64), np.asarray(i, dtype=np.int64))
        unknown = sorted(set(exclude) - set(comps))
        if unknown:
            raise ValueError(f"exclude: unknown utility term(s) {', '.join(unknown)}")
        total = np.zeros(len(c), dtype=np.float64)
        for name, value in comps.items():
            if name not in exclude:
                total += self.weights[name] * value
        return total

    def expected_utility(
        self, client_ids: Sequence[str], opportunity_ids: Sequence[str], exclude: Sequence[str] = ()
    ) -> npt.NDArray[np.float64]:
        """Noise-free expected utility of aligned (client, opportunity) pairs (evaluation only, never a feature).

        ``exclude`` leaves terms out: ``("quality", "affinity")`` gives the best use of what a model can observe
        (the *observable ceiling*), ``("affinity",)`` that plus a perfect estimate of each item's quality.
        """
        c, i = self._positions(client_ids, opportunity_ids)
        return self.utility_at(c, i, exclude)

    def relevance_of(self, utility: npt.NDArray[np.float64]) -> npt.NDArray[np.int8]:
        """Graded relevance 0..4 of utilities, cut at :data:`RELEVANCE_THRESHOLDS`."""
        return np.searchsorted(np.asarray(self.thresholds), utility, side="right").astype(np.int8)

    def relevance(self, client_ids: Sequence[str], opportunity_ids: Sequence[str]) -> npt.NDArray[np.int8]:
        """Graded relevance 0..4 of aligned (client, opportunity) pairs."""
        return self.relevance_of(self.expected_utility(client_ids, opportunity_ids))

    # -- persistence --------------------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """JSON-safe parameters (seed, weights, thresholds, latent dimension)."""
        return {
            "seed": self.seed,
            "weights": self.weights,
            "relevance_thresholds": list(self.thresholds),
            "latent_dim": LATENT_DIM,
            "client_ids": self.client_ids,
            "opportunity_ids": self.opportunity_ids,
        }

    def latent_arrays(self) -> dict[str, npt.NDArray[np.float64]]:
        """The latent parts (for the .npz file; they are re-derived from ids and seed on load and checked)."""
        return {
            "item_quality": self.item_quality,
            "client_factors": self.client_factors,
            "item_factors": self.item_factors,
        }
