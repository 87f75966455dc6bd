"""HTTP-side commands: serve, token, openapi, load-world, export-training-data, retention, code and allocate."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default POLKU_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default POLKU_PORT or 8000).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="POLKU_WORKERS",
            help="Worker processes (each loads the model and catalogue: about 1 GB per 50k items).",
        ),
    ] = 1,
) -> None:
    """Serve the API with uvicorn (SIGTERM: in-flight requests finish, then the process exits)."""
    from service.app import create_app
    from service.settings import Settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    if workers > 1:
        _serve_workers(settings, host, port, log_level, workers)
        return
    app_ = create_app(settings)
    config = uvicorn_config(app_, settings, host or settings.host, port or settings.port, log_level)
    _GracefulServer(config).run()


def uvicorn_config(app_: Any, settings: Any, host: str, port: int, log_level: str) -> Any:
    """The uvicorn configuration of ``polku serve``.

    uvicorn's own access log is off: it prints raw paths, which carry client ids (``/v1/clients/{id}``); the
    service logs method, route template, status and duration instead (``service.access``).

    Idle keep-alive connections stay open ``POLKU_KEEP_ALIVE_S`` (75 s), longer than the idle timeout of
    clients (httpx: 5 s) and proxies (typically 60 s). With uvicorn's default of 5 s, the server sometimes
    closed a connection at the moment a client reused it; under load, the close takes effect one busy
    event-loop turn later, the request is left unread in the socket, and the kernel answers it with a reset:
    the client's ``ReadError`` seen in ``make loadtest`` (reproduced by ``benchmarks/keepalive_race.py``).
    """
    import uvicorn

    return uvicorn.Config(
        app_,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
        proxy_headers=False,
        server_header=False,
    )


def _serve_workers(settings: Any, host: str | None, port: int | None, log_level: str, workers: int) -> None:
    """Several uvicorn worker processes, each building the app from the import-string factory.

    Migrations run once here, before the workers start, so that they do not race on a fresh database.
    """
    import uvicorn

    from service.storage.db import make_engine, migrate

    settings.require_authentication()  # fail fast on an unsafe configuration before forking
    engine = make_engine(settings.database_url)
    migrate(engine)
    engine.dispose()
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
        proxy_headers=False,
        server_header=False,
    )


def _graceful_server_class() -> type:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """A uvicorn server whose SIGTERM stop ends the process with status 0.

        uvicorn re-raises SIGTERM after its graceful shutdown (the process then dies with -15); a stop requested
        by SIGTERM is a normal, successful end for ``polku serve``.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

    return GracefulServer


def _GracefulServer(config: object) -> Any:  # noqa: N802 - behaves like a class
    return _graceful_server_class()(config)


@app.command()
def token(
    role: Annotated[str, typer.Option(help="counsellor, coordinator, data_scientist or admin.")],
    centre: Annotated[str | None, typer.Option(help="Centre id (helsinki, espoo, vantaa, tampere, turku).")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 8 * 3600,
    sub: Annotated[str | None, typer.Option(help="Subject (staff pseudonym).")] = None,
) -> None:
    """Print a signed token for local use."""
    from service.auth import mint_token
    from service.settings import Settings

    try:
        typer.echo(mint_token(Settings(), role=role, centre=centre, subject=sub, ttl_s=ttl))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("openapi")
def openapi_cmd(
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file (default: print).")] = None,
) -> None:
    """Print or write the OpenAPI document of the API (published as docs/openapi.json)."""
    from service.app import openapi_document, openapi_json

    text = openapi_json(openapi_document())
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}")


@app.command("load-world")
def load_world_cmd(
    world: Annotated[Path | None, typer.Option("--world", help="World directory (default: <data>/world).")] = None,
) -> None:
    """Load a saved world's clients (with consents and audit attributes) and opportunities into the store."""
    from features.paths import world_dir
    from service.settings import Settings
    from service.storage.db import make_engine, make_session_factory, migrate
    from service.world_io import load_world

    settings = Settings()
    engine = make_engine(settings.database_url)
    migrate(engine)
    with make_session_factory(engine)() as session:
        report = load_world(session, world or world_dir())
    engine.dispose()
    typer.echo(
        f"loaded {report.clients} clients ({report.new_clients} new), {report.audit} audit records, "
        f"{report.opportunities} opportunities ({report.new_opportunities} new)"
    )


@app.command("export-training-data")
def export_training_data_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output file (JSON lines).")],
) -> None:
    """Export de-identified profiles, impressions and feedback of clients who consented to model training."""
    from service.export import export_training_data
    from service.settings import Settings
    from service.storage.db import make_engine, make_session_factory, migrate

    settings = Settings()
    engine = make_engine(settings.database_url)
    migrate(engine)
    with make_session_factory(engine)() as session:
        report = export_training_data(session, out)
    engine.dispose()
    typer.echo(
        f"exported {report.clients} clients, {report.impressions} impressions and {report.feedback} feedback events "
        f"to {report.path}"
    )


@app.command("code")
def code_cmd(
    text: Annotated[str, typer.Argument(help="A job title, ad or work-history note (fi, en or sv).")],
    lang: Annotated[str | None, typer.Option(help="fi, en or sv (default: guessed).")] = None,
    k: Annotated[int, typer.Option(min=1, max=20, help="Occupations to list.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API answer (CodingResponse) as JSON.")] = False,
) -> None:
    """Propose ESCO occupations, ISCO-08 codes and skills for a text, as POST /v1/coding:suggest does."""
    from pydantic import ValidationError

    from features.coding import default_coder
    from service.coding import suggest_for_request
    from service.schemas_coding import CodingRequest

    try:
        req = CodingRequest.model_validate({"text": text, "lang": lang, "k": k})
    except ValidationError as exc:
        from service.errors import validation_errors

        reasons = "; ".join(f"{e['field']}: {e['reason']}" for e in validation_errors(exc.errors(include_input=False)))
        raise typer.BadParameter(reasons) from exc
    answer = suggest_for_request(default_coder(), req)
    if as_json:
        typer.echo(answer.model_dump_json(indent=2))
        return
    how = "guessed" if answer.language_detected else "given"
    typer.echo(f"language: {answer.language} ({how}), coverage {answer.coverage}")
    for note in answer.notes:
        typer.echo(f"note: {note}")
    for occ in answer.occupations:
        label = occ.label_fi if answer.language == "fi" else occ.label_en
        typer.echo(f"{occ.rank:>2}. {occ.score:.3f}  ISCO {occ.isco}  {label}  <{occ.esco_uri}>")
        typer.echo(f"    matched: {occ.matched_label}")
    if answer.top_occupation_skills is not None:
        top = answer.top_occupation_skills
        typer.echo(f"skills of the top occupation: {len(top.essential)} essential, {len(top.optional)} optional")
        for skill in top.essential[:10]:
            typer.echo(f"   - {skill.label}")
    if answer.skills_in_text:
        typer.echo("skills named in the text:")
        for named in answer.skills_in_text:
            typer.echo(f"   - {named.label}: {' '.join(named.words)}")


@app.command("retention")
def retention_cmd(
    apply: Annotated[
        bool, typer.Option("--apply", help="Delete and de-identify the rows counted (default: only count them).")
    ] = False,
) -> None:
    """Apply the retention periods (POLKU_RETENTION_*): count the rows due, then with --apply change them.

    Audit-log rows older than POLKU_RETENTION_AUDIT_DAYS are deleted; feedback older than
    POLKU_RETENTION_FEEDBACK_DAYS is de-identified. The count and the change use one cutoff, in one transaction.
    """
    from service.settings import Settings
    from service.storage.db import make_engine, make_session_factory, migrate
    from service.storage.retention import apply_retention, plan_retention, retention_periods
    from service.storage.tables import utcnow

    settings = Settings()
    engine = make_engine(settings.database_url)
    migrate(engine)
    now = utcnow()
    try:
        with make_session_factory(engine)() as session:
            plan = plan_retention(session, settings, now)
            typer.echo("dry run:\n" + retention_periods(plan))
            if not apply:
                typer.echo("nothing changed; run with --apply to apply")
                return
            done = apply_retention(session, settings, now)
            session.commit()
            typer.echo("applied:\n" + retention_periods(done))
    finally:
        engine.dispose()


@app.command("allocate")
def allocate_cmd(
    centre: Annotated[str, typer.Option("--centre", help="A centre, or 'all'.")] = "all",
    on: Annotated[
        str | None, typer.Option("--date", help="Reference date YYYY-MM-DD (default: today).", show_default=False)
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Existing Dask scheduler, e.g. tcp://host:8786 (default: local).")
    ] = None,
    solver: Annotated[str, typer.Option("--solver", help="highs (exact LP, default) or sinkhorn (entropic OT).")] = (
        "highs"
    ),
    workers: Annotated[int, typer.Option(min=1, help="Workers of the embedded LocalCluster.")] = 2,
    processes: Annotated[
        bool,
        typer.Option("--processes/--threads", help="Embedded cluster: worker processes (large runs) or threads."),
    ] = False,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Score with a saved model bundle instead of the registry champion.")
    ] = None,
    mlflow_log: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log each run to MLflow.")] = True,
    top_k: Annotated[
        int, typer.Option("--top-k", min=0, help="Pairs kept per (client, kind) list for the LP (0: all).")
    ] = 50,
    block_clients: Annotated[int, typer.Option("--block-clients", min=1, help="Clients per Dask task.")] = 200,
    memory_limit: Annotated[
        str, typer.Option("--memory-limit", help="Per worker of the embedded cluster (auto, 2GB, 0: none).")
    ] = "auto",
) -> None:
    """Nightly allocation: score all eligible pairs on Dask, solve under seat capacity, store congestion prices."""
    from datetime import date

    from features.centres import CENTRES
    from models.allocation import SOLVERS
    from service.allocate import AllocateOptions, run_allocation
    from service.settings import Settings

    if centre != "all" and centre not in CENTRES:
        raise typer.BadParameter(f"one of all, {', '.join(CENTRES)}", param_hint="--centre")
    if solver not in SOLVERS:
        raise typer.BadParameter(f"one of {', '.join(SOLVERS)}", param_hint="--solver")
    try:
        day = date.fromisoformat(on) if on else date.today()
    except ValueError as exc:
        raise typer.BadParameter("a date YYYY-MM-DD", param_hint="--date") from exc
    if bundle is not None and not bundle.is_dir():
        raise typer.BadParameter(f"{bundle} is not a model bundle directory", param_hint="--bundle")
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    options = AllocateOptions(
        centres=tuple(CENTRES) if centre == "all" else (centre,),
        on=day,
        solver=solver,  # type: ignore[arg-type]
        scheduler=scheduler,
        workers=workers,
        processes=processes,
        bundle=bundle,
        block_clients=block_clients,
        top_k=top_k or None,
        memory_limit=None if memory_limit in ("0", "none") else memory_limit,
        log_mlflow=mlflow_log,
    )
    for run in run_allocation(Settings(), options):
        typer.echo(
            f"{run.centre}: run {run.run_id}, {run.n_clients} clients x {run.n_items} items ({run.n_pairs} pairs), "
            f"{run.priced_items} items priced, {run.allocated} lists allocated, value {run.total_value:.1f}, "
            f"scoring {run.score_seconds:.1f} s, solving {run.solve_seconds:.2f} s, total {run.seconds:.1f} s"
        )
