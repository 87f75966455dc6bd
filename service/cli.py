"""Typer sub-app for the HTTP process: serve, token."""

import typer

app = typer.Typer(no_args_is_help=True)
