"""Calibration targets of the synthetic world (domain.md §5) and the report comparing a world with them.

Targets marked ``seed`` are figures from the seeds (Stadin osaamiskeskus 2016 client mix, 000 §2; Helsinki
programme outcomes 2016–2019, 003 m1.1). Targets marked ``assumption`` are plausible values the seeds do not
give (documented here so that they can be challenged); they are still checked so that drift is visible.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from training.world.generate import World


@dataclass(frozen=True)
class Target:
    """One calibration target: a share (0..1) or a mean, its tolerance and where it comes from."""

    value: float
    tolerance: float
    source: str


# --- audit attributes (000 §2: Stadin 2016) -------------------------------------------------------------------
GENDER_SHARES: Final[dict[str, float]] = {"male": 0.75, "female": 0.25}
MOTHER_TONGUE_SHARES: Final[dict[str, float]] = {"ar": 0.42, "fa": 0.10, "so": 0.09, "ku": 0.07, "ru": 0.05}
COUNTRY_SHARES: Final[dict[str, float]] = {"368": 0.36, "004": 0.12, "706": 0.09, "760": 0.09}
N_COUNTRIES: Final = 41

# --- observable profile (assumptions unless noted) -------------------------------------------------------------
LITERACY_SHARES: Final[dict[str, float]] = {"none": 0.10, "basic": 0.22, "functional": 0.68}
SUPPORT_SHARES: Final[dict[str, float]] = {"low": 0.35, "medium": 0.40, "high": 0.25}
CLIENT_TYPE_SHARES: Final[dict[str, float]] = {"te": 0.75, "municipal": 0.25}  # 000 §4: municipal clients added
FINNISH_BELOW_B1_SHARE: Final = 0.75  # most clients have not reached B1 (003 m1.1: language is the main barrier)
LOW_EDUCATION_SHARE: Final = 0.45  # ISCED 0–2
MEAN_AGE: Final = 34.0
CONSENT_SHARES: Final[dict[str, float]] = {"matching": 0.95, "share_with_coordinators": 0.70, "model_training": 0.60}

# --- outcome base rates (003 m1.1, 2016–2019 cumulative) -------------------------------------------------------
INTO_TRAINING: Final = 0.44
DEGREE_SHARE_OF_TRAINING: Final = 0.50
INTO_WORK_TRIAL_OR_APPRENTICESHIP_OR_WORK: Final = 0.20
INTO_WORK: Final = 0.15

# 003 m1.1 counts apprenticeships with work ("work, work trial or apprenticeship"), so "into training" here means
# a started training on any other route; degree-oriented = vocational degree or higher-education bridging.
DEGREE_ROUTES: Final = ("degree", "higher_education_bridge")
APPRENTICESHIP_SHARE: Final = 0.025  # assumption: Stadin 2016 had 31 apprentices among 436 clients (000 §2)

TARGETS: Final[dict[str, Target]] = {
    **{f"gender/{k}": Target(v, 0.03, "seed 000 §2") for k, v in GENDER_SHARES.items()},
    **{f"mother_tongue/{k}": Target(v, 0.03, "seed 000 §2") for k, v in MOTHER_TONGUE_SHARES.items()},
    **{f"country/{k}": Target(v, 0.03, "seed 000 §2") for k, v in COUNTRY_SHARES.items()},
    **{f"literacy/{k}": Target(v, 0.03, "assumption") for k, v in LITERACY_SHARES.items()},
    **{
        f"support_need/{k}": Target(v, 0.03, "assumption (003 m1.1: more multi-barrier clients)")
        for k, v in SUPPORT_SHARES.items()
    },
    **{f"client_type/{k}": Target(v, 0.03, "assumption (000 §4)") for k, v in CLIENT_TYPE_SHARES.items()},
    **{f"consent/{k}": Target(v, 0.03, "assumption (domain.md §9.8)") for k, v in CONSENT_SHARES.items()},
    "finnish/below_B1": Target(FINNISH_BELOW_B1_SHARE, 0.03, "assumption"),
    "education/isced_0_2": Target(LOW_EDUCATION_SHARE, 0.03, "assumption"),
    "age/mean": Target(MEAN_AGE, 1.5, "assumption"),
    "outcome/into_training": Target(INTO_TRAINING, 0.05, "seed 003 m1.1"),
    "outcome/degree_share_of_training": Target(DEGREE_SHARE_OF_TRAINING, 0.08, "seed 003 m1.1"),
    "outcome/into_work_trial_apprenticeship_or_work": Target(
        INTO_WORK_TRIAL_OR_APPRENTICESHIP_OR_WORK, 0.05, "seed 003 m1.1"
    ),
    "outcome/into_work": Target(INTO_WORK, 0.05, "seed 003 m1.1"),
}


def _shares(values: list[str], keys: list[str]) -> dict[str, float]:
    counts = Counter(values)
    n = max(len(values), 1)
    return {k: counts.get(k, 0) / n for k in keys}


def realised_marginals(world: World) -> dict[str, float]:
    """Realised shares and means of a world, keyed like :data:`TARGETS` (plus a few descriptive extras)."""
    clients, audit = world.clients, world.audit
    n = max(len(clients), 1)
    out: dict[str, float] = {}
    for k, v in _shares([a.gender for a in audit], list(GENDER_SHARES)).items():
        out[f"gender/{k}"] = v
    for k, v in _shares([a.mother_tongue or "" for a in audit], list(MOTHER_TONGUE_SHARES)).items():
        out[f"mother_tongue/{k}"] = v
    for k, v in _shares([a.country_of_origin or "" for a in audit], list(COUNTRY_SHARES)).items():
        out[f"country/{k}"] = v
    out["country/n_distinct"] = float(len({a.country_of_origin for a in audit}))
    for k, v in _shares([c.literacy for c in clients], list(LITERACY_SHARES)).items():
        out[f"literacy/{k}"] = v
    for k, v in _shares([c.support_need for c in clients], list(SUPPORT_SHARES)).items():
        out[f"support_need/{k}"] = v
    for k, v in _shares([c.status.client_type for c in clients], list(CLIENT_TYPE_SHARES)).items():
        out[f"client_type/{k}"] = v
    for k in CONSENT_SHARES:
        out[f"consent/{k}"] = sum(bool(getattr(c.consent, k)) for c in clients) / n
    out["finnish/below_B1"] = sum(c.language_ordinal("fi") < 6 for c in clients) / n
    out["education/isced_0_2"] = sum(c.highest_isced <= 2 for c in clients) / n
    out["age/mean"] = sum(c.age for c in clients) / n
    out.update(_outcome_rates(world))
    return out


def _outcome_rates(world: World) -> dict[str, float]:
    h = world.history
    n = max(len(world.clients), 1)
    if h.empty:
        return {k: 0.0 for k in TARGETS if k.startswith("outcome/")}
    started = h[h["started"]]
    routes = started["opportunity_id"].map(world.route_of())
    is_training = (started["kind"] == "training") & (routes != "apprenticeship")
    train_clients = set(started.loc[is_training, "client_id"])
    degree_clients = set(started.loc[is_training & routes.isin(DEGREE_ROUTES), "client_id"])
    work_clients = set(started.loc[started["kind"] == "vacancy", "client_id"])
    trial_or_app = set(started.loc[(started["kind"] == "work_trial") | (routes == "apprenticeship"), "client_id"])
    return {
        "outcome/into_training": len(train_clients) / n,
        "outcome/degree_share_of_training": len(degree_clients) / max(len(train_clients), 1),
        "outcome/into_work_trial_apprenticeship_or_work": len(work_clients | trial_or_app) / n,
        "outcome/into_work": len(work_clients) / n,
        "outcome/employed_6m": float(h.groupby("client_id")["employed_6m"].any().sum()) / n,
    }


def calibration_report(world: World) -> dict[str, Any]:
    """Compare a world's realised marginals and outcome base rates with the domain.md §5 targets.

    Returns:
        ``{"checks": {name: {"target", "realised", "tolerance", "ok", "source"}}, "all_ok": bool,
        "extras": {name: value}}`` (JSON-safe).
    """
    realised = realised_marginals(world)
    checks: dict[str, dict[str, Any]] = {}
    for name, t in TARGETS.items():
        value = realised.get(name, float("nan"))
        checks[name] = {
            "target": t.value,
            "realised": round(value, 4),
            "tolerance": t.tolerance,
            "ok": bool(abs(value - t.value) <= t.tolerance),
            "source": t.source,
        }
    extras = {k: round(v, 4) for k, v in realised.items() if k not in TARGETS}
    return {"checks": checks, "all_ok": all(c["ok"] for c in checks.values()), "extras": extras}
