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
    from service.cli import load_world_cmd, serve, token
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
    typer.echo("[4/4] serving; a counsellor token for trying it out:")
    token(role="counsellor", centre="helsinki", ttl=8 * 3600, sub="demo-counsellor")
    typer.echo(
        "  TOKEN=<the token above>; curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
        f'-d \'{{"client_id": "{_demo_client(world)}", "include_paths": true}}\' '
        f"http://127.0.0.1:{port or 8000}/v1/suggestions"
    )
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


def _demo_client(world: Path) -> str:
    """A Helsinki client of the world who consented to matching, for the curl example."""
    import json

    import pandas as pd

    frame = pd.read_parquet(world / "clients.parquet", columns=["client_id", "centre", "profile"])
    for client_id, centre, profile in frame.itertuples(index=False):
        if centre == "helsinki" and json.loads(profile)["consent"]["matching"]:
            return str(client_id)
    return str(frame["client_id"].iloc[0])


if __name__ == "__main__":
    app()
