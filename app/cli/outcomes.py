"""Commands over outcome producers: the systems of record whose outcomes `/feedback` takes."""

from __future__ import annotations

from typing import Annotated

import typer

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
    from app.serving.producers import ProducerStore

    return ProducerStore(cfg.storage.producers)


@producer_app.command("add")
def producer_add(ctx: typer.Context, name: str) -> None:
    """Add the producer NAME and print its first token.

    The service takes outcomes on `/feedback` only with a producer's token, sent as
    `Authorization: Bearer <token>`; the admin token does not count."""
    store = _store(ctx)
    token = store.add(name)
    out.print(token, highlight=False)
    out.print(SHOWN_ONCE.format(path=store.path), style="dim")


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
    out.print(SHOWN_ONCE.format(path=store.path), style="dim")


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
