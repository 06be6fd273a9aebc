"""The `featurelake` command line (Typer). Entry point: `featurelake.cli:main`."""

from featurelake.cli.app import app, main, run

__all__ = ["app", "main", "run"]
