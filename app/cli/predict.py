"""The batch inference command: files of raw rows scored by a registered model on Ray Data."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.base import app, cfg_of, out


@app.command()
def predict(
    ctx: typer.Context,
    input_path: Annotated[str, typer.Option("--input", help="csv/parquet file, folder or URI")],
    output: Annotated[str, typer.Option("--output", help="new (or empty) local folder")],
    version: Annotated[int | None, typer.Option("--version", min=1, help="registry version")] = None,
    alias: Annotated[str | None, typer.Option("--alias", help="registry alias [default: champion]")] = None,
    keys: Annotated[
        list[str] | None, typer.Option("--key", help="an input column to carry to the output (repeatable)")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="rows per model call")] = 50_000,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="most scoring actors [default: the cores]")
    ] = None,
) -> None:
    """Score files of raw rows with a registered model; bad rows go to quarantine.

    Each row is checked and its features derived as serving does, then scored on Ray Data by a
    pool of actors that each load the model once. The output folder gets `predictions/` (the
    entity and `--key` columns, request_id, model_version, score, label), `quarantine/` (each
    refused row with its reason) and `summary.json`; it appears only when the run is complete.
    """
    cfg = cfg_of(ctx)  # first: a config error answers before any import
    if version is not None and alias is not None:
        raise typer.BadParameter("give --version or --alias, not both")
    import os

    from app.batch.run import predict_files

    # MLflow draws a bar while it downloads a bundle; the command's output is its summary.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    report = predict_files(
        cfg,
        source=input_path,
        output=output,
        ref=version if version is not None else (alias or "champion"),
        keys=tuple(keys or ()),
        batch_size=batch_size,
        workers=workers,
    )
    for line in report.lines():
        out.print(line, highlight=False)
