"""Typer sub-app for offline work: world, train, evaluate, promote."""

import typer

app = typer.Typer(no_args_is_help=True)
