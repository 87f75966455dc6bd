"""The `polku` command line: composition root joining the training and service sub-apps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from service.cli import app as service_app
from training.cli import app as training_app

app = typer.Typer(help="Polku: matching and recommendation engine for competence centres.", no_args_is_help=True)
app.add_typer(training_app)
app.add_typer(service_app)


@app.command()
def up(
    clients: Annotated[int, typer.Option(help="Clients in the synthetic world when it has to be built.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic world.")] = 7,
    host: Annotated[str | None, typer.Option(help="Bind address (default POLKU_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default POLKU_PORT or 8000).")] = None,
) -> None:
    """The main job: world (if missing) -> champion (if none) -> store -> serve.

    Every step is idempotent, so a second `polku up` reuses the world and the champion it already has.
    """
    from features.paths import data_dir, world_dir
    from service.cli import load_world_cmd, serve
    from training.cli import train_cmd, world_cmd

    world = world_dir()
    typer.echo(f"data directory: {data_dir()}")
    if not (world / "manifest.json").exists():
        typer.echo(f"[1/4] building the synthetic world ({clients} clients, seed {seed}) in {world}")
        world_cmd(clients=clients, seed=seed, out=world)
    else:
        typer.echo(f"[1/4] reusing the world in {world}")
    champion = _champion()
    if champion is None:
        typer.echo("[2/4] no champion in the registry: training, evaluating and registering one")
        train_cmd(world=world, promote=True, if_no_champion=True, config_file=None, seed=None)
    else:
        typer.echo(f"[2/4] serving the registered champion polku-ranker v{champion}")
    typer.echo("[3/4] loading the world's clients and opportunities into the store")
    load_world_cmd(world=world)
    typer.echo("[4/4] serving. Try it (in another shell) with these tokens and requests:")
    base = f"http://127.0.0.1:{port or _env_port()}"
    client_id, opportunity_id = _demo_ids(world)
    header = "-H 'Content-Type: application/json' -H \"Authorization: Bearer $TOKEN\""
    typer.echo("  # a counsellor of the Helsinki centre: explained suggestions with paths for a stored client")
    typer.echo(f"  TOKEN={_token('counsellor')}")
    typer.echo(f'  curl -s {header} -d \'{{"client_id": "{client_id}", "include_paths": true}}\' {base}/v1/suggestions')
    typer.echo("  # a company coordinator of the Helsinki centre: consenting candidates for a vacancy")
    typer.echo(f"  TOKEN={_token('coordinator')}")
    typer.echo(f"  curl -s {header} -d '{{\"k\": 10}}' {base}/v1/opportunities/{opportunity_id}/candidates")
    serve(host=host, port=port, log_level="info")


def _champion() -> str | None:
    """The registered champion's version, or None (also when the registry cannot be read)."""
    from features.paths import mlflow_tracking_uri
    from training.promote import champion_version

    try:
        import mlflow

        return champion_version("polku-ranker", client=mlflow.MlflowClient(mlflow_tracking_uri()))
    except Exception:  # noqa: BLE001  # an unreadable registry means "train one"
        return None


def _env_port() -> int:
    import os

    return int(os.environ.get("POLKU_PORT") or 8000)


def _token(role: str) -> str:
    from service.auth import mint_token
    from service.settings import Settings

    return mint_token(Settings(), role=role, centre="helsinki", subject=f"demo-{role}", ttl_s=8 * 3600)


def _demo_ids(world: Path) -> tuple[str, str]:
    """A Helsinki client who consented to matching and a Helsinki vacancy, for the curl examples."""
    import json

    import pandas as pd

    clients = pd.read_parquet(world / "clients.parquet", columns=["client_id", "centre", "profile"])
    client_id = next(
        (str(c) for c, centre, p in clients.itertuples(index=False) if centre == "helsinki" and '"matching":true' in p),
        str(clients["client_id"].iloc[0]),
    )
    opportunities = pd.read_parquet(world / "opportunities.parquet")
    opportunity_id = ""
    for raw in opportunities.iloc[:, -1]:
        record = json.loads(raw)
        if record.get("centre") == "helsinki" and record.get("kind") == "vacancy":
            opportunity_id = record["opportunity_id"]
            break
    return client_id, opportunity_id or str(json.loads(opportunities.iloc[0, -1])["opportunity_id"])


if __name__ == "__main__":
    app()
