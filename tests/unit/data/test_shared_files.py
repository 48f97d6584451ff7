"""The shared data files, on local files and on a real S3 server (SeaweedFS): written whole,
listed without a writer's temporaries, grouped by partition, moved and removed; an unusable
store is one clear error before anything is written."""

from __future__ import annotations

import pyarrow as pa
import pytest

from app.data.schema import DataError
from app.data.shared_files import shared_files
from tests.configs import make_config
from tests.helpers import free_port
from tests.objectstore import SECRET_KEY


@pytest.fixture
def files(state_storage, tmp_path):
    return shared_files(make_config(tmp_path, storage=state_storage).storage).check()


def table(n: int) -> pa.Table:
    return pa.table({"id": list(range(n))})


def test_files_are_listed_by_partition_read_moved_and_removed(files):
    run = files.uri("staging", "run-1")
    for day, n in (("2026-01-02", 3), ("2026-01-01", 2), ("2026-01-01", 1)):
        files.write_parquet(f"{run}/_part={day}/{day}-{n}.parquet", table(n))
    files.write_bytes(f"{run}/_part=2026-01-01/.x.parquet.tmp-1", b"half")  # a writer's temporary
    files.write_bytes(f"{run}/_part=2026-01-01/.y.parquet", b"half")
    parts = files.partitions(run, "_part")
    assert sorted(parts) == ["2026-01-01", "2026-01-02"] and len(parts["2026-01-01"]) == 2
    assert all(uri.startswith(files.location) for uri in parts["2026-01-01"])
    assert files.read_table(parts["2026-01-01"]).num_rows == 3
    assert files.parquet(parts["2026-01-02"][0]).metadata.num_rows == 3
    assert sorted(files.names(run)) == ["_part=2026-01-01", "_part=2026-01-02"]

    moved = files.uri("quarantine", "run=1", "x.parquet")
    files.move(parts["2026-01-02"][0], moved)
    assert files.exists(moved) and not files.exists(parts["2026-01-02"][0])
    files.remove(run)
    assert files.parquet_files(run) == [] and files.read_bytes(f"{run}/x") is None
    files.remove(run)  # removing what is gone is nothing
    files.delete(moved)
    assert not files.exists(moved)


def test_bytes_round_trip_and_a_folder_of_its_own_shares_the_store(files):
    log = files.under("traffic")
    log.write_bytes(log.uri("snapshot", "snapshot.json"), b"{}")
    assert files.read_bytes(files.uri("traffic", "snapshot", "snapshot.json")) == b"{}"
    assert log.properties == files.properties


def test_an_unreachable_endpoint_is_one_clear_error(tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"
    cfg = make_config(tmp_path, storage={"state": "s3://shared/x", "catalog": {"s3.endpoint": endpoint}})
    with pytest.raises(DataError, match=r"the shared files' store s3://shared/x is not usable: \S"):
        shared_files(cfg.storage).check()


@pytest.mark.parametrize(
    ("state", "secret"), [("s3://no-such-bucket/x", SECRET_KEY), ("s3://state/x", "wrong")]
)
def test_a_missing_bucket_or_wrong_credentials_are_one_clear_error(s3_server, tmp_path, state, secret):
    cfg = make_config(tmp_path, storage={"state": state, "catalog": s3_server.catalog(secret=secret)})
    with pytest.raises(DataError, match=rf"the shared files' store {state} is not usable: \S") as error:
        shared_files(cfg.storage).check()
    assert "\n" not in str(error.value)


def test_a_parquet_write_that_fails_half_way_publishes_nothing(files, monkeypatch):
    import pyarrow.parquet as pq

    real = pq.write_table

    def fails_after_the_header(table, where, **kwargs):
        real(table.slice(0, 1), where, **kwargs)  # something is written to the sink first
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(pq, "write_table", fails_after_the_header)
    uri = files.uri("features", "date=2026-01-01", "part-0.parquet")
    with pytest.raises(RuntimeError, match="killed mid-write"):
        files.write_parquet(uri, table(100))
    assert not files.exists(uri)
