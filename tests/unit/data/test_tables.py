"""mlsys's Iceberg tables: created once with the contract's schema, refused when a later
layout wrote them, and a catalog that cannot be used is one clear line."""

from __future__ import annotations

import pytest

from app.data import tables, warehouse
from app.data.schema import DataError, arrow_schema
from tests.configs import make_config


def test_the_warehouse_is_created_once_partitioned_by_day_and_not_before_etl_when_asked(tmp_path):
    cfg = make_config(tmp_path)
    with pytest.raises(DataError, match="run `mlsys etl` first"):
        warehouse.open_table(cfg, create=False)
    table = warehouse.open_table(cfg)
    assert table.location() == cfg.storage.warehouse.as_uri()
    assert [f.name for f in table.spec().fields] == [warehouse.DAY]
    assert table.schema().as_arrow().names == arrow_schema(cfg.dataset, with_meta=False).names
    assert warehouse.open_table(cfg).metadata_location == table.metadata_location  # not made again
    assert tables.version(table) == tables.TableVersion(None, 0)


def test_a_table_written_by_a_newer_layout_is_refused_never_read(tmp_path):
    cfg = make_config(tmp_path)
    table = warehouse.open_table(cfg)
    table.transaction().set_properties({tables.LAYOUT_KEY: str(tables.LAYOUT + 1)}).commit_transaction()
    with pytest.raises(DataError, match=f"has mlsys layout {tables.LAYOUT + 1}; this mlsys reads layout"):
        warehouse.open_table(cfg)


def test_an_unknown_snapshot_is_a_clear_error(tmp_path):
    table = warehouse.open_table(make_config(tmp_path))
    with pytest.raises(DataError, match="has no snapshot 42"):
        tables.version(table, 42)


def test_a_catalog_that_cannot_be_used_is_one_line_naming_it(tmp_path):
    cfg = make_config(
        tmp_path, storage={"catalog": {"type": "sql", "uri": f"sqlite:///{tmp_path}/no/such/dir/c.db"}}
    )
    with pytest.raises(DataError, match=r"the table catalog sqlite:///.*c\.db is not usable") as error:
        warehouse.open_table(cfg)
    assert "\n" not in str(error.value)
