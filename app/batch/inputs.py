"""Batch scoring's input: csv and parquet files behind a path, folder or URI, their headers
checked before any Ray work, and their rows counted apart from the scoring pass (the count that
conservation is checked against)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from app.batch.checks import Layout
from app.batch.scoring import LABEL, MODEL_VERSION, RAW, REASON, REQUEST_ID, SCORE
from app.config import DatasetConfig
from app.data.inputs import file_format, filesystem, header, resolve_inputs
from app.data.schema import DataError

READABLE = ("csv", "parquet")
# What the output holds besides the carried columns: a --key must not collide with them.
OUTPUT_COLUMNS = (REQUEST_ID, MODEL_VERSION, SCORE, LABEL, REASON, RAW)


def input_files(source: str) -> list[str]:
    """The csv and parquet files behind `source` (a DataError names what is wrong with it)."""
    paths = resolve_inputs(source)
    other = [p for p in paths if file_format(p) not in READABLE]
    if other:
        raise DataError(f"{other[0]}: batch scoring reads csv and parquet files, not {file_format(other[0])}")
    return paths


def layout_of(paths: list[str], ds: DatasetConfig, keys: tuple[str, ...]) -> Layout:
    """Check every file holds the model's features and the asked-for keys; the entity is
    carried when any file has it (a file without it gives null ids)."""
    taken = {*ds.features, ds.timestamp, ds.entity, ds.label, *OUTPUT_COLUMNS}
    clash = [k for k in keys if k in taken]
    if clash:
        raise DataError(f"--key {clash[0]!r}: already a feature, the entity, the label or an output column")
    has_entity = False
    for path in paths:
        names = {ds.rename.get(c, c) for c in header(path)}
        missing = [c for c in [*ds.features, *keys] if c not in names]
        if missing:
            raise DataError(f"{path}: missing required column(s) {missing}")
        has_entity = has_entity or ds.entity in names
    return Layout(entity=ds.entity if has_entity else None, keys=tuple(keys))


def text_columns(ds: DatasetConfig, layout: Layout) -> dict[str, pa.DataType]:
    """CSV columns read as text, by their names in the file: a stray "abc" in a numeric column
    is then one quarantined row, not a failed type inference, and ids keep their digits."""
    inverse = {clean: raw for raw, clean in ds.rename.items()}
    names = [*ds.features, ds.timestamp, *layout.carried]
    return {inverse.get(c, c): pa.string() for c in names}


def _raw_names(ds: DatasetConfig) -> list[tuple[str, str]]:
    """(name in the file, name in the config) of every feature."""
    inverse = {clean: raw for raw, clean in ds.rename.items()}
    return [(inverse.get(c, c), c) for c in ds.features]


def csv_options(ds: DatasetConfig, layout: Layout) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(column_types=text_columns(ds, layout), strings_can_be_null=True)


# A quoted value may hold a line break (a free-text key column): it stays one row.
CSV_PARSE = pacsv.ParseOptions(newlines_in_values=True)


def count_rows(paths: list[str], ds: DatasetConfig, layout: Layout) -> int:
    """Input rows, counted apart from the scoring pass: a parquet file's from its footer, a csv
    file's by streaming one column of it through the same parser (pyarrow's), in pieces."""
    total = 0
    for path in paths:
        fs, p = filesystem(path)
        if file_format(path) == "parquet":
            with fs.open_input_file(p) as fh:
                total += pq.ParquetFile(fh).metadata.num_rows
            continue
        options = csv_options(ds, layout)
        options.include_columns = [_raw_names(ds)[0][0]]  # one column: parsed, not converted
        with (
            fs.open_input_stream(p) as fh,
            pacsv.open_csv(fh, parse_options=CSV_PARSE, convert_options=options) as reader,
        ):
            total += sum(batch.num_rows for batch in reader)
    return total
