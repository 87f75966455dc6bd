"""Typer sub-app for offline work: world, train, evaluate, evaluate-coding, promote, simulate, rollback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from training.config import TrainConfig

app = typer.Typer(no_args_is_help=True)

WorldOption = Annotated[Path | None, typer.Option("--world", help="World directory (default: <data>/world).")]


def _world_dir(path: Path | None) -> Path:
    from features.paths import world_dir

    return path if path is not None else world_dir()


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@app.command("world")
def world_cmd(
    clients: Annotated[int, typer.Option("--clients", help="Number of clients.")] = 3000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 7,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default: <data>/world).")] = None,
    opportunities: Annotated[
        int | None,
        typer.Option("--opportunities", min=1, help="Catalogue size (default: clients // 6, at least 60)."),
    ] = None,
) -> None:
    """Generate the synthetic world (clients, catalogue, history, truth) and save it."""
    from training.world import generate_world

    _setup_logging()
    target = _world_dir(out)
    world = generate_world(n_clients=clients, seed=seed, n_opportunities=opportunities)
    world.save(target)
    typer.echo(f"world: {len(world.clients)} clients, {len(world.opportunities)} opportunities -> {target}")


@app.command("train")
def train_cmd(
    world: WorldOption = None,
    promote: Annotated[bool, typer.Option("--promote/--no-promote", help="Apply the promotion gate.")] = True,
    if_no_champion: Annotated[
        bool, typer.Option("--if-no-champion", help="Promote only when there is no champion yet.")
    ] = False,
    config_file: Annotated[Path | None, typer.Option("--config", help="YAML file with TrainConfig fields.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Override the config seed.")] = None,
    feedback: Annotated[
        Path | None,
        typer.Option(
            "--feedback",
            help="Export of `polku export-training-data`: recorded decisions and outcomes added to the training rows.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    dask: Annotated[
        bool, typer.Option("--dask", help="Train the LightGBM stage with lightgbm.dask over partitioned rows.")
    ] = False,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="With --dask: existing scheduler tcp://host:8786 (default local).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="With --dask: workers of the embedded LocalCluster.")] = 2,
) -> None:
    """Train the LightGBM ranker, evaluate every ranker, log and register in MLflow, apply the gate."""
    import contextlib

    from training.train import train

    _setup_logging()
    cfg = _load_config(config_file, seed)
    with contextlib.ExitStack() as stack:
        trainer = None
        if dask:
            from models.batch import dask_client
            from training.distributed import dask_booster_trainer

            trainer = dask_booster_trainer(stack.enter_context(dask_client(scheduler, workers)))
        result = train(
            _world_dir(world),
            config=cfg,
            promote=promote or if_no_champion,
            if_no_champion=if_no_champion,
            feedback=feedback,
            booster_trainer=trainer,
        )
    typer.echo(result.table)
    if feedback is not None:
        stats = result.feedback_stats
        typer.echo(
            f"feedback: {stats.get('rows', 0)} training rows from {stats.get('events_used', 0)} events of "
            f"{stats.get('clients', 0)} clients; skipped {stats.get('skipped_unknown_opportunity', 0)} events on "
            f"unknown opportunities and {stats.get('bad_lines', 0)} bad lines"
        )
    typer.echo(f"run {result.run_id}; registered {cfg.registered_model_name} v{result.model_version}")
    if result.decision is not None:
        d = result.decision
        typer.echo(f"promotion: v{d.version} -> {d.alias or 'no alias change'}: {d.reason}")


def _load_config(config_file: Path | None, seed: int | None) -> TrainConfig:
    from training.config import TrainConfig

    data: dict[str, object] = {}
    if config_file is not None:
        import yaml

        loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise typer.BadParameter("the config file must hold a mapping of TrainConfig fields")
        data.update(loaded)
    if seed is not None:
        data["seed"] = seed
    return TrainConfig.model_validate(data)


@app.command("evaluate")
def evaluate_cmd(
    world: WorldOption = None,
    model_uri: Annotated[str, typer.Option("--model", help="Model URI to evaluate.")] = "models:/polku-ranker@champion",
    config_file: Annotated[Path | None, typer.Option("--config", help="YAML file with TrainConfig fields.")] = None,
    morning: Annotated[
        bool, typer.Option("--morning/--no-morning", help="Also simulate each centre's morning under seat capacity.")
    ] = True,
) -> None:
    """Evaluate a registered model against the baselines and the oracle on the world's test cohort.

    With ``--morning`` (default) the report also has the morning simulation: plain ranking against
    congestion-aware ranking under seat capacity (``training.morning``).
    """
    import mlflow

    from features.paths import mlflow_tracking_uri
    from models.packaging import load_polku_model
    from training.datasets import build_training_data
    from training.evaluate import build_test_set, evaluate_models, markdown_table
    from training.train import build_models
    from training.world import World

    _setup_logging()
    mlflow.set_tracking_uri(mlflow_tracking_uri())
    cfg = _load_config(config_file, None)
    w = World.load(_world_dir(world))
    data = build_training_data(w, cfg)
    models = {"model": load_polku_model(model_uri), **build_models(data, None, cfg)}
    report = evaluate_models(models, build_test_set(w, data.split, cfg), cfg)
    typer.echo(markdown_table(report))
    if morning:
        from training.morning import morning_table, simulate_morning

        report["morning"] = simulate_morning(w, models["model"])
        typer.echo("\n" + morning_table(report["morning"]))


@app.command("evaluate-coding")
def evaluate_coding_cmd(
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
    memory: Annotated[bool, typer.Option(help="Also trace the index's memory (builds it once more).")] = True,
) -> None:
    """Evaluate the occupation coder on the hand-coded titles against the plain baseline (accuracy, latency, cost)."""
    import json

    from training.coding_eval import evaluate_coding, format_table

    report = evaluate_coding(memory=memory)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    typer.echo(format_table(report))


@app.command("promote")
def promote_cmd(
    version: Annotated[int, typer.Option("--version", help="Registered version to put through the gate.")],
    world: WorldOption = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline-policy-evaluation",
            help="Judge the version from logged impressions alone (IPS/SNIPS/DR), not from the world's truth.",
        ),
    ] = False,
    logs: Annotated[
        Path | None,
        typer.Option("--logs", help="Export of `polku export-training-data` (with --offline-policy-evaluation)."),
    ] = None,
) -> None:
    """Re-evaluate a version and the champion on the world's test cohort and apply the promotion gate.

    With --offline-policy-evaluation the version is judged from logged slates and their propensities only; the
    world supplies just the catalogue the slates were served from.
    """
    from training.config import TrainConfig  # noqa: F811 - runtime import of the TYPE_CHECKING name
    from training.datasets import time_split
    from training.evaluate import build_test_set
    from training.promote import promote, promote_offline
    from training.world import World

    _setup_logging()
    cfg = TrainConfig()
    w = World.load(_world_dir(world))
    if offline:
        if logs is None:
            raise typer.BadParameter("--logs is required with --offline-policy-evaluation", param_hint="--logs")
        d = promote_offline(version, logs=logs, opportunities=w.opportunities, config=cfg)
        typer.echo(f"promotion (offline): v{d.version} -> {d.alias or 'no alias change'}: {d.reason}")
        return
    test = build_test_set(w, time_split(w, cfg.test_cohort), cfg)
    d = promote(version, test=test, config=cfg)
    typer.echo(f"promotion: v{d.version} -> {d.alias or 'no alias change'}: {d.reason}")


@app.command("simulate")
def simulate_cmd(
    out: Annotated[Path, typer.Option("--out", help="Write the JSON report here.")],
    rounds: Annotated[int, typer.Option("--rounds", min=1, max=10, help="Deployment rounds after the history.")] = 3,
    policy: Annotated[
        str, typer.Option("--policy", help="points, learned, or all (the three loops of the comparison).")
    ] = "learned",
    exploration: Annotated[
        float | None, typer.Option("--exploration", min=0.0, help="Plackett-Luce temperature (default: off).")
    ] = None,
    clients: Annotated[int, typer.Option("--clients", min=100, help="Clients of the three history cohorts.")] = 3000,
    seed: Annotated[int, typer.Option("--seed", help="World and simulation seed.")] = 7,
    config_file: Annotated[Path | None, typer.Option("--config", help="YAML file with TrainConfig fields.")] = None,
) -> None:
    """Closed-loop simulation: serve new cohorts, log with propensities, retrain, gate; report per round."""
    import json

    from training.loops import compare_loops, summary_table
    from training.simulate import SimulationConfig, simulate

    _setup_logging()
    cfg = _load_config(config_file, seed)
    if policy == "all":
        report = compare_loops(rounds, exploration=exploration or 0.02, seed=seed, clients=clients, train=cfg)
    elif policy in ("points", "learned"):
        run = SimulationConfig(
            rounds=rounds,
            policy=policy,  # type: ignore[arg-type]
            exploration=exploration or None,
            clients=clients,
            seed=seed,
            train=cfg,
        )
        report = {"loops": [simulate(run)]}
    else:
        raise typer.BadParameter("--policy must be points, learned or all")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float), encoding="utf-8")
    typer.echo(summary_table(report))


@app.command("rollback")
def rollback_cmd(
    version: Annotated[int, typer.Option("--version", help="Version to make champion again.")],
) -> None:
    """Move the champion alias back to an earlier version (no gate)."""
    from training.promote import rollback

    _setup_logging()
    previous = rollback(version)
    before = f"v{previous}" if previous is not None else "none"
    typer.echo(f"champion: {before} -> v{version}")
