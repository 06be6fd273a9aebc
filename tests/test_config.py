from __future__ import annotations

from pathlib import Path

import pytest

from featurelake.config import FeatureStoreConfig, OnlineBackend, StoreMode, load_config
from featurelake.errors import ConfigurationError


def test_from_dict_applies_defaults_and_types() -> None:
    config = FeatureStoreConfig.from_dict(
        {"storage_path": "/tmp/s", "mode": "hybrid", "hybrid_threshold_rows": "500"}, environ={}
    )
    assert config.mode is StoreMode.HYBRID
    assert config.hybrid_threshold_rows == 500
    assert config.online_backend is OnlineBackend.MEMORY
    assert config.effective_spark_conf["spark.sql.session.timeZone"] == "UTC"


def test_from_yaml(tmp_path: Path) -> None:
    file = tmp_path / "featurelake.yaml"
    file.write_text(
        "storage_path: /data/store\nmode: MATERIALIZED\nenable_online_store: true\n"
        "online_backend: redis\nonline_url: redis://localhost:6379/0\n"
        "spark_conf:\n  spark.sql.shuffle.partitions: 4\n"
    )
    config = FeatureStoreConfig.from_yaml(file, environ={})
    assert config.storage_path == "/data/store"
    assert config.enable_online_store is True
    assert config.online_backend is OnlineBackend.REDIS
    assert config.spark_conf == {"spark.sql.shuffle.partitions": "4"}


def test_load_config_reads_conf_folder_of_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "featurelake.yaml").write_text("storage_path: ./store\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).storage_path == "./store"


def test_environment_overrides_file_values() -> None:
    env = {
        "FEATURELAKE_STORAGE_PATH": "/env/store",
        "FEATURELAKE_MAX_RETRIES": "9",
        "FEATURELAKE_SYNC_TO_ONLINE": "yes",
        "FEATURELAKE_SPARK_CONF": "spark.a=1,spark.b=2",
    }
    config = FeatureStoreConfig.from_dict({"storage_path": "/file/store"}, environ=env)
    assert config.storage_path == "/env/store"
    assert config.max_retries == 9
    assert config.sync_to_online is True
    assert config.spark_conf == {"spark.a": "1", "spark.b": "2"}


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"storage_path": "/s", "hybrid_threshold_rows": -1}, "hybrid_threshold_rows"),
        ({"storage_path": "/s", "mode": "SOMETIMES"}, "mode"),
        ({}, "storage_path"),
        ({"storage_path": ""}, "storage_path"),
        ({"storage_path": "/s", "max_retries": -2}, "max_retries"),
        ({"storage_path": "/s", "max_retries": "many"}, "max_retries"),
        ({"storage_path": "/s", "retry_backoff_multiplier": 0.5}, "retry_backoff_multiplier"),
        ({"storage_path": "/s", "online_backend": "memcached"}, "online_backend"),
        ({"storage_path": "/s", "online_backend": "redis"}, "online_url"),
        ({"storage_path": "/s", "enable_online_store": "maybe"}, "enable_online_store"),
        ({"storage_path": "/s", "online_timeout_ms": 0}, "online_timeout_ms"),
        ({"storage_path": "/s", "spark_remote": "http://x"}, "spark_remote"),
    ],
)
def test_invalid_values_name_the_key(values: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        FeatureStoreConfig.from_dict(values, environ={})
    assert raised.value.details.get("key") == key
    assert key in str(raised.value)
    assert "Fix:" in str(raised.value)


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="storage_pth"):
        FeatureStoreConfig.from_dict({"storage_pth": "/s"}, environ={})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        FeatureStoreConfig.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage_path: [unclosed\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        FeatureStoreConfig.from_yaml(bad)


@pytest.mark.parametrize("mode", ["HYBRID", "hybrid", "Hybrid", StoreMode.HYBRID])
def test_the_constructor_takes_enum_names_like_from_dict(mode: object) -> None:
    config = FeatureStoreConfig(
        storage_path="/s", mode=mode, online_backend="REDIS", online_url="redis://h:1/0"
    )  # type: ignore[arg-type]
    assert config.mode is StoreMode.HYBRID
    assert config.online_backend is OnlineBackend.REDIS
    assert FeatureStoreConfig(storage_path="/s", registry_engine="Delta-RS").registry_engine == (
        "delta-rs"
    )
    assert config.replace(mode="virtualized").mode is StoreMode.VIRTUALIZED  # type: ignore[arg-type]


def test_the_constructor_names_a_bad_enum_value() -> None:
    with pytest.raises(ConfigurationError) as raised:
        FeatureStoreConfig(storage_path="/s", mode="SOMETIMES")  # type: ignore[arg-type]
    assert raised.value.details["key"] == "mode"
    assert "MATERIALIZED" in str(raised.value)
