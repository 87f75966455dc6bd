"""Multi-step paths to a goal occupation: beam search over trainings whose completion changes the client's state.

A path is a chain such as Finnish A2 course → vocational workshop → apprenticeship → vacancy. Each step must be
eligible (:mod:`features.eligibility`) for the client *as the earlier steps leave them* (skills gained, language
reached, literacy, digital level, education) and must start on an intake on or after the previous step's end.
Paths end at a vacancy or work trial whose ISCO-08 group matches a goal; they are ranked by the model's score of
that last step (min-max normalised over the candidates) minus a time penalty per year to the goal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from features.eligibility import EligibilityEvaluator
from features.pairs import EncodedClients
from features.records import (
    ClientProfile,
    OccupationRef,
    Opportunity,
)
from models.completion import apply_completion, completion_gains
from models.package import PolkuModel

TERMINAL_KINDS: Final = ("vacancy", "work_trial")
EXPANSIONS_PER_NODE: Final = 6
TIME_WEIGHT_PER_YEAR: Final = 0.5
USEFUL_SHORTLIST: Final = 100  # trainings scored per beam node (chosen by their gain bonus first)
NODE_VALUE_SHORTLIST: Final = 30  # goal items scored to value a beam node (chosen by the first stage)


@dataclass(frozen=True)
class Step:
    """One step of a path.

    Attributes:
        opportunity_id: the catalogue item.
        kind: training, work_trial or vacancy.
        route: the training route (None for other kinds).
        title: the item's title (Finnish; the service localises).
        start: first possible start given the earlier steps.
        end: start + duration.
        weeks: duration in weeks.
        gains: what completing the step gives (``skills``, ``language``, ``literacy``, ``digital``, ``isced``,
            ``qualification``), empty for the final step.
    """

    opportunity_id: str
    kind: str
    route: str | None
    title: str
    start: date
    end: date
    weeks: float
    gains: dict[str, Any] = field(default_factory=dict)

    @property
    def gives(self) -> list[str]:
        """What the step gives as short codes: ``language:fi:B1.1``, ``skills:12``, ``isced:3``, ..."""
        out: list[str] = []
        for key, value in self.gains.items():
            if key == "language":
                out.extend(f"language:{lang}:{level}" for lang, level in value.items())
            elif key == "skills":
                out.append(f"skills:{len(value)}")
            else:
                out.append(f"{key}:{value}")
        return out


@dataclass(frozen=True)
class Path:
    """A feasible chain of steps ending in a goal occupation.

    Attributes:
        steps: in order; the last is the vacancy or work trial.
        goal_isco: the matched goal ISCO-08 code.
        score: model score of the last step for the client as the earlier steps leave them.
        weeks_to_goal: weeks from the reference date to the start of the last step.
        rank_value: ``normalised score - 0.5 × years to goal`` (what paths are sorted by).
    """

    steps: list[Step]
    goal_isco: str
    score: float
    weeks_to_goal: float
    rank_value: float = 0.0

    @property
    def goal(self) -> str:
        """The matched goal ISCO-08 code (alias of ``goal_isco``)."""
        return self.goal_isco

    @property
    def end(self) -> date:
        """Start of the final step (when the goal is reached)."""
        return self.steps[-1].start


@dataclass(frozen=True)
class _Node:
    state: ClientProfile
    time: date
    steps: tuple[Step, ...]
    used: frozenset[int]
    value: float
    key: tuple[int, ...] = ()  # completion groups applied so far: equal keys mean equal states


_Request = tuple[tuple[int, ...], ClientProfile, "npt.NDArray[np.int64]", date]


class _Run:
    """Caches of one ``plan`` call, keyed by state key (see :class:`_Node`)."""

    def __init__(self) -> None:
        self.scores: dict[tuple[Any, ...], npt.NDArray[np.float64]] = {}
        self.values: dict[tuple[tuple[int, ...], date], float] = {}
        self._encoded: dict[tuple[int, ...], EncodedClients] = {}
        self._gains: dict[tuple[tuple[int, ...], int], dict[str, Any]] = {}
        self._applied: dict[tuple[tuple[int, ...], int], tuple[ClientProfile, dict[str, Any]]] = {}

    def encoded(self, planner: PathPlanner, key: tuple[int, ...], state: ClientProfile) -> EncodedClients:
        """The state encoded for the model (once per state)."""
        enc = self._encoded.get(key)
        if enc is None:
            enc = self._encoded[key] = planner.model.encode_client(state)
        return enc

    def gains(self, planner: PathPlanner, node: _Node, group: int) -> dict[str, Any]:
        """What completing a training of completion group ``group`` gives the node's state."""
        cache_key = (node.key, group)
        gains = self._gains.get(cache_key)
        if gains is None:
            gains = self._gains[cache_key] = completion_gains(node.state, planner.catalogue[planner._group_rep[group]])
        return gains

    def applied(self, planner: PathPlanner, node: _Node, group: int) -> tuple[ClientProfile, dict[str, Any]]:
        """The node's state after completing a training of completion group ``group``, and the gains."""
        cache_key = (node.key, group)
        hit = self._applied.get(cache_key)
        if hit is None:
            hit = self._applied[cache_key] = apply_completion(node.state, planner.catalogue[planner._group_rep[group]])
        return hit


def _goal_codes(client: ClientProfile, goals: Sequence[str | OccupationRef] | None) -> list[str]:
    if goals:
        codes = [g if isinstance(g, str) else (g.isco or "") for g in goals]
        return [g for g in dict.fromkeys(codes) if g]
    own = [g.isco for g in client.goals.target_occupations if g.isco]
    if not own:
        own = [p.occupation.isco for p in client.prior_occupations if p.occupation.isco]
    return list(dict.fromkeys(c for c in own if c))


class PathPlanner:
    """Plans multi-step paths over one catalogue with one model.

    Args:
        catalogue: all opportunities (the planner applies eligibility itself).
        model: scores steps and final items.
        expansions_per_node: trainings tried from each beam node (the most useful first).
    """

    def __init__(
        self,
        catalogue: Sequence[Opportunity],
        model: PolkuModel,
        *,
        expansions_per_node: int = EXPANSIONS_PER_NODE,
    ) -> None:
        self.catalogue = tuple(catalogue)
        self.model = model
        self.expansions_per_node = expansions_per_node
        self.evaluator = EligibilityEvaluator(self.catalogue)
        self.items = model.encode_items(self.catalogue)
        self._isco = [
            (o.occupation.isco or "") if o.occupation is not None and o.kind in TERMINAL_KINDS else ""
            for o in self.catalogue
        ]
        self._isco_array = np.array(self._isco, dtype=np.str_)
        self._terminal = np.array([o.kind in TERMINAL_KINDS for o in self.catalogue], dtype=bool)
        self._training = np.array([o.kind == "training" for o in self.catalogue], dtype=bool)
        # Trainings with identical completions change a state identically: their gains are computed once.
        groups: dict[tuple[Any, ...], int] = {}
        self._completion_group = np.full(len(self.catalogue), -1, dtype=np.int64)
        self._group_rep: list[int] = []
        for i, o in enumerate(self.catalogue):
            if o.kind != "training":
                continue
            c = o.completion
            key = (
                tuple(c.skills_gained),
                tuple(sorted(c.language_reached.items())),
                c.literacy_reached,
                c.digital_reached,
                c.isced_reached,
                c.qualification,
            )
            if key not in groups:
                groups[key] = len(self._group_rep)
                self._group_rep.append(i)
            self._completion_group[i] = groups[key]

    def _goal_mask(self, goals: Sequence[str]) -> npt.NDArray[np.bool_]:
        """Terminal items whose ISCO-08 code starts with one of ``goals`` (vectorised over the catalogue)."""
        mask = np.zeros(len(self._isco), dtype=bool)
        for goal in goals:
            mask |= np.strings.startswith(self._isco_array, goal)
        return mask & (self._isco_array != "")

    def _step(self, item: Opportunity, earliest: date, gains: dict[str, Any]) -> Step | None:
        start = item.intake.next_start(earliest)
        if start is None:
            return None
        end = start + timedelta(weeks=item.duration_weeks)
        return Step(item.opportunity_id, item.kind, item.route, item.title.fi, start, end, item.duration_weeks, gains)

    def _useful(
        self, run: _Run, nodes: Sequence[_Node], eligible: Sequence[npt.NDArray[np.bool_]], goal_skills: set[str]
    ) -> list[list[int]]:
        """Per node: eligible trainings that change the state, the most promising first (scored in one batch)."""
        shortlists: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
        requests: list[_Request] = []
        for node, ok in zip(nodes, eligible, strict=True):
            cand, bonus = self._useful_candidates(run, node, ok, goal_skills)
            shortlists.append((cand, bonus))
            if cand.size:
                requests.append((node.key, node.state, cand, node.time))
        scored = iter(self._score_batch(run, requests))
        out: list[list[int]] = []
        for cand, bonus in shortlists:
            if cand.size == 0:
                out.append([])
                continue
            scores = next(scored)
            spread = float(scores.max() - scores.min()) or 1.0
            value = bonus + (scores - scores.min()) / spread
            order = np.argsort(-value, kind="stable")[: self.expansions_per_node]
            out.append([int(i) for i in cand[order]])
        return out

    def _useful_candidates(
        self, run: _Run, node: _Node, eligible: npt.NDArray[np.bool_], goal_skills: set[str]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Eligible, unused trainings whose completion changes the state, and their gain bonus (shortlisted)."""
        mask = eligible & self._training
        if node.used:
            mask[list(node.used)] = False
        cand = np.flatnonzero(mask)
        if cand.size == 0:
            return cand, np.zeros(0, dtype=np.float64)
        owned = {s.uri for s in node.state.skills}
        groups, inverse = np.unique(self._completion_group[cand], return_inverse=True)
        group_bonus = np.zeros(groups.size, dtype=np.float64)
        group_keep = np.zeros(groups.size, dtype=bool)
        for g, group in enumerate(groups):
            gains = run.gains(self, node, int(group))
            if not gains or set(gains) <= {"qualification"}:
                continue
            group_keep[g] = True
            new = set(gains.get("skills", ())) - owned
            gain = len(new & goal_skills) + 2.0 * len(gains.get("language", {})) + ("isced" in gains)
            group_bonus[g] = gain + 1.0 * ("literacy" in gains) + 0.5 * ("digital" in gains)
        keep = group_keep[inverse]
        cand, bonus = cand[keep], group_bonus[inverse][keep]
        if cand.size > USEFUL_SHORTLIST:
            # The score adds at most 1 to the bonus: the best bonuses are the only contenders worth scoring.
            best = np.argsort(-bonus, kind="stable")[:USEFUL_SHORTLIST]
            cand, bonus = cand[best], bonus[best]
        return cand, bonus

    def plan(
        self,
        client: ClientProfile,
        reference_date: date,
        goals: Sequence[str | OccupationRef] | None = None,
        max_steps: int = 4,
        n_paths: int = 3,
        beam: int = 20,
    ) -> list[Path]:
        """Up to ``n_paths`` feasible paths from the client's state to a goal occupation.

        Each depth scores all its model calls (final items, trainings to expand, values of the new states) in one
        batch per kind; states reached twice (same trainings' completions from the same start) are encoded,
        evaluated and scored once.

        Args:
            client: the client now.
            reference_date: today (the earliest start of the first step).
            goals: ISCO-08 codes (1–4 digits, prefix match) or occupation refs; default the client's goal
                occupations, else their prior occupations.
            max_steps: most steps per path, the final vacancy or work trial included.
            n_paths: how many paths to return (distinct final items first).
            beam: beam width (partial paths kept per depth).

        Returns:
            Paths best first (empty when no goal is known or none is reachable).
        """
        goal_codes = _goal_codes(client, goals)
        if not goal_codes or max_steps <= 0:
            return []
        goal_mask = self._goal_mask(goal_codes) & self._terminal
        if not goal_mask.any():
            return []
        goal_idx = np.flatnonzero(goal_mask)
        goal_skills = {u for i in goal_idx for u in self.catalogue[i].required_skills.essential}
        earliest = max(reference_date, client.goals.earliest_start or reference_date)
        run = _Run()
        frontier = [_Node(client, earliest, (), frozenset(), 0.0)]
        finished: list[Path] = []
        seen: set[frozenset[int]] = set()
        for depth in range(max_steps):
            eligible = list(
                self.evaluator.reason_codes_of([n.state for n in frontier], [n.time for n in frontier]) == 0
            )
            finished.extend(
                self._finish(run, frontier, [ok & goal_mask for ok in eligible], goal_codes, reference_date)
            )
            if depth == max_steps - 1:
                break
            pending: list[tuple[_Node, ClientProfile, Step, frozenset[int], tuple[int, ...]]] = []
            for node, useful in zip(frontier, self._useful(run, frontier, eligible, goal_skills), strict=True):
                for i in useful:
                    group = int(self._completion_group[i])
                    state, gains = run.applied(self, node, group)
                    step = self._step(self.catalogue[i], node.time, dict(gains))
                    used = node.used | {i}
                    if step is None or used in seen:
                        continue
                    seen.add(used)
                    pending.append((node, state, step, used, (*node.key, group)))
            values = self._node_values(run, [(key, state, step.end) for _, state, step, _, key in pending], goal_idx)
            children = [
                _Node(state, step.end, (*node.steps, step), used, value, key)
                for (node, state, step, used, key), value in zip(pending, values, strict=True)
            ]
            children.sort(key=lambda n: (-n.value, n.time))
            frontier = children[:beam]
            if not frontier:
                break
        return self._select(finished, n_paths)

    def _score_batch(self, run: _Run, requests: Sequence[_Request]) -> list[npt.NDArray[np.float64]]:
        """Model scores of each (state, items, date) request; one ranker call for all that are not cached.

        Equal to ``model.score`` per request: the featurizer builds each request's rows and the ranker scores rows
        independently.
        """
        out: list[npt.NDArray[np.float64] | None] = [None] * len(requests)
        blocks: list[npt.NDArray[np.float32]] = []
        todo: dict[tuple[Any, ...], list[int]] = {}
        for r, (key, state, idx, on) in enumerate(requests):
            cache_key = (key, on, idx.tobytes())
            hit = run.scores.get(cache_key)
            if hit is not None:
                out[r] = hit
            elif cache_key in todo:
                todo[cache_key].append(r)
            else:
                todo[cache_key] = [r]
                blocks.append(self.model.features(run.encoded(self, key, state), self.items, idx, on))
        if blocks:
            scores = self.model.score_rows(np.vstack(blocks))
            start = 0
            for cache_key, rows in todo.items():
                n = requests[rows[0]][2].size
                part = np.asarray(scores[start : start + n], dtype=np.float64)
                start += n
                run.scores[cache_key] = part
                for r in rows:
                    out[r] = part
        return [o if o is not None else np.zeros(0, dtype=np.float64) for o in out]

    def _shortlist(
        self,
        run: _Run,
        key: tuple[int, ...],
        state: ClientProfile,
        idx: npt.NDArray[np.int64],
        limit: int | None = None,
    ) -> npt.NDArray[np.int64]:
        """For long lists, the first stage's best ``first_stage_k`` (as in serving)."""
        k = self.model.first_stage_k if limit is None else min(limit, self.model.first_stage_k or limit)
        if k > 0 and idx.size > k:
            enc = run.encoded(self, key, state)
            idx = self.model.first_stage(enc, self.items, idx, k)
        return idx

    def _node_values(
        self, run: _Run, states: Sequence[tuple[tuple[int, ...], ClientProfile, date]], goal_idx: npt.NDArray[np.int64]
    ) -> list[float]:
        """How close each state is to a goal: log(1 + goal items eligible) plus tanh of the best one's score."""
        values: list[float] = [-1.0] * len(states)
        todo: list[tuple[int, int]] = []
        requests: list[_Request] = []
        fresh = [r for r, (key, _, on) in enumerate(states) if (key, on) not in run.values]
        codes = dict(
            zip(
                fresh,
                self.evaluator.reason_codes_of([states[r][1] for r in fresh], [states[r][2] for r in fresh], goal_idx)
                if fresh
                else [],
                strict=True,
            )
        )
        for r, (key, state, on) in enumerate(states):
            cached = run.values.get((key, on))
            if cached is not None:
                values[r] = cached
                continue
            reachable = goal_idx[codes[r] == 0]
            if reachable.size == 0:
                run.values[(key, on)] = -1.0
                continue
            todo.append((r, reachable.size))
            requests.append((key, state, self._shortlist(run, key, state, reachable, NODE_VALUE_SHORTLIST), on))
        for (r, n_reachable), scores in zip(todo, self._score_batch(run, requests), strict=True):
            key, _, on = states[r]
            values[r] = run.values[(key, on)] = float(np.log1p(n_reachable) + np.tanh(scores.max()))
        return values

    def _finish(
        self,
        run: _Run,
        nodes: Sequence[_Node],
        reachable: Sequence[npt.NDArray[np.bool_]],
        goals: Sequence[str],
        reference_date: date,
    ) -> list[Path]:
        """The best few final items of each partial path, as complete paths (nodes in order)."""
        todo: list[tuple[_Node, npt.NDArray[np.int64]]] = []
        for node, ok in zip(nodes, reachable, strict=True):
            idx = np.flatnonzero(ok)
            if idx.size:
                todo.append((node, self._shortlist(run, node.key, node.state, idx)))
        scored = self._score_batch(run, [(node.key, node.state, idx, node.time) for node, idx in todo])
        paths = []
        for (node, idx), scores in zip(todo, scored, strict=True):
            order = np.argsort(-scores, kind="stable")[:3]  # the best few final items of each partial path
            for j in order:
                item = self.catalogue[int(idx[j])]
                step = self._step(item, node.time, {})
                if step is None:
                    continue
                isco = self._isco[int(idx[j])]
                goal = next((g for g in goals if isco.startswith(g)), isco)
                weeks = (step.start - reference_date).days / 7.0
                paths.append(Path([*node.steps, step], goal, float(scores[j]), weeks))
        return paths

    @staticmethod
    def _select(paths: list[Path], n_paths: int) -> list[Path]:
        if not paths:
            return []
        scores = np.array([p.score for p in paths])
        spread = float(scores.max() - scores.min()) or 1.0
        ranked = [
            Path(
                p.steps,
                p.goal_isco,
                p.score,
                p.weeks_to_goal,
                (p.score - scores.min()) / spread - TIME_WEIGHT_PER_YEAR * p.weeks_to_goal / 52.0,
            )
            for p in paths
        ]
        ranked.sort(key=lambda p: (-p.rank_value, p.weeks_to_goal, len(p.steps)))
        chosen: list[Path] = []
        seen_keys: set[tuple[str, ...]] = set()
        finals: set[str] = set()
        for distinct_final in (True, False):
            for p in ranked:
                key = tuple(s.opportunity_id for s in p.steps)
                if len(chosen) >= n_paths or key in seen_keys:
                    continue
                if distinct_final and p.steps[-1].opportunity_id in finals:
                    continue
                chosen.append(p)
                seen_keys.add(key)
                finals.add(p.steps[-1].opportunity_id)
        return chosen
