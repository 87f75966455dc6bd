"""The `polku` command line: composition root joining the training and service sub-apps."""

import typer

from service.cli import app as service_app
from training.cli import app as training_app

app = typer.Typer(help="Polku: matching and recommendation engine for competence centres.", no_args_is_help=True)
app.add_typer(training_app)
app.add_typer(service_app)

if __name__ == "__main__":
    app()
