"""The command line's shared parts: the typer apps, the output console, the config and
what a Ctrl-C prints."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from app.config import AppConfig, load_config

# Help texts are the commands' docstrings, read as Markdown: a paragraph wrapped in the source
# is one paragraph on the terminal, and the first paragraph (one sentence) is the command's line
# in its group's list.
HELP_MARKUP = "markdown"
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="mlsys: a Ray-native ML system (ETL, features, training, serving, drift).",
    rich_markup_mode=HELP_MARKUP,
)
data_app = typer.Typer(no_args_is_help=True, help="Built-in data set.", rich_markup_mode=HELP_MARKUP)
features_app = typer.Typer(no_args_is_help=True, help="Feast feature store.", rich_markup_mode=HELP_MARKUP)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
# Piped output (logs, scripts, tests) gets wide lines instead of rich's 80-column default,
# so tables are not truncated mid-word.
out = Console(width=None if sys.stdout.isatty() else 200)
models_app = typer.Typer(no_args_is_help=True, help="MLflow model registry.", rich_markup_mode=HELP_MARKUP)
app.add_typer(models_app, name="models")

# Why a Ctrl-C'd pipeline is safe to run again: every write it makes is atomic (warehouse
# partitions, the registry's aliases), ETL skips rows already in the warehouse and training
# starts over, so the re-run ends where an uninterrupted run would have.
INTERRUPTED = (
    "interrupted: {what} stopped before it finished. Nothing half-written is kept (warehouse "
    "partitions and registry aliases change atomically); run the same command again: ETL skips "
    "rows already in the warehouse and training starts over."
)


@contextmanager
def rerun_hint_on_ctrl_c(what: str) -> Iterator[None]:
    """Ctrl-C ends a long command with exit code 130 and what to do next, not click's `Aborted!`."""
    try:
        yield
    except KeyboardInterrupt:
        Console(stderr=True, soft_wrap=True).print(INTERRUPTED.format(what=what), highlight=False)
        raise typer.Exit(130) from None


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="config YAML")] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="also show the log lines of Ray, Tune, Serve and MLflow")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        quiet_library_warnings()
        # MLflow logs its registry database's creation and migrations at INFO on a handler of
        # its own; it reads this when first imported (in this process and the ones it starts).
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        # With a tracking server, MLflow prints "View run … at: <url>" as each run ends (every
        # Tune trial, every registration): links for its UI's users, noise here.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    ctx.obj = {"config_path": config}


def quiet_library_warnings() -> None:
    """Libraries' deprecation and future warnings are for their callers' developers, not for
    a user's terminal: hidden here, and in Ray's workers (`cluster.WORKER_ENV`). Warnings
    raised from mlsys's own modules stay visible; `--verbose` shows everything."""
    import warnings

    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=r"^(?!app\b)")


def cfg_of(ctx: typer.Context) -> AppConfig:
    return load_config(ctx.obj["config_path"])
