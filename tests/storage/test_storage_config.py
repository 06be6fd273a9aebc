"""The storage section: parsed from the config, turned into each engine's settings, and never
showing a credential (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurelake import storage
from featurelake.config import FeatureStoreConfig
from featurelake.errors import ConfigurationError, FeatureStoreError
from featurelake.storage import StorageSettings

KEYS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE1", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value-abcdef"}
SECTION = {
    "endpoint": "http://127.0.0.1:8333",
    "region": "eu-west-1",
    "path_style": "true",
    "allow_http": True,
}


def _config(monkeypatch: pytest.MonkeyPatch, **section: object) -> FeatureStoreConfig:
    for key, value in KEYS.items():
        monkeypatch.setenv(key, value)
    return FeatureStoreConfig.from_dict(
        {"storage_path": "s3://bucket/features", "storage": {**SECTION, **section}}, environ={}
    )


def test_the_section_becomes_spark_and_delta_rs_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(monkeypatch)
    assert config.storage == StorageSettings(
        endpoint="http://127.0.0.1:8333", region="eu-west-1", path_style=True, allow_http=True
    )
    spark = config.effective_spark_conf
    assert spark["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:8333"
    assert spark["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"
    assert spark["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert spark["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert spark["spark.hadoop.fs.s3.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    assert spark["spark.hadoop.fs.s3a.access.key"] == KEYS["AWS_ACCESS_KEY_ID"]
    assert spark["spark.hadoop.fs.s3a.secret.key"] == KEYS["AWS_SECRET_ACCESS_KEY"]
    # what goes on a command line (a Connect server) holds no credential
    public = config.public_spark_conf
    assert KEYS["AWS_SECRET_ACCESS_KEY"] not in public.values()
    assert not any("access.key" in key or "secret" in key for key in public)

    options = storage.delta_options("s3://bucket/features/gold/spend/v1")
    assert options == {
        "AWS_REGION": "eu-west-1",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:8333",
        "AWS_CONDITIONAL_PUT": "etag",
        **KEYS,
    }
    assert storage.delta_options("/local/table") is None


def test_each_store_path_finds_its_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    _config(monkeypatch)
    FeatureStoreConfig(
        storage_path="s3://bucket/features/nested",
        storage=StorageSettings(region="ap-south-1", credentials="anonymous"),
    )
    assert storage.settings_for("s3a://bucket/features/x") == StorageSettings(
        endpoint="http://127.0.0.1:8333", region="eu-west-1", path_style=True, allow_http=True
    )
    nested = storage.delta_options("s3://bucket/features/nested/_registry/objects")
    assert nested is not None
    assert nested["AWS_REGION"] == "ap-south-1" and nested["AWS_SKIP_SIGNATURE"] == "true"
    assert "AWS_ACCESS_KEY_ID" not in nested


def test_credentials_from_a_profile(tmp_path: Path) -> None:
    file = tmp_path / "credentials"
    file.write_text(
        "[default]\naws_access_key_id = A\naws_secret_access_key = B1234\n"
        "[ci]\naws_access_key_id = AKIDCI\naws_secret_access_key = ci-secret-123\n"
        "aws_session_token = tok-4567\n"
    )
    settings = StorageSettings(credentials="profile", profile="ci")
    resolved = settings.resolve_credentials({"AWS_SHARED_CREDENTIALS_FILE": str(file)})
    assert resolved.access_key_id is not None and resolved.access_key_id.reveal() == "AKIDCI"
    assert resolved.session_token is not None and resolved.session_token.reveal() == "tok-4567"
    assert "ci-secret-123" not in repr(resolved)
    with pytest.raises(ConfigurationError, match="profile 'nope' is not in"):
        StorageSettings(credentials="profile", profile="nope").resolve_credentials(
            {"AWS_SHARED_CREDENTIALS_FILE": str(file)}
        )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"secret_access_key": "x"}, "Credentials are never written in the config"),
        ({"endpoint": "http://127.0.0.1:8333"}, "plain HTTP, which is refused"),
        ({"endpoint": "127.0.0.1:8333"}, "is not an http\\(s\\) URL"),
        ({"credentials": "vault"}, "storage.credentials to one of env, profile, anonymous"),
        ({"credentials": "profile"}, "storage.profile is not set"),
        ({"path_style": "sometimes"}, "storage.path_style to true or false"),
        ({"conditional_put": "maybe"}, "storage.conditional_put to etag"),
    ],
)
def test_bad_sections_say_what_to_fix(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        FeatureStoreConfig.from_dict({"storage_path": "s3://b/p", "storage": section}, environ={})


def test_the_section_can_come_from_the_environment() -> None:
    config = FeatureStoreConfig.from_dict(
        {"storage_path": "s3://b/p"},
        environ={"FEATURELAKE_STORAGE": "{endpoint: 'https://s3.example.com', region: x}"},
    )
    assert config.storage == StorageSettings(endpoint="https://s3.example.com", region="x")


def test_credentials_never_show_in_errors_or_descriptions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config(monkeypatch)
    secret = KEYS["AWS_SECRET_ACCESS_KEY"]
    config.effective_spark_conf  # noqa: B018 - resolves (and registers) the credentials
    assert secret not in repr(config) and secret not in str(config.storage.to_dict())
    error = FeatureStoreError(f"the server said: bad signature for key {secret}", fix="retry")
    assert secret not in str(error) and "***" in str(error)
