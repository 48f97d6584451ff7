"""The `mlsys` command line: each command is parse -> one library call -> one view.

Errors a user can fix (config, input data) end as one `error:` line and exit code 2;
nothing else is caught, so real bugs keep their traceback. Commands import what they need
when they run, so `mlsys --help` and a config error answer at once.
"""

from __future__ import annotations

import sys

from rich.console import Console

from app.cli import build, operate, outcomes, predict  # noqa: F401  (registers their commands, in this order)
from app.cli.base import app
from app.config import ConfigError


def user_errors() -> tuple[type[Exception], ...]:
    """Errors a user can fix, imported only once something was raised: the command line
    itself must not pull in torch, Ray or Feast before it parses its arguments."""
    from app.cluster.connection import ClusterUnavailable
    from app.data.schema import DataError
    from app.model.bundle import BundleError
    from app.registry.registry import RegistryError
    from app.serving.app import NothingToServe, ServiceNotReady
    from app.serving.producers import ProducerError
    from app.training.dataset import TrainingDataError

    fixable = (ConfigError, DataError, TrainingDataError, RegistryError, BundleError)
    return (*fixable, ClusterUnavailable, NothingToServe, ServiceNotReady, ProducerError)


def main() -> None:
    try:
        app()
    except Exception as exc:  # not SystemExit: `--help` and usage errors exit without imports
        # A config error needs no imports; the others' classes are imported only now.
        fixable = isinstance(exc, ConfigError) or isinstance(exc, user_errors())  # noqa: SIM101
        if not fixable:
            raise
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
