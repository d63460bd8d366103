"""The ``taskgate`` command line (see :mod:`taskgate.cli.commands`)."""

from taskgate.cli.commands import cli, load_app, main

__all__ = ["cli", "load_app", "main"]
