"""The `rnncore` commands that run an experiment (one module each).

Each module here defines ``register(subparsers)``, which adds its subcommand to the `rnncore`
parser and sets ``func`` to a function taking the parsed arguments and returning the exit status.
Shared argument types and options are in ``rnncore._cli``; a failure the command reports as
one line (status 1) is a ``rnncore._cli.CommandError``. The benchmark harness (benchmark.py)
parses its own arguments: `rnncore bench` hands them over. A module is imported only when the
parser is built, and it imports optional extras (matplotlib, statsmodels, torch) only when run.
"""

from __future__ import annotations

import argparse
import importlib

# Module names under rnncore.apps, in the order `rnncore --help` lists their commands.
COMMANDS: tuple[str, ...] = ("demo", "gradflow", "charlm", "seq2seq", "tag", "forecast", "nextword", "cost")


def register_all(subparsers: argparse._SubParsersAction) -> None:
    """Add every app's subcommand to ``subparsers``."""
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
