"""A store on s3:// against a real S3-compatible server (SeaweedFS on loopback, s3 mode only):
concurrent writers on one table lose nothing, and credentials never show."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import uuid
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from featurelake import storage
from featurelake.config import FeatureStoreConfig
from featurelake.errors import FeatureStoreError
from featurelake.gold.delta_reader import open_snapshot, read_arrow
from featurelake.registry import Registry
from featurelake.s3_server import LocalS3Server
from featurelake.schema import FeatureGroupSchema

SCHEMA = pa.schema([pa.field("writer", pa.string()), pa.field("batch", pa.int64())])
BATCHES = 6


def _store(s3_server: LocalS3Server) -> FeatureStoreConfig:
    return FeatureStoreConfig(
        storage_path=f"s3://featurelake/{uuid.uuid4().hex[:12]}/store",
        storage=s3_server.settings(),
        max_retries=10,
        retry_backoff_ms=20,
    )


def _rows(path: str) -> list[tuple[str, int]]:
    table = read_arrow(open_snapshot(path))
    return sorted(zip(table["writer"].to_pylist(), table["batch"].to_pylist(), strict=True))


def test_spark_and_delta_rs_append_to_one_s3_table_and_lose_nothing(
    spark: SparkSession, s3_server: LocalS3Server
) -> None:
    path = f"{_store(s3_server).storage_path}/shared"
    storage.create_table(path, SCHEMA)
    errors: list[BaseException] = []

    def spark_writer() -> None:
        try:
            for batch in range(BATCHES):
                frame = spark.createDataFrame([("spark", batch)], "writer string, batch bigint")
                frame.write.format("delta").mode("append").save(path)
        except BaseException as error:  # reported below
            errors.append(error)

    def delta_rs_writer() -> None:
        try:
            for batch in range(BATCHES):
                data = pa.Table.from_pylist([{"writer": "delta-rs", "batch": batch}], SCHEMA)
                storage.write_verified(path, data, mode="append")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=spark_writer), threading.Thread(target=delta_rs_writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    expected = [(who, b) for who in ("delta-rs", "spark") for b in range(BATCHES)]
    assert _rows(path) == sorted(expected)
    # Spark reads the same snapshot
    assert spark.read.format("delta").load(path).count() == 2 * BATCHES


WRITER = textwrap.dedent(
    """
    import json, sys
    import pyarrow as pa
    from featurelake import storage
    from featurelake.config import FeatureStoreConfig
    from featurelake.registry import Registry
    from featurelake.schema import FeatureGroupSchema
    from featurelake.storage import StorageSettings

    args = json.loads(sys.argv[1])
    config = FeatureStoreConfig(
        storage_path=args["root"], storage=StorageSettings(**args["storage"]),
        max_retries=20, retry_backoff_ms=20,
    )
    registry = Registry(config)
    schema = pa.schema([pa.field("writer", pa.string()), pa.field("batch", pa.int64())])
    for batch in range(args["batches"]):
        registry.register_group(FeatureGroupSchema.from_dict({
            "name": f"g_{args['name']}_{batch}", "entity_keys": ["user_id"],
            "timestamp_key": "ts", "features": [{"name": "x", "type": "double"}],
        }))
        data = pa.Table.from_pylist([{"writer": args["name"], "batch": batch}], schema)
        storage.write_verified(args["table"], data, mode="append")
    """
)


def test_two_processes_write_one_s3_store_and_lose_nothing(s3_server: LocalS3Server) -> None:
    config = _store(s3_server)
    table = f"{config.storage_path}/shared"
    storage.create_table(table, SCHEMA)
    processes = []
    for name in ("first", "second"):
        args = {
            "root": config.storage_path,
            "storage": s3_server.settings().to_dict(),
            "table": table,
            "name": name,
            "batches": BATCHES,
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", WRITER, json.dumps(args)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    for process in processes:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output.decode()[-3000:]
    names = {group.name for group in Registry(config).list_groups()}
    assert names == {f"g_{who}_{b}" for who in ("first", "second") for b in range(BATCHES)}
    assert _rows(table) == sorted((who, b) for who in ("first", "second") for b in range(BATCHES))


def test_credentials_reach_every_engine_and_never_show(
    spark: SparkSession, s3_server: LocalS3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _store(s3_server)
    registry = Registry(config)
    registry.register_group(
        FeatureGroupSchema.from_dict(
            {
                "name": "spend",
                "entity_keys": ["user_id"],
                "timestamp_key": "ts",
                "features": [{"name": "x", "type": "double"}],
            }
        )
    )
    secret = s3_server.secret_key.reveal()
    shown: list[Any] = [
        repr(config),
        config.public_spark_conf,
        config.storage.to_dict() if config.storage else None,
        registry.get_group("spend").to_dict(),
    ]
    assert all(secret not in str(item) for item in shown)
    # A wrong secret is refused by the server; the error names the path, never the key.
    wrong = "wrong-" + secret[6:]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    storage.Secret(wrong)  # as resolving the credentials does
    with pytest.raises(FeatureStoreError) as caught:
        Registry(config.replace(metadata_cache_ttl_seconds=0)).list_groups()
    assert config.storage_path in str(caught.value)
    assert wrong not in str(caught.value) and secret not in str(caught.value)
