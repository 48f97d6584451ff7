"""Commands over outcomes: their producers (the systems of record whose outcomes `/feedback`
takes) and the outcome files those producers export (`mlsys outcomes load`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from app.cli.base import HELP_MARKUP, app, cfg_of, out

outcomes_app = typer.Typer(
    no_args_is_help=True, help="Outcomes and their producers.", rich_markup_mode=HELP_MARKUP
)
producer_app = typer.Typer(
    no_args_is_help=True, help="Producers allowed to report outcomes.", rich_markup_mode=HELP_MARKUP
)
app.add_typer(outcomes_app, name="outcomes")
outcomes_app.add_typer(producer_app, name="producer")
SHOWN_ONCE = "store it now: only its digest is kept ({path})"


def _store(ctx: typer.Context):
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.serving.producers import producer_store

    return producer_store(cfg)


@producer_app.command("add")
def producer_add(ctx: typer.Context, name: str) -> None:
    """Add the producer NAME and print its first token.

    The service takes outcomes on `/feedback` only with a producer's token, sent as
    `Authorization: Bearer <token>`; the admin token does not count."""
    store = _store(ctx)
    token = store.add(name)
    out.print(token, highlight=False)
    out.print(SHOWN_ONCE.format(path=store.location), style="dim")


@producer_app.command("rotate")
def producer_rotate(
    ctx: typer.Context,
    name: str,
    overlap_minutes: Annotated[
        float, typer.Option(min=0, help="how long the current token keeps working beside the new one")
    ] = 60.0,
) -> None:
    """Give the producer NAME a new token; the current one works for the overlap, then stops."""
    store = _store(ctx)
    token = store.rotate(name, overlap_s=overlap_minutes * 60)
    out.print(token, highlight=False)
    out.print(SHOWN_ONCE.format(path=store.location), style="dim")


@producer_app.command("revoke")
def producer_revoke(ctx: typer.Context, name: str) -> None:
    """Stop every token of the producer NAME at once."""
    _store(ctx).revoke(name)
    out.print(f"producer {name} revoked")


@producer_app.command("list")
def producer_list(ctx: typer.Context) -> None:
    """The producers and how many tokens each has that still work."""
    import time

    now = time.time()
    for name, keys in sorted(_store(ctx).producers().items()):
        current = [k for k in keys if k.expires_at is None or k.expires_at > now]
        out.print(f"{name}: {len(current)} current token(s)")


@outcomes_app.command("load")
def outcomes_load(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            metavar="FILE|DIR|URI", help="a csv, parquet or jsonl file, a folder of them, or a URI"
        ),
    ],
    producer: Annotated[str, typer.Option(metavar="NAME", help="the producer whose outcomes these are")],
) -> None:
    """Load outcomes that arrive later, from a file or a database export.

    Each row names its prediction by `request_id`, or by the dataset's entity column and a
    timestamp (the entity's latest prediction at or before it), and gives its label. Joined
    rows reach the running monitor as `/feedback`'s do, counted for the producer; the others are
    quarantined with their reason. Loading a file again adds nothing."""
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    from app.monitoring.outcome_load import MonitorUnreachable, load_outcomes

    check_producer(_store(ctx), producer)
    try:
        report = load_outcomes(cfg, source, producer)
    except MonitorUnreachable as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    out.print(report.summary(), highlight=False)
    if report.quarantine_file:
        out.print(f"quarantined rows, with their reasons: {report.quarantine_file}", highlight=False)


def check_producer(store, name: str) -> None:
    """A ProducerError unless `name` is a producer with a token that still works."""
    import time

    from app.serving.producers import ProducerError

    keys = store.producers().get(name)
    now = time.time()
    if not keys or all(k.expires_at is not None and k.expires_at <= now for k in keys):
        raise ProducerError(
            f"no current producer {name!r} (revoked or never added): `mlsys outcomes producer list` "
            "shows them, `mlsys outcomes producer add` adds one"
        )
