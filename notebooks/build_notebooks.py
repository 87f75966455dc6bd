"""Write ``01_world.ipynb``, ``02_model_report.ipynb`` and ``03_learning_loop.ipynb`` (outputs stripped).

Run ``python notebooks/build_notebooks.py`` after editing a cell here; never edit the ``.ipynb`` files by hand, so
that they stay reproducible and free of outputs. The notebooks only call ``training.reports`` (and the world and
model loaders) and plot what those return.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Final

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

logger = logging.getLogger(__name__)

HERE: Final = Path(__file__).resolve().parent

# Every notebook draws on explicit Figure objects with the headless Agg backend and displays them as PNG
# (matplotlib_inline's formatter), so plots work the same in Jupyter and under nbclient in the suite.

WORLD_CELLS: Final[list[tuple[str, str]]] = [
    (
        "md",
        """\
# 01 · The synthetic world against the seeds

Polku is trained and evaluated on a synthetic competence-centre world (`training/world/`): clients with
observable profiles and separate audit attributes, a catalogue of trainings, work trials and vacancies, a latent
truth of who would benefit from what, and a simulated history of counsellors' slates with acceptances and
outcomes.

This notebook checks that world against the figures of the seeds (domain.md §5: Stadin osaamiskeskus 2016 client
mix, Helsinki programme outcomes 2016–2019) and shows how clients, catalogue and history are spread over the five
centres. It reads the world from `POLKU_WORLD_DIR` (default: `features.paths.world_dir()`, written by
`polku world`).""",
    ),
    (
        "code",
        """\
import os
from pathlib import Path

import matplotlib
import pandas as pd
from IPython.display import Markdown, display
from matplotlib.figure import Figure
from matplotlib_inline.backend_inline import set_matplotlib_formats

from features.paths import world_dir
from training import reports
from training.world import World, calibration_report

matplotlib.use("Agg")  # headless and deterministic: figures are Figure() objects displayed as PNG
set_matplotlib_formats("png")
pd.set_option("display.max_rows", 60)
WORLD_DIR = Path(os.environ.get("POLKU_WORLD_DIR") or world_dir())
world = World.load(WORLD_DIR)
display(Markdown(f"World `{WORLD_DIR}`: {world.manifest.get('sizes', {})}, seed {world.manifest.get('seed')}"))""",
    ),
    (
        "md",
        """\
## Calibration against the seeds

Each row is one target. `seed` rows are figures from the seeds; `assumption` rows are plausible values the seeds
do not give (documented in `training/world/calibrate.py` so that they can be challenged). `ok` means the realised
value is within the tolerance. Outcome rates are shares of all clients with at least one started item of that
kind in the simulated history.""",
    ),
    (
        "code",
        """\
report = calibration_report(world)
calibration = reports.calibration_frame(report, include_extras=True)
display(Markdown(f"All targets within tolerance: **{report['all_ok']}**"))
calibration.round(4)""",
    ),
    (
        "code",
        """\
checks = calibration.dropna(subset=["target"])
fig = Figure(figsize=(8, 0.22 * len(checks) + 1))
ax = fig.subplots()
colors = ["#3a6ea5" if ok else "#c0392b" for ok in checks["ok"]]
ax.barh(checks["check"], checks["distance"], color=colors, alpha=0.8)
for x in (-1, 1):
    ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
ax.axvline(0, color="black", linewidth=0.8)
ax.invert_yaxis()
ax.set_xlabel("(realised − target) / tolerance: within the dashed lines = ok")
ax.set_title("Calibration: distance from the seeds' figures")
fig.tight_layout()
fig""",
    ),
    (
        "md",
        """\
## Clients per centre

Age, Finnish level, literacy and support need drive eligibility (language and literacy gates, age limits) and
the relevance of every route. The centres should differ only as much as the generator intends: a centre with
very few low-literacy clients, for example, would leave the literacy routes without data.""",
    ),
    (
        "code",
        """\
clients = reports.clients_frame(world)
centres = sorted(clients["centre"].unique())
clients.groupby("centre").agg(
    clients=("client_id", "size"),
    mean_age=("age", "mean"),
    below_b1=("finnish_ordinal", lambda s: float((s < 6).mean())),
    mean_isced=("highest_isced", "mean"),
).round(2)""",
    ),
    (
        "code",
        """\
fig = Figure(figsize=(12, 4))
ax_age, ax_fi = fig.subplots(1, 2)
ax_age.boxplot([clients.loc[clients["centre"] == c, "age"] for c in centres], tick_labels=centres)
ax_age.set_title("Age by centre")
ax_age.set_ylabel("years")
levels = pd.crosstab(clients["centre"], clients["finnish_level"], normalize="index", dropna=False)
for centre in centres:
    ax_fi.plot(range(levels.shape[1]), levels.loc[centre], marker="o", markersize=3, label=centre)
ax_fi.set_xticks(range(levels.shape[1]), [str(c) for c in levels.columns], rotation=90)
ax_fi.set_title("Finnish level (CEFR) by centre")
ax_fi.set_ylabel("share of the centre's clients")
ax_fi.legend(fontsize=8)
fig.tight_layout()
fig""",
    ),
    (
        "code",
        """\
fig = Figure(figsize=(12, 4))
for ax, column, order in zip(
    fig.subplots(1, 2),
    ["literacy", "support_need"],
    [["none", "basic", "functional"], ["low", "medium", "high"]],
    strict=True,
):
    shares = pd.crosstab(clients["centre"], clients[column], normalize="index")
    shares = shares[[c for c in order if c in shares.columns]]
    shares.plot.bar(stacked=True, ax=ax, colormap="viridis", rot=0)
    ax.set_title(f"{column.replace('_', ' ').capitalize()} by centre")
    ax.set_ylabel("share")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
fig.tight_layout()
fig""",
    ),
    (
        "md",
        """\
## Catalogue

Trainings are split by route (language, literacy, workshop, degree, apprenticeship, …); work trials and vacancies
have no route (`-`). Every centre needs at least one item of each route its clients may be referred to; a route
missing from a centre can only be reached by travelling.""",
    ),
    (
        "code",
        """\
catalogue = reports.catalogue_frame(world)
by_route = pd.crosstab([catalogue["kind"], catalogue["route"]], catalogue["centre"], margins=True)
by_route""",
    ),
    (
        "code",
        """\
fig = Figure(figsize=(12, 4))
ax_kind, ax_seats = fig.subplots(1, 2)
pd.crosstab(catalogue["centre"], catalogue["kind"]).plot.bar(stacked=True, ax=ax_kind, rot=0)
ax_kind.set_title("Catalogue items by centre and kind")
ax_kind.set_ylabel("items")
catalogue.groupby("route")["seats"].sum().sort_values().plot.barh(ax=ax_seats, color="#3a6ea5")
ax_seats.set_title("Seats by route")
ax_seats.set_xlabel("seats")
fig.tight_layout()
fig""",
    ),
    (
        "md",
        """\
## History: acceptance and outcomes

The history is what a counsellor policy (`shown_by`) showed and what followed: accepted → started → completed,
and employment six months later. These labels, not the latent truth, are what the ranker learns from; the truth
is used only to grade the evaluation. Acceptance is much higher than completion, and vacancies convert into
employment far more directly than trainings, so the rates per kind matter more than the pooled rate.""",
    ),
    (
        "code",
        """\
rates_kind = reports.history_rates(world, "kind")
rates_centre = reports.history_rates(world, "centre")
display(rates_kind.round(3))
reports.history_rates(world, ["cohort", "kind"]).round(3)""",
    ),
    (
        "code",
        """\
flags = ["accepted", "started", "completed", "employed_6m"]
fig = Figure(figsize=(12, 4))
ax_kind, ax_centre = fig.subplots(1, 2)
rates_kind.set_index("kind")[flags].plot.bar(ax=ax_kind, rot=0)
ax_kind.set_title("Share of shown items, by kind")
rates_centre.set_index("centre")[flags].plot.bar(ax=ax_centre, rot=0)
ax_centre.set_title("Share of shown items, by centre")
for ax in (ax_kind, ax_centre):
    ax.set_ylabel("share of shown")
    ax.legend(fontsize=8)
fig.tight_layout()
fig""",
    ),
    (
        "md",
        """\
## Reading the results

* A red bar in the calibration chart means the world has drifted from the seeds (or from a documented
  assumption): fix the generator, not the target, unless the seeds say otherwise.
* On a tiny world (a few hundred clients) outcome rates are noisy; judge calibration on the default 3000-client
  world.
* Audit attributes (gender, mother tongue, country) are generated to match the seeds but are never model inputs;
  they are used only to slice the evaluation (see `02_model_report.ipynb`).""",
    ),
]

MODEL_CELLS: Final[list[tuple[str, str]]] = [
    (
        "md",
        """\
# 02 · Model report: `polku-ranker` runs in MLflow

Every training run (`polku train`) fits a LightGBM lambdarank ranker and evaluates it, together with the points
baseline (Job Market Finland style), the popularity baseline, the truth **oracle** (ceiling) and a **random**
ranking (floor), on the same test clients over their full eligible candidate sets. The run logs all metrics,
per-group slices, the report and the model; the promotion gate then gives the new version the `champion` or the
`challenger` alias.

This notebook reads the MLflow store at `features.paths.mlflow_tracking_uri()` (`MLFLOW_TRACKING_URI`, default
SQLite under `POLKU_DATA_DIR`).""",
    ),
    (
        "code",
        """\
import os
import warnings

import matplotlib
import pandas as pd
from IPython.display import Markdown, display
from matplotlib.figure import Figure
from matplotlib_inline.backend_inline import set_matplotlib_formats

from features.paths import mlflow_tracking_uri
from training import reports

matplotlib.use("Agg")  # headless and deterministic: figures are Figure() objects displayed as PNG
set_matplotlib_formats("png")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets
pd.set_option("display.max_columns", 30)
pd.set_option("display.width", 160)
TRACKING_URI = mlflow_tracking_uri()
runs = reports.runs_frame(reports.EXPERIMENT, tracking_uri=TRACKING_URI)
metrics = reports.runs_metrics(reports.EXPERIMENT, tracking_uri=TRACKING_URI)
registry = reports.registry_frame(reports.MODEL_NAME, tracking_uri=TRACKING_URI)
if runs.empty or registry.empty:
    raise RuntimeError(f"no runs of {reports.EXPERIMENT!r} in {TRACKING_URI}: run `polku train` first")
display(Markdown(f"MLflow `{TRACKING_URI}`: {len(runs)} runs, {len(registry)} registered versions"))""",
    ),
    (
        "md",
        """\
## Registry: champion and challenger

The service serves `models:/polku-ranker@champion`. A new version becomes champion only if its NDCG@k on the test
set is at least the current champion's (or the points baseline's, when there is no champion) and its largest
per-group NDCG gap is within the limit; otherwise it becomes the challenger. The report below describes the
champion, or the challenger when there is no champion yet.""",
    ),
    (
        "code",
        """\
version = reports.focus_version(registry)
focus = registry.set_index("version").loc[version]
run_id = str(focus["run_id"])
k = int(runs.set_index("run_id").loc[run_id, "k"])
roles = {role: registry.loc[registry["role"] == role, "version"].tolist() for role in ("champion", "challenger")}
display(
    Markdown(
        f"champion: {roles['champion'] or 'none'} · challenger: {roles['challenger'] or 'none'} · "
        f"this report: **v{version}** ({focus['role'] or 'no alias'}), run `{run_id}`, k = {k}"
    )
)
registry""",
    ),
    (
        "md",
        """\
## Every ranker side by side

`ndcg_k/oracle` is the share of the achievable ranking quality; `ndcg_k/points` compares with the rule-based
baseline the service falls back to. `first_stage_recall` is how much of the ranker's own full-set top-k survives
the cheap first stage (oracle and random rank the full set directly).""",
    ),
    (
        "code",
        """\
comparison = reports.ranker_comparison(metrics, run_id, k=k)
comparison.round(4)""",
    ),
    (
        "code",
        """\
fig = Figure(figsize=(12, 4))
ax_ndcg, ax_ratio = fig.subplots(1, 2)
ndcg_cols = [c for c in comparison.columns if c.startswith("ndcg_") and "/" not in c]
comparison[ndcg_cols].plot.bar(ax=ax_ndcg, rot=0)
ax_ndcg.set_title("NDCG by ranker")
ax_ndcg.set_ylim(0, 1.05)
ratio_cols = [c for c in comparison.columns if "/" in c]
comparison[ratio_cols].plot.bar(ax=ax_ratio, rot=0)
ax_ratio.axhline(1.0, color="black", linewidth=0.8)
ax_ratio.set_title(f"NDCG@{k} relative to the oracle and the points baseline")
fig.tight_layout()
fig""",
    ),
    (
        "md",
        """\
## Per-group quality and exposure

Gender and mother tongue are audit-only attributes: never model inputs, read only here to slice the evaluation.
`ndcg` per group is ranking quality for the group's clients; `exposure` is the share of relevant items the group's
clients see in their top k. Groups smaller than the run's `min_group_size` are folded into `other`. The gate uses
the largest NDCG gap.""",
    ),
    (
        "code",
        """\
group_tables = {
    (attribute, metric): reports.group_table(metrics, run_id, attribute=attribute, metric=f"{metric}_{k}")
    for attribute in ("gender", "mother_tongue")
    for metric in ("ndcg", "exposure")
}
for (attribute, metric), table in group_tables.items():
    display(Markdown(f"**{metric}@{k} by {attribute}**"))
    display(table.round(4))""",
    ),
    (
        "code",
        """\
fig = Figure(figsize=(12, 7))
for ax, ((attribute, metric), table) in zip(fig.subplots(2, 2).ravel(), group_tables.items(), strict=True):
    table.drop(columns="gap").plot.bar(ax=ax, rot=0)
    ax.set_title(f"{metric}@{k} by {attribute}")
    ax.legend(fontsize=7)
fig.tight_layout()
fig""",
    ),
    (
        "code",
        """\
display(Markdown(f"**NDCG@{k} by opportunity kind**"))
reports.group_table(metrics, run_id, attribute="kind", metric=f"ndcg_{k}").round(4)""",
    ),
    (
        "md",
        """\
## Feature importance

From the registered model itself (`models.packaging.load_polku_model`): total gain and number of splits per
feature. A single dominating feature (for example the historical acceptance rate) means the model mostly
reproduces past counsellor choices, which would also repeat their biases.""",
    ),
    (
        "code",
        """\
importance = reports.feature_importance_frame(f"models:/{reports.MODEL_NAME}/{version}", top=20)
fig = Figure(figsize=(8, 0.3 * len(importance) + 1))
ax = fig.subplots()
ax.barh(importance["feature"], importance["gain_share"], color="#3a6ea5")
ax.invert_yaxis()
ax.set_xlabel("share of total gain")
ax.set_title(f"Feature importance, v{version}")
fig.tight_layout()
display(importance.round(4))
fig""",
    ),
    (
        "md",
        """\
## Congestion and coverage

Recommending the same few items to everyone fills them and leaves the rest empty. `coverage_k` is the share of
the catalogue that appears in anyone's top k; `congestion_k` measures how concentrated those appearances are
(0 = spread evenly, 1 = everyone gets the same items; ReCon); `gini_k` is the Gini coefficient of item
exposure.""",
    ),
    (
        "code",
        """\
spread = comparison[[f"coverage_{k}", f"congestion_{k}", f"gini_{k}", f"ndcg_{k}"]]
fig = Figure(figsize=(6, 4))
ax = fig.subplots()
ax.scatter(spread[f"congestion_{k}"], spread[f"ndcg_{k}"], color="#3a6ea5")
for name, row in spread.iterrows():
    ax.annotate(str(name), (row[f"congestion_{k}"], row[f"ndcg_{k}"]), fontsize=8)
ax.set_xlabel(f"congestion@{k}")
ax.set_ylabel(f"NDCG@{k}")
ax.set_title("Quality against congestion")
fig.tight_layout()
display(spread.round(4))
fig""",
    ),
    (
        "md",
        """\
## Across runs

NDCG@k of every ranker in every run of the experiment, oldest first. Runs on different worlds or test cohorts
are not comparable with each other; within a run all rankers share one test set.""",
    ),
    (
        "code",
        """\
history = reports.metric_over_runs(metrics, runs, metric=f"ndcg_{k}")
fig = Figure(figsize=(8, 4))
ax = fig.subplots()
history.drop(columns="run_id").plot(ax=ax, marker="o")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
ax.set_ylabel(f"NDCG@{k}")
ax.set_title("NDCG by run")
fig.tight_layout()
display(runs[["run_id", "run_name", "start_time", "test_cohort", "n_clients", "gate_alias", "gate_reason"]])
fig""",
    ),
]


LOOP_CELLS: Final[list[tuple[str, str]]] = [
    (
        "md",
        """\
# 03 · Learning from Polku's own suggestions: three loops side by side

`polku simulate` deploys a ranker in the synthetic world for several rounds (`training/simulate.py`). Round 0 is
the counsellors' history. In each round a new cohort arrives, the champion serves its slates through the serving
code (eligibility, `PolkuModel.rank_groups`, the serving policy of `models/exploration.py`), simulated clients
choose with the world's choice model (position bias included) and outcomes are drawn from the truth. The logs,
with their exact propensities, train a challenger, and the gate decides.

Three loops on the same world and seed: the points ranker every round; the learned model without exploration;
the learned model with Plackett–Luce exploration below place 3. The notebook reads the report named by
`POLKU_SIMULATION_REPORT` (written by `polku simulate --policy all --out ...`), or runs a small comparison.""",
    ),
    (
        "code",
        """\
import json
import os
from pathlib import Path

import matplotlib
from IPython.display import display
from matplotlib.figure import Figure
from matplotlib_inline.backend_inline import set_matplotlib_formats

from training import reports
from training.config import TrainConfig
from training.loops import compare_loops

matplotlib.use("Agg")
set_matplotlib_formats("png")
path = os.environ.get("POLKU_SIMULATION_REPORT")
if path:
    report = json.loads(Path(path).read_text(encoding="utf-8"))
else:  # a small world and short training: minutes, not the default world's run
    report = compare_loops(3, exploration=0.02, clients=600, train=TrainConfig(num_boost_round=100))
rounds = reports.simulation_rounds_frame(report)
display(rounds.round(4))""",
    ),
    (
        "md",
        """\
## Quality against the truth and realised outcomes

NDCG@10 of what was shown, graded by the world's truth, and the share of the cohort that started, completed and
was employed six months later.""",
    ),
    (
        "code",
        """\
metrics = ["ndcg_10", "started_rate", "completed_rate", "employed_6m_rate"]
fig = Figure(figsize=(12, 3.2))
for n, metric in enumerate(metrics):
    ax = fig.add_subplot(1, len(metrics), n + 1)
    for loop, part in rounds.groupby("loop"):
        ax.plot(part["round"], part[metric], marker="o", label=loop)
    ax.set_title(metric)
    ax.set_xlabel("round")
fig.axes[0].legend(fontsize=7)
fig.tight_layout()
fig""",
    ),
    (
        "md",
        """\
## Off-policy estimates next to the true value

For every trained challenger, the IPS, SNIPS and doubly robust estimates of its value (DCG@10 of graded outcome
labels per slate) from that round's logs alone, next to the exact expected value under the world's behaviour.
Without exploration most slates give the challenger no support, and the estimates fail.""",
    ),
    (
        "code",
        """\
ope = rounds.dropna(subset=["ope_true_value"])
fig = Figure(figsize=(6, 3.2))
ax = fig.add_subplot(1, 1, 1)
labels = [f"{r.loop} r{r['round']}" for _, r in ope.iterrows()]
for method, marker in (("ope_ips", "v"), ("ope_snips", "o"), ("ope_dr", "s"), ("ope_true_value", "*")):
    ax.scatter(range(len(ope)), ope[method], marker=marker, label=method.removeprefix("ope_"))
ax.set_xticks(range(len(ope)), labels, rotation=30, ha="right", fontsize=7)
ax.legend(fontsize=7)
fig.tight_layout()
display(ope[["loop", "round", "ope_ips", "ope_snips", "ope_dr", "ope_true_value", "promoted"]].round(4))
fig""",
    ),
]


def _cell(kind: str, source: str) -> nbformat.NotebookNode:
    if kind == "md":
        return new_markdown_cell(source)  # type: ignore[no-untyped-call]
    return new_code_cell(source)  # type: ignore[no-untyped-call]


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook with the given (kind, source) cells, no outputs and a python3 kernelspec.

    Args:
        cells: ``("md" | "code", source)`` pairs.

    Returns:
        The validated notebook.
    """
    made = [_cell(kind, src) for kind, src in cells]
    nb = new_notebook(  # type: ignore[no-untyped-call]
        cells=made,
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
    )
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids keep regenerated files diff-free
    nbformat.validate(nb)
    return nb


NOTEBOOKS: Final[dict[str, list[tuple[str, str]]]] = {
    "01_world.ipynb": WORLD_CELLS,
    "02_model_report.ipynb": MODEL_CELLS,
    "03_learning_loop.ipynb": LOOP_CELLS,
}


def main(directory: Path = HERE) -> list[Path]:
    """Write every notebook into ``directory``.

    Args:
        directory: target directory (default: this file's directory).

    Returns:
        The written files.
    """
    written = []
    for name, cells in NOTEBOOKS.items():
        path = directory / name
        nbformat.write(build(cells), path)  # type: ignore[no-untyped-call]
        written.append(path)
        logger.info("wrote %s", path)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
