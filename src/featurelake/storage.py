"""Object storage: one `storage` section of the config, turned into what each engine needs.

A store on `s3://bucket/prefix` is read and written by three engines: Spark (through Hadoop's
S3A connector, `fs.s3a.*` settings), delta-rs (`storage_options`) and DuckDB (which reads the
Arrow tables delta-rs gives it, so it needs no extension of its own). `StorageSettings` holds
the one description of where the objects are and how to reach them; `spark_conf`,
`delta_options` turn it into each engine's settings.

Credentials are never written in the config: they come from the environment
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), from a named profile of the
shared credentials file, or are left out (anonymous). They are resolved when an engine needs
them and held as `Secret`, whose repr and str never show the value; the settings themselves
(what `describe`, the catalog, `/health` and logs show) hold none.

Commits on S3: S3 has no atomic rename, so delta-rs commits each `_delta_log/N.json` with a
conditional put (`If-None-Match: *`, `conditional_put: etag`): of two writers racing for one
version exactly one wins, the other gets a conflict and retries on the new version. Spark's
Delta log store for S3 (`S3SingleDriverLogStore`) is safe among the writers of one Spark
driver only; `write_verified` makes a delta-rs commit that shares a table with such a Spark
writer check that its version still holds its own commit, and commit again when a Spark write
replaced it, so nothing is lost.

Every `FeatureStoreConfig` registers its settings for the paths under its `storage_path`, so
a delta-rs call anywhere in the process finds the options of the store the path belongs to
(`delta_options(path)`).
"""

from __future__ import annotations

import configparser
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from featurelake.errors import ConcurrentWriteError, ConfigurationError, register_secret

if TYPE_CHECKING:
    from deltalake import DeltaTable

T = TypeVar("T")
OBJECT_STORE_SCHEMES = ("s3://", "s3a://")
CREDENTIAL_SOURCES = ("env", "profile", "anonymous")
CONDITIONAL_PUTS = ("etag", "none")
DEFAULT_REGION = "us-east-1"
COMMIT_TOKEN_KEY = "featurelake.commit"
SECRET_SPARK_KEYS = ("fs.s3a.access.key", "fs.s3a.secret.key", "fs.s3a.session.token")


class Secret:
    """A credential value that never shows itself in a repr, a str, a log or an error."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        """The value, for the engine that needs it (never for printing)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Credentials:
    """Resolved credentials (None values: anonymous access)."""

    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None

    @property
    def anonymous(self) -> bool:
        return self.access_key_id is None

    def revealed(self, names: tuple[str, str, str]) -> dict[str, str]:
        """The key id, the secret and (when there is one) the session token under `names`,
        revealed for the engine that needs them (never print it); empty when anonymous."""
        if self.anonymous:
            return {}
        assert self.access_key_id and self.secret_access_key
        found = {
            names[0]: self.access_key_id.reveal(),
            names[1]: self.secret_access_key.reveal(),
        }
        if self.session_token:
            found[names[2]] = self.session_token.reveal()
        return found


AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
"""The environment variables (and delta-rs options) of credentials."""


@dataclass(frozen=True)
class StorageSettings:
    """The `storage` section: where the object store is and how each engine reaches it.

    - `endpoint`: URL of an S3-compatible server (`http://127.0.0.1:8333`); None for AWS S3.
    - `region`: the bucket's region (default `$AWS_REGION`, then `us-east-1`).
    - `credentials`: `env` (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, the
      default), `profile` (the `profile` of `$AWS_SHARED_CREDENTIALS_FILE` or
      `~/.aws/credentials`) or `anonymous`.
    - `path_style`: address buckets as `endpoint/bucket/key` (most S3-compatible servers).
    - `allow_http`: allow a plain-HTTP endpoint (local servers only).
    - `conditional_put`: how delta-rs commits on S3 (`etag`: put-if-absent, safe for concurrent
      writers; `none`: unsafe renames, for servers without conditional writes, one writer only).
    """

    endpoint: str | None = None
    region: str | None = None
    credentials: str = "env"
    profile: str | None = None
    path_style: bool = False
    allow_http: bool = False
    conditional_put: str = "etag"

    def __post_init__(self) -> None:
        if self.credentials not in CREDENTIAL_SOURCES:
            raise ConfigurationError(
                f"The storage key 'credentials' is {self.credentials!r}.",
                fix="set storage.credentials to one of " + ", ".join(CREDENTIAL_SOURCES) + ".",
                key="storage.credentials",
            )
        if self.conditional_put not in CONDITIONAL_PUTS:
            raise ConfigurationError(
                f"The storage key 'conditional_put' is {self.conditional_put!r}.",
                fix="set storage.conditional_put to etag (or none for a server without "
                "conditional writes, with one writer per table).",
                key="storage.conditional_put",
            )
        if self.endpoint is not None:
            if not self.endpoint.startswith(("http://", "https://")):
                raise ConfigurationError(
                    f"The storage endpoint {self.endpoint!r} is not an http(s) URL.",
                    fix="set storage.endpoint to e.g. 'https://s3.example.com' or "
                    "'http://127.0.0.1:8333'.",
                    key="storage.endpoint",
                )
            if self.endpoint.startswith("http://") and not self.allow_http:
                raise ConfigurationError(
                    f"The storage endpoint {self.endpoint} is plain HTTP, which is refused "
                    "unless allowed.",
                    fix="use an https:// endpoint, or set storage.allow_http: true for a local "
                    "server.",
                    key="storage.allow_http",
                )
        if self.credentials == "profile" and not self.profile:
            raise ConfigurationError(
                "storage.credentials is 'profile' but storage.profile is not set.",
                fix="set storage.profile to a profile name of the shared credentials file.",
                key="storage.profile",
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> StorageSettings:
        """Build from the config's `storage` mapping, with an error naming unknown keys."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            hint = ""
            if any("key" in k or "secret" in k or "token" in k for k in unknown):
                hint = " Credentials are never written in the config: use the environment or "
                hint += "a profile (storage.credentials)."
            raise ConfigurationError(
                f"Unknown storage key(s): {', '.join(unknown)}.{hint}",
                fix=f"use only these storage keys: {', '.join(sorted(known))}.",
                keys=unknown,
            )
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if value is None:
                continue
            if name in ("path_style", "allow_http"):
                kwargs[name] = _as_bool(name, value)
            else:
                kwargs[name] = str(value)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The settings as shown by `describe`/`health` (they never hold a secret)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def resolved_region(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        return (
            self.region
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
            or (DEFAULT_REGION)
        )

    def resolve_credentials(self, environ: Mapping[str, str] | None = None) -> Credentials:
        """The credentials from the environment or the profile (never from the config)."""
        env = os.environ if environ is None else environ
        if self.credentials == "anonymous":
            return Credentials()
        if self.credentials == "profile":
            return _profile_credentials(str(self.profile), env)
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            return Credentials()
        token = env.get("AWS_SESSION_TOKEN")
        return Credentials(Secret(key), Secret(secret), Secret(token) if token else None)


def parse_bool(value: Any) -> bool | None:
    """A setting's value as a bool (true/false, 1/0, yes/no, on/off, any case), or None when
    it is none of those."""
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    return None


def _as_bool(name: str, value: Any) -> bool:
    parsed = parse_bool(value)
    if parsed is not None:
        return parsed
    raise ConfigurationError(
        f"The storage key '{name}' has the value {value!r}, which is not true or false.",
        fix=f"set storage.{name} to true or false.",
        key=f"storage.{name}",
    )


def _profile_credentials(profile: str, env: Mapping[str, str]) -> Credentials:
    file = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
    parser = configparser.ConfigParser()
    if not file.is_file() or not parser.read(file) or not parser.has_section(profile):
        raise ConfigurationError(
            f"The credentials profile '{profile}' is not in {file}.",
            fix="add the profile to the shared credentials file (or point "
            "AWS_SHARED_CREDENTIALS_FILE at one), or set storage.credentials: env.",
            key="storage.profile",
        )
    section = parser[profile]
    key, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
    if not key or not secret:
        raise ConfigurationError(
            f"The credentials profile '{profile}' of {file} has no aws_access_key_id and "
            "aws_secret_access_key.",
            fix="add both keys to the profile.",
            key="storage.profile",
        )
    token = section.get("aws_session_token")
    return Credentials(Secret(key), Secret(secret), Secret(token) if token else None)


def is_object_store(path: str) -> bool:
    """True for an `s3://` or `s3a://` path."""
    return path.startswith(OBJECT_STORE_SCHEMES)


def is_local(path: str) -> bool:
    """True for a local folder (`/x`, `./x`, `file:/x`)."""
    return ("://" not in path and not path.startswith("dbfs:")) or path.startswith("file:")


def delta_uri(path: str) -> str:
    """The path as delta-rs names it (`s3a://` is `s3://` there)."""
    return "s3://" + path[len("s3a://") :] if path.startswith("s3a://") else path


# -- engine settings --------------------------------------------------------------------------


def spark_conf(settings: StorageSettings, *, with_secrets: bool = True) -> dict[str, str]:
    """Spark settings (`spark.hadoop.fs.s3a.*`) reaching the store through S3A.

    `s3://` paths go to S3A too. Without `with_secrets` the credentials are left to S3A's
    default chain (the environment of the JVM), e.g. for a server started by a command line.
    """
    prefix = "spark.hadoop."
    conf = {
        "fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "fs.AbstractFileSystem.s3.impl": "org.apache.hadoop.fs.s3a.S3A",
        "fs.s3a.endpoint.region": settings.resolved_region(),
        "fs.s3a.path.style.access": str(settings.path_style).lower(),
    }
    if settings.endpoint:
        conf["fs.s3a.endpoint"] = settings.endpoint
        conf["fs.s3a.connection.ssl.enabled"] = str(
            settings.endpoint.startswith("https://")
        ).lower()
    credentials = settings.resolve_credentials()
    if settings.credentials == "anonymous":
        conf["fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.AnonymousAWSCredentialsProvider"
        )
    elif with_secrets and not credentials.anonymous:
        # (no keys in the environment: S3A's default chain, e.g. an instance role)
        names = ("fs.s3a.access.key", "fs.s3a.secret.key", "fs.s3a.session.token")
        conf.update(credentials.revealed(names))
        if credentials.session_token:
            conf["fs.s3a.aws.credentials.provider"] = (
                "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
            )
    return {prefix + key: value for key, value in conf.items()}


def credential_environment(settings: StorageSettings) -> dict[str, str]:
    """The credentials as AWS_* variables, for a child process (e.g. a Connect server)."""
    return settings.resolve_credentials().revealed(AWS_VARIABLES)


def storage_options(settings: StorageSettings) -> dict[str, str]:
    """delta-rs `storage_options` for the store (secret values included: never log them)."""
    options = {
        "AWS_REGION": settings.resolved_region(),
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not settings.path_style).lower(),
        "AWS_ALLOW_HTTP": str(settings.allow_http).lower(),
    }
    if settings.endpoint:
        options["AWS_ENDPOINT_URL"] = settings.endpoint
    if settings.conditional_put == "etag":
        options["AWS_CONDITIONAL_PUT"] = "etag"
    else:
        options["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
    credentials = settings.resolve_credentials()
    if settings.credentials == "anonymous":
        options["AWS_SKIP_SIGNATURE"] = "true"
    else:
        options.update(credentials.revealed(AWS_VARIABLES))
    return options


# -- the settings of each store, by path ------------------------------------------------------

_ROOTS: dict[str, StorageSettings] = {}
_ROOTS_LOCK = threading.Lock()


def register(root: str, settings: StorageSettings) -> None:
    """Make `settings` the ones of every object-store path under `root` in this process."""
    if not is_object_store(root):
        return
    with _ROOTS_LOCK:
        _ROOTS[delta_uri(root).rstrip("/") + "/"] = settings


def settings_for(path: str) -> StorageSettings | None:
    """The settings registered for the store holding `path` (longest root), else None."""
    uri = delta_uri(path).rstrip("/") + "/"
    with _ROOTS_LOCK:
        roots = sorted(_ROOTS, key=len, reverse=True)
        for root in roots:
            if uri.startswith(root):
                return _ROOTS[root]
    return None


def delta_options(path: str) -> dict[str, str] | None:
    """delta-rs `storage_options` for `path`: None for a local path; for an object-store path
    the options of its store (or of the environment's defaults when no store registered it)."""
    if not is_object_store(path):
        return None
    return storage_options(settings_for(path) or StorageSettings())


# -- delta-rs calls with the right options ----------------------------------------------------


def open_table(path: str, *, version: int | None = None) -> DeltaTable:
    """`deltalake.DeltaTable` at `path` with its store's options."""
    from deltalake import DeltaTable

    return DeltaTable(delta_uri(path), version=version, storage_options=delta_options(path))


def is_delta_table(path: str) -> bool:
    """Whether a Delta table is at `path` (answered by delta-rs, no Spark)."""
    from deltalake import DeltaTable

    return bool(DeltaTable.is_deltatable(delta_uri(path), storage_options=delta_options(path)))


def create_table(path: str, schema: Any, **kwargs: Any) -> DeltaTable:
    """`DeltaTable.create` at `path` with its store's options."""
    from deltalake import DeltaTable

    return DeltaTable.create(delta_uri(path), schema, storage_options=delta_options(path), **kwargs)


def write_table(path: str, data: Any, **kwargs: Any) -> None:
    """`deltalake.write_deltalake` to `path` with its store's options."""
    from deltalake import write_deltalake

    write_deltalake(delta_uri(path), data, storage_options=delta_options(path), **kwargs)


def write_verified(path: str, data: Any, *, attempts: int = 5, **kwargs: Any) -> int:
    """Write `data` with delta-rs (`write_deltalake` arguments) and return the version holding
    it, checked (see `commit_verified`)."""
    _, version = commit_verified(
        path,
        lambda properties: write_table(path, data, commit_properties=properties, **kwargs),
        attempts=attempts,
    )
    assert version is not None  # an append always commits
    return version


def commit_verified(
    path: str, commit: Callable[[Any], T], *, attempts: int = 5, always: bool = True
) -> tuple[T, int | None]:
    """Run a delta-rs commit, `commit(commit_properties)`, and check that it holds.

    Each attempt tags its commit with a fresh token and looks for the token in the commits
    after the version it started from. On S3 a Spark writer of the same table (Delta's S3 log
    store checks and then puts, not conditionally) can replace a commit delta-rs has just made;
    the check sees that and commits again, so nothing is lost and nothing is written twice (a
    replaced commit's files belong to no version). Returns the commit's result and version.
    Local commits cannot be replaced: with `always=False` they run once, unchecked.
    """
    from deltalake import CommitProperties

    if not always and not is_object_store(path):
        return commit(None), None
    for _ in range(attempts):
        token = uuid.uuid4().hex
        before = open_table(path).version() if is_delta_table(path) else -1
        result = commit(CommitProperties(custom_metadata={COMMIT_TOKEN_KEY: token}))
        version, latest = find_token(path, token, after=before)
        for wait in (0.1, 0.3, 0.9):  # a listing may not show the newest commit at once
            if version is not None:
                break
            time.sleep(wait)
            version, latest = find_token(path, token, after=before)
        if version is not None:
            return result, version
        if latest == before:  # nothing to commit (a merge that changed no row)
            return result, None
        # Replaced, or a no-op while others committed: commits here are safe to run again.
    raise ConcurrentWriteError(
        f"A delta-rs commit to {path} was replaced by another writer {attempts} times.",
        fix="retry; if it persists, stop writing the table from a second Spark driver.",
        path=path,
    )


def find_token(path: str, token: str, *, after: int) -> tuple[int | None, int]:
    """(the version after `after` whose commit carries `token` or None, the latest version)."""
    table = open_table(path)
    latest = int(table.version())
    for entry in table.history(max(latest - after, 1)):
        if entry.get(COMMIT_TOKEN_KEY) == token and int(entry.get("version", -1)) > after:
            return int(entry["version"]), latest
    return None, latest


def retrying(call: Callable[[], Any], attempts: int = 5) -> Any:
    """Run a delta-rs commit again when it lost a race for its version (a conflict)."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as error:
            if attempt == attempts - 1 or not _is_conflict(error):
                raise
    return None


def _is_conflict(error: BaseException) -> bool:
    text = f"{type(error).__name__} {error}".lower()
    return "commitfailed" in text or "conflict" in text or "already exists" in text


def describe(settings: StorageSettings | None) -> dict[str, Any] | None:
    """The storage section for `describe`/`health`: settings and the credential source,
    never a credential."""
    if settings is None:
        return None
    return settings.to_dict()


# -- small objects (stream stop markers) ------------------------------------------------------


def filesystem(path: str) -> tuple[Any, str]:
    """A pyarrow filesystem for `path` and the path inside it (local or S3)."""
    from pyarrow import fs

    if not is_object_store(path):
        local = path.removeprefix("file://") if path.startswith("file://") else path
        return fs.LocalFileSystem(), local.removeprefix("file:")
    settings = settings_for(path) or StorageSettings()
    credentials = settings.resolve_credentials()
    kwargs: dict[str, Any] = {
        "region": settings.resolved_region(),
        "force_virtual_addressing": not settings.path_style,
    }
    if settings.endpoint:
        scheme, _, host = settings.endpoint.partition("://")
        kwargs.update(endpoint_override=host, scheme=scheme)
    if settings.credentials == "anonymous":
        kwargs["anonymous"] = True
    else:
        kwargs.update(credentials.revealed(("access_key", "secret_key", "session_token")))
    return fs.S3FileSystem(**kwargs), delta_uri(path).removeprefix("s3://")


def object_exists(path: str) -> bool:
    """Whether a file (local) or an object (S3) is at `path`."""
    from pyarrow import fs

    files, inner = filesystem(path)
    return bool(files.get_file_info(inner).type != fs.FileType.NotFound)


def folder_exists(path: str) -> bool:
    """Whether `path` is a local folder, or an S3 prefix holding objects."""
    from pyarrow import fs

    files, inner = filesystem(path)
    if not is_object_store(path):
        return bool(files.get_file_info(inner).type == fs.FileType.Directory)
    selector = fs.FileSelector(inner, allow_not_found=True, recursive=False)
    return bool(files.get_file_info(selector))


def put_object(path: str, data: bytes = b"") -> None:
    """Write a small file or object at `path` (creating local folders)."""
    files, inner = filesystem(path)
    if not is_object_store(path):
        Path(inner).parent.mkdir(parents=True, exist_ok=True)
    with files.open_output_stream(inner) as out:
        out.write(data)


def delete_object(path: str) -> None:
    """Remove the file or object at `path` (nothing when there is none)."""
    files, inner = filesystem(path)
    if object_exists(path):
        files.delete_file(inner)
