"""Tidy pandas views of a world and of the MLflow runs of ``polku-ranker``, for notebooks and reports.

The notebooks in ``notebooks/`` only call these functions and plot what they return, so the logic that turns a
world or an MLflow store into tables lives here, typed and tested. Functions that read MLflow import it lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

from features.language import CEFR_LEVELS
from training.metrics import RANKER_METRIC_COLUMNS

if TYPE_CHECKING:
    from training.world import World

EXPERIMENT: Final = "polku"
MODEL_NAME: Final = "polku-ranker"
BOUNDS: Final[tuple[str, ...]] = ("oracle", "random")
METRIC_COLUMNS: Final[tuple[str, ...]] = ("run_id", "ranker", "metric", "slice", "group", "value")
_BY_KIND_SUFFIX: Final = "_by_kind"


# --- the world ---------------------------------------------------------------------------------------------------


def calibration_frame(report: Mapping[str, Any], *, include_extras: bool = False) -> pd.DataFrame:
    """The output of ``training.world.calibration_report`` as a table: one row per target of domain.md §5.

    Args:
        report: ``calibration_report(world)`` (or ``world.manifest["calibration"]``).
        include_extras: also add the descriptive extras (no target; ``ok`` is NA).

    Returns:
        Columns ``check, family, target, realised, difference, tolerance, distance`` (difference in units of the
        tolerance: within ``[-1, 1]`` means ok), ``ok, source``.
    """
    rows = [
        {
            "check": name,
            "family": name.split("/", 1)[0],
            "target": float(c["target"]),
            "realised": float(c["realised"]),
            "difference": float(c["realised"]) - float(c["target"]),
            "tolerance": float(c["tolerance"]),
            "distance": (float(c["realised"]) - float(c["target"])) / float(c["tolerance"])
            if float(c["tolerance"]) > 0
            else float("nan"),
            "ok": bool(c["ok"]),
            "source": str(c["source"]),
        }
        for name, c in report.get("checks", {}).items()
    ]
    if include_extras:
        rows += [
            {
                "check": name,
                "family": name.split("/", 1)[0],
                "target": float("nan"),
                "realised": float(value),
                "difference": float("nan"),
                "tolerance": float("nan"),
                "distance": float("nan"),
                "ok": pd.NA,
                "source": "extra",
            }
            for name, value in report.get("extras", {}).items()
        ]
    columns = ["check", "family", "target", "realised", "difference", "tolerance", "distance", "ok", "source"]
    return pd.DataFrame(rows, columns=columns)


def clients_frame(world: World) -> pd.DataFrame:
    """One row per client with the observable profile fields that matter for matching, plus audit attributes.

    Args:
        world: a generated or loaded world.

    Returns:
        Columns ``client_id, centre, cohort, age, finnish_level`` (CEFR code, ordered categorical),
        ``finnish_ordinal, literacy, support_need, digital_skills, highest_isced, client_type, gender,
        mother_tongue``.
    """
    audit = {a.client_id: a for a in world.audit}
    rows = []
    for c in world.clients:
        a = audit.get(c.client_id)
        fi = c.language_ordinal("fi")
        rows.append(
            {
                "client_id": c.client_id,
                "centre": c.centre,
                "cohort": world.cohort_of.get(c.client_id),
                "age": c.age,
                "finnish_level": CEFR_LEVELS[fi],
                "finnish_ordinal": fi,
                "literacy": c.literacy,
                "support_need": c.support_need,
                "digital_skills": c.digital_skills,
                "highest_isced": c.highest_isced,
                "client_type": c.status.client_type,
                "gender": a.gender if a is not None else "unknown",
                "mother_tongue": (a.mother_tongue if a is not None else None) or "unknown",
            }
        )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["finnish_level"] = pd.Categorical(frame["finnish_level"], categories=list(CEFR_LEVELS), ordered=True)
    return frame


def catalogue_frame(world: World) -> pd.DataFrame:
    """One row per opportunity: where, what kind, which route and how much room.

    Args:
        world: a generated or loaded world.

    Returns:
        Columns ``opportunity_id, centre, kind, route`` (``"-"`` for work trials and vacancies), ``sector,
        seats, duration_weeks, support_level, needs_te_decision``.
    """
    return pd.DataFrame(
        [
            {
                "opportunity_id": o.opportunity_id,
                "centre": o.centre,
                "kind": o.kind,
                "route": o.route or "-",
                "sector": o.sector,
                "seats": o.seats,
                "duration_weeks": o.duration_weeks,
                "support_level": o.support_level,
                "needs_te_decision": o.needs_te_decision,
            }
            for o in world.opportunities
        ]
    )


def history_rates(world: World, by: str | Sequence[str] = "kind") -> pd.DataFrame:
    """Acceptance and outcome rates of the counsellors' logged slates, per group.

    Args:
        world: a generated or loaded world.
        by: ``history`` column(s) to group by (e.g. ``"kind"``, ``"cohort"``, ``["cohort", "kind"]``) or
            ``"centre"`` (joined from the catalogue).

    Returns:
        One row per group: ``shown`` (rows), ``accepted``, ``started``, ``completed``, ``employed_6m`` (shares of
        shown) and ``mean_outcome_score``.
    """
    keys = [by] if isinstance(by, str) else list(by)
    h = world.history
    if "centre" in keys and "centre" not in h.columns:
        h = h.assign(centre=h["opportunity_id"].map({o.opportunity_id: o.centre for o in world.opportunities}))
    flags = ["accepted", "started", "completed", "employed_6m"]
    grouped = h.groupby(keys, observed=True)
    out = grouped[flags].mean().astype(float)
    out.insert(0, "shown", grouped.size())
    out["mean_outcome_score"] = grouped["outcome_score"].mean()
    return out.reset_index()


# --- MLflow runs ------------------------------------------------------------------------------------------------


def split_metric_key(key: str) -> tuple[str, str, str, str]:
    """Parse a flat metric name as logged by ``training.evaluate.flat_metrics``.

    ``lightgbm.ndcg_10`` -> ``("lightgbm", "ndcg_10", "", "")``;
    ``lightgbm.gender.female.ndcg_10`` -> ``("lightgbm", "ndcg_10", "gender", "female")``;
    ``lightgbm.gender.ndcg_10_gap`` -> ``("lightgbm", "ndcg_10_gap", "gender", "")``;
    ``lightgbm.ndcg_10_by_kind.vacancy`` -> ``("lightgbm", "ndcg_10", "kind", "vacancy")``.

    Args:
        key: the metric name.

    Returns:
        ``(ranker, metric, slice, group)``; slice and group are ``""`` for overall metrics.
    """
    parts = key.split(".")
    if len(parts) == 2:
        return parts[0], parts[1], "", ""
    if len(parts) == 3 and parts[1].endswith(_BY_KIND_SUFFIX):
        return parts[0], parts[1].removesuffix(_BY_KIND_SUFFIX), "kind", parts[2]
    if len(parts) == 3:
        return parts[0], parts[2], parts[1], ""
    if len(parts) >= 4:
        return parts[0], parts[-1], parts[1], ".".join(parts[2:-1])
    return "", key, "", ""


def metrics_long(metrics: Mapping[str, float], run_id: str = "") -> pd.DataFrame:
    """Flat metrics of one run as a tidy table.

    Args:
        metrics: ``<ranker>.<metric>`` names -> values (``TrainResult.metrics`` or ``run.data.metrics``).
        run_id: value of the ``run_id`` column.

    Returns:
        Columns ``run_id, ranker, metric, slice, group, value``.
    """
    rows = [(run_id, *split_metric_key(key), float(value)) for key, value in metrics.items()]
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))


def _client(tracking_uri: str | None) -> Any:
    from mlflow import MlflowClient

    from features.paths import mlflow_tracking_uri

    return MlflowClient(tracking_uri=tracking_uri or mlflow_tracking_uri())


def runs_frame(experiment: str = EXPERIMENT, *, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per finished or running MLflow run of the experiment, newest first.

    Args:
        experiment: MLflow experiment name.
        tracking_uri: MLflow tracking URI (default ``features.paths.mlflow_tracking_uri()``).

    Returns:
        Columns ``run_id, run_name, start_time`` (UTC timestamp), ``status, test_cohort, n_clients,
        gate_alias, gate_reason`` and ``k`` (the run's main cut-off); empty when the experiment does not exist.
    """
    columns = [
        "run_id",
        "run_name",
        "start_time",
        "status",
        "k",
        "test_cohort",
        "n_clients",
        "gate_alias",
        "gate_reason",
    ]
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame(columns=columns)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    rows = [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "start_time": pd.to_datetime(r.info.start_time, unit="ms", utc=True),
            "status": r.info.status,
            "k": int(r.data.params.get("k", 10)),
            "test_cohort": r.data.params.get("data.test_cohort"),
            "n_clients": r.data.params.get("world.n_clients"),
            "gate_alias": r.data.tags.get("gate.alias", ""),
            "gate_reason": r.data.tags.get("gate.reason", ""),
        }
        for r in runs
    ]
    return pd.DataFrame(rows, columns=columns)


def runs_metrics(experiment: str = EXPERIMENT, *, tracking_uri: str | None = None) -> pd.DataFrame:
    """Every metric of every run of the experiment as one tidy table.

    Args:
        experiment: MLflow experiment name.
        tracking_uri: MLflow tracking URI (default ``features.paths.mlflow_tracking_uri()``).

    Returns:
        Columns ``run_id, ranker, metric, slice, group, value`` (see :func:`split_metric_key`).
    """
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame(columns=list(METRIC_COLUMNS))
    frames = [metrics_long(r.data.metrics, r.info.run_id) for r in client.search_runs([exp.experiment_id])]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(METRIC_COLUMNS))


def registry_frame(model_name: str = MODEL_NAME, *, tracking_uri: str | None = None) -> pd.DataFrame:
    """Registered versions of the model with their aliases, gate decisions and headline tags, newest first.

    Args:
        model_name: registered model name.
        tracking_uri: MLflow tracking URI (default ``features.paths.mlflow_tracking_uri()``).

    Returns:
        Columns ``version, run_id, aliases, role`` (``champion``, ``challenger`` or ``""``), ``created,
        ndcg_10, gate_promoted, gate_reason``; empty when nothing is registered.
    """
    columns = ["version", "run_id", "aliases", "role", "created", "ndcg_10", "gate_promoted", "gate_reason"]
    client = _client(tracking_uri)
    versions = client.search_model_versions(f"name='{model_name}'")
    aliases: dict[str, list[str]] = {}
    if versions:
        for alias, ver in client.get_registered_model(model_name).aliases.items():
            aliases.setdefault(str(ver), []).append(alias)
    rows = []
    for mv in versions:
        names = sorted(aliases.get(str(mv.version), []))
        role = "champion" if "champion" in names else "challenger" if "challenger" in names else ""
        rows.append(
            {
                "version": int(mv.version),
                "run_id": mv.run_id,
                "aliases": ",".join(names),
                "role": role,
                "created": pd.to_datetime(mv.creation_timestamp, unit="ms", utc=True),
                "ndcg_10": float(mv.tags["ndcg_10"]) if "ndcg_10" in mv.tags else float("nan"),
                "gate_promoted": mv.tags.get("gate.promoted", ""),
                "gate_reason": mv.tags.get("gate.reason", ""),
            }
        )
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("version", ascending=False, ignore_index=True)


def focus_version(registry: pd.DataFrame) -> int | None:
    """The version a report should describe: the champion, else the challenger, else the newest version.

    Args:
        registry: output of :func:`registry_frame`.

    Returns:
        A version number, or None when nothing is registered.
    """
    if registry.empty:
        return None
    for role in ("champion", "challenger"):
        hit = registry[registry["role"] == role]
        if not hit.empty:
            return int(hit["version"].iloc[0])
    return int(registry["version"].max())


def _one_run(long: pd.DataFrame, run_id: str | None) -> pd.DataFrame:
    if run_id is None:
        ids = long["run_id"].unique()
        if len(ids) != 1:
            raise ValueError(f"metrics of {len(ids)} runs given: pass run_id")
        return long
    return long[long["run_id"] == run_id]


def ranker_comparison(
    long: pd.DataFrame, run_id: str | None = None, *, k: int = 10, references: Sequence[str] = ("oracle", "points")
) -> pd.DataFrame:
    """Every ranker of one run side by side on the overall metrics, with NDCG@k relative to the references.

    Args:
        long: tidy metrics (:func:`runs_metrics` or :func:`metrics_long`).
        run_id: the run (may be None when ``long`` holds one run only).
        k: cut-off of the ratio columns.
        references: rankers to divide NDCG@k by (columns ``ndcg_<k>/<reference>``).

    Returns:
        One row per ranker (index; served rankers first, then the oracle and random bounds), one column per overall
        metric (in the order of ``training.evaluate.markdown_table``), plus the ratio columns.
    """
    run = _one_run(long, run_id)
    overall = run[run["slice"] == ""]
    table = overall.pivot_table(index="ranker", columns="metric", values="value", aggfunc="first")
    table.columns.name = None
    preferred = list(dict.fromkeys(c.replace("_10", f"_{k}") for c in RANKER_METRIC_COLUMNS))
    table = table[[c for c in preferred if c in table.columns] + sorted(c for c in table.columns if c not in preferred)]
    ndcg = f"ndcg_{k}"
    for ref in references:
        if ndcg in table.columns and ref in table.index:
            table[f"{ndcg}/{ref}"] = table[ndcg] / table.loc[ref, ndcg]
    order = [r for r in table.index if r not in BOUNDS] + [r for r in BOUNDS if r in table.index]
    return table.loc[order]


def group_table(
    long: pd.DataFrame, run_id: str | None = None, *, attribute: str = "gender", metric: str = "ndcg_10"
) -> pd.DataFrame:
    """A per-group metric of one run: rankers as rows, groups of ``attribute`` as columns, plus the gap.

    Args:
        long: tidy metrics.
        run_id: the run (may be None when ``long`` holds one run only).
        attribute: slice (``gender``, ``mother_tongue`` or ``kind``).
        metric: e.g. ``ndcg_10`` or ``exposure_10``.

    Returns:
        Rankers × groups, with a ``gap`` column (largest minus smallest group value).
    """
    run = _one_run(long, run_id)
    part = run[(run["slice"] == attribute) & (run["metric"] == metric) & (run["group"] != "")]
    table = part.pivot_table(index="ranker", columns="group", values="value", aggfunc="first")
    table.columns.name = None
    if not table.empty:
        table["gap"] = table.max(axis=1) - table.min(axis=1)
    return table


def metric_over_runs(long: pd.DataFrame, runs: pd.DataFrame, *, metric: str = "ndcg_10") -> pd.DataFrame:
    """One overall metric of every ranker across runs (oldest first), to see how retraining moved it.

    Args:
        long: tidy metrics of several runs (:func:`runs_metrics`).
        runs: :func:`runs_frame` of the same experiment.
        metric: overall metric name.

    Returns:
        Rows = runs (index ``start_time``, with a ``run_id`` column), columns = rankers.
    """
    part = long[(long["slice"] == "") & (long["metric"] == metric)]
    table = part.pivot_table(index="run_id", columns="ranker", values="value", aggfunc="first")
    table.columns.name = None
    meta = runs.set_index("run_id")[["start_time"]]
    joined = table.join(meta, how="inner").reset_index().rename(columns={"index": "run_id"})
    return joined.sort_values("start_time").set_index("start_time")


def feature_importance_frame(model_uri: str, *, top: int | None = None) -> pd.DataFrame:
    """Gain and split importance of a logged LightGBM model, most important first.

    Args:
        model_uri: e.g. ``models:/polku-ranker/3`` or ``models:/polku-ranker@champion``.
        top: keep only the ``top`` features (None = all).

    Returns:
        Columns ``feature, gain, split, gain_share``; empty when the ranker has no importance (baselines).
    """
    from models.packaging import load_polku_model

    model = load_polku_model(model_uri)
    gain, split = model.feature_importance("gain"), model.feature_importance("split")
    if gain is None or split is None:
        return pd.DataFrame(columns=["feature", "gain", "split", "gain_share"])
    frame = pd.DataFrame({"feature": list(gain), "gain": list(gain.values()), "split": [split[f] for f in gain]})
    total = float(frame["gain"].sum())
    frame["gain_share"] = frame["gain"] / total if total > 0 else 0.0
    frame = frame.sort_values("gain", ascending=False, ignore_index=True)
    return frame if top is None else frame.head(top)


__all__ = [
    "calibration_frame",
    "catalogue_frame",
    "clients_frame",
    "feature_importance_frame",
    "focus_version",
    "group_table",
    "history_rates",
    "metric_over_runs",
    "metrics_long",
    "ranker_comparison",
    "registry_frame",
    "runs_frame",
    "runs_metrics",
    "split_metric_key",
]


# --- the closed-loop simulation ----------------------------------------------------------------------------------


def simulation_rounds_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per loop and round of a ``polku simulate`` report (``training.simulate``).

    Returns:
        Columns ``loop, round, ndcg_10, ndcg_10_deterministic, started_rate, completed_rate, employed_6m_rate,
        congestion_10, max_group_gap_ndcg_10, explored_slates`` and, for rounds that trained a challenger,
        ``challenger_ndcg_10, ope_ips, ope_snips, ope_dr, ope_true_value, promoted``.
    """
    rows = []
    for loop in report.get("loops", []):
        for r in loop["rounds"]:
            ch = r.get("challenger") or {}
            est = ch.get("estimates", {})
            rows.append(
                {
                    "loop": loop["loop"],
                    **{k: v for k, v in r.items() if k != "challenger"},
                    "challenger_ndcg_10": ch.get("true_ndcg_10_deterministic"),
                    **{f"ope_{m}": est.get(m, {}).get("value") for m in ("ips", "snips", "dr")},
                    "ope_true_value": ch.get("true_value"),
                    "promoted": ch.get("promoted"),
                }
            )
    return pd.DataFrame(rows)
