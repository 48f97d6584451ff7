"""DuckDB with its Iceberg reader, loaded from the extension wheels (nothing is downloaded):
another engine reading mlsys's tables without mlsys."""

from __future__ import annotations

from pathlib import Path


def duckdb_with_iceberg():
    import duckdb
    import duckdb_extension_avro
    import duckdb_extension_iceberg

    con = duckdb.connect()
    for package in (duckdb_extension_avro, duckdb_extension_iceberg):  # avro first: iceberg needs it
        (binary,) = Path(package.__file__).parent.glob("extensions/*/*.duckdb_extension")
        con.execute(f"LOAD '{binary}'")
    return con
