"""Generate, save and load the synthetic competence-centre world (clients, catalogue, truth, history)."""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from features.records import AuditAttributes, ClientProfile, Opportunity
from features.taxonomy import default_taxonomy
from training.world.calibrate import calibration_report
from training.world.catalogue import generate_catalogue
from training.world.history import simulate_history
from training.world.population import Population, generate_population
from training.world.progress import progress_bar
from training.world.truth import Truth

logger = logging.getLogger(__name__)

GENERATOR_VERSION: Final = "world-1"
_MIN_OPPORTUNITIES: Final = 60  # 12 item types x 5 centres


@dataclass
class World:
    """A synthetic world: clients (with separate audit attributes), catalogue, cohorts, history and truth."""

    clients: list[ClientProfile]
    audit: list[AuditAttributes]
    opportunities: list[Opportunity]
    cohort_of: dict[str, int]
    history: pd.DataFrame
    truth: Truth
    manifest: dict[str, Any] = field(default_factory=dict)

    def route_of(self) -> dict[str, str | None]:
        """Opportunity id -> training route (None for work trials and vacancies)."""
        return {o.opportunity_id: o.route for o in self.opportunities}

    def save(self, directory: str | Path) -> Path:
        """Write the world to ``directory`` (Parquet tables, truth .npz/.json, manifest.json)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {
                "client_id": [c.client_id for c in self.clients],
                "centre": [c.centre for c in self.clients],
                "cohort": [self.cohort_of[c.client_id] for c in self.clients],
                "profile": [c.model_dump_json() for c in self.clients],
            }
        ).to_parquet(out / "clients.parquet", index=False)
        pd.DataFrame(
            {
                "client_id": [a.client_id for a in self.audit],
                "gender": [a.gender for a in self.audit],
                "mother_tongue": [a.mother_tongue for a in self.audit],
                "country_of_origin": [a.country_of_origin for a in self.audit],
                "record": [a.model_dump_json() for a in self.audit],
            }
        ).to_parquet(out / "audit.parquet", index=False)
        pd.DataFrame(
            {
                "opportunity_id": [o.opportunity_id for o in self.opportunities],
                "centre": [o.centre for o in self.opportunities],
                "kind": [o.kind for o in self.opportunities],
                "route": [o.route for o in self.opportunities],
                "opportunity": [o.model_dump_json() for o in self.opportunities],
            }
        ).to_parquet(out / "opportunities.parquet", index=False)
        self.history.to_parquet(out / "history.parquet", index=False)
        np.savez(out / "truth.npz", **self.truth.latent_arrays())  # type: ignore[arg-type]
        (out / "truth.json").write_text(json.dumps(self.truth.params(), indent=1), encoding="utf-8")
        (out / "manifest.json").write_text(json.dumps(self.manifest, indent=2), encoding="utf-8")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> World:
        """Read a world written by :meth:`save` (records re-validated, truth rebuilt and checked)."""
        src = Path(directory)
        manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
        cdf = pd.read_parquet(src / "clients.parquet")
        clients = [ClientProfile.model_validate_json(s) for s in cdf["profile"]]
        cohort_of = {str(k): int(v) for k, v in zip(cdf["client_id"], cdf["cohort"], strict=True)}
        audit = [AuditAttributes.model_validate_json(s) for s in pd.read_parquet(src / "audit.parquet")["record"]]
        odf = pd.read_parquet(src / "opportunities.parquet")
        opportunities = [Opportunity.model_validate_json(s) for s in odf["opportunity"]]
        history = pd.read_parquet(src / "history.parquet")
        params = json.loads((src / "truth.json").read_text(encoding="utf-8"))
        truth = Truth(clients, opportunities, cohort_of, seed=int(params["seed"]), weights=params["weights"])
        truth.thresholds = tuple(float(x) for x in params["relevance_thresholds"])
        with np.load(src / "truth.npz") as latent:
            for name, saved in truth.latent_arrays().items():
                if not np.array_equal(latent[name], saved):
                    raise ValueError(f"{src / 'truth.npz'}: {name} does not match the ids and seed of truth.json")
        return cls(clients, audit, opportunities, cohort_of, history, truth, manifest)


def generate_world(
    n_clients: int = 3000,
    seed: int = 7,
    cohorts: Sequence[int] = (2023, 2024, 2025),
    n_opportunities: int | None = None,
) -> World:
    """Generate a deterministic world (same arguments -> identical world).

    Args:
        n_clients: number of clients over all centres and cohorts.
        seed: master seed (population, catalogue, latent truth and history use independent child streams).
        cohorts: cohort years; the reference date of cohort Y is 1 September Y.
        n_opportunities: catalogue size (default ``max(n_clients // 6, 60)``).
    """
    t0 = time.perf_counter()
    # The generator allocates millions of small objects and frees almost none: the cyclic collector would
    # rescan them all again and again (a third of the run time at 100k clients), so it pauses meanwhile.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        world = _generate(n_clients, seed, tuple(int(y) for y in cohorts), n_opportunities)
    finally:
        if gc_was_enabled:
            gc.enable()
    logger.info(
        "world generated: %d clients, %d items in %.1f s", n_clients, len(world.opportunities), time.perf_counter() - t0
    )
    return world


def _generate(n_clients: int, seed: int, cohorts: tuple[int, ...], n_opportunities: int | None) -> World:
    n_opp = n_opportunities if n_opportunities is not None else max(n_clients // 6, _MIN_OPPORTUNITIES)
    tax = default_taxonomy()
    pop_rng, cat_rng, hist_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    with progress_bar(total=5, desc="world", unit="stage", work=n_clients) as stages:
        stages.set_postfix_str("clients")
        population = generate_population(pop_rng, n_clients, cohorts, tax)
        stages.update()
        stages.set_postfix_str("catalogue")
        opportunities = generate_catalogue(cat_rng, n_opp, cohorts, tax)
        stages.update()
        stages.set_postfix_str("truth")
        truth = Truth(population.clients, opportunities, population.cohort_of, seed=seed, taxonomy=tax)
        stages.update()
        stages.set_postfix_str("history")
        history, behaviour = simulate_history(
            hist_rng, population.clients, population.audit, opportunities, population.cohort_of, truth
        )
        stages.update()
        stages.set_postfix_str("calibration")
        world = _assemble(population, opportunities, history, behaviour, truth, seed, cohorts, tax.version)
        stages.update()
    return world


def _assemble(
    population: Population,
    opportunities: list[Opportunity],
    history: pd.DataFrame,
    behaviour: dict[str, float],
    truth: Truth,
    seed: int,
    cohorts: tuple[int, ...],
    taxonomy_version: str,
) -> World:
    world = World(population.clients, population.audit, opportunities, population.cohort_of, history, truth)
    world.manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "cohorts": list(cohorts),
        "reference_date": "cohort-09-01",
        "taxonomy_version": taxonomy_version,
        "sizes": {
            "clients": len(population.clients),
            "opportunities": len(opportunities),
            "history_rows": len(history),
            "slates": int(history["slate_id"].nunique()) if len(history) else 0,
        },
        "truth": {k: v for k, v in truth.params().items() if k not in ("client_ids", "opportunity_ids")},
        "behaviour": behaviour,
        "calibration": calibration_report(world),
    }
    return world
