"""Fetch the Delta Lake jars that match the installed delta-spark into a folder.

For machines where Spark cannot download packages itself (no Maven Central from the cluster,
air-gapped hosts): the jars come from a Maven repository over HTTPS (Maven Central by default,
or `$FEATURELAKE_MAVEN_REPO`, e.g. a company mirror), each checked against the repository's
published `.sha1`, and land in a folder that `FEATURELAKE_JARS_DIR` (or `jars_dir` in the
config) points the session builder at. A jar already there with the right checksum is kept.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurelake.errors import JarDownloadError
from featurelake.session import DELTA_ARTIFACTS, delta_version

MAVEN_REPO_ENV = "FEATURELAKE_MAVEN_REPO"
DEFAULT_MAVEN_REPO = "https://repo1.maven.org/maven2"
DELTA_GROUP = "io.delta"
TIMEOUT_SECONDS = 60.0
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FetchedJar:
    """One jar in the target folder: where it came from, its checksum, whether it was fetched
    now (False: it was already there and its checksum matched)."""

    artifact: str
    path: Path
    url: str
    sha1: str
    size: int
    downloaded: bool


def maven_repository(repository: str | None = None) -> str:
    """The repository to fetch from: `repository`, else `$FEATURELAKE_MAVEN_REPO`, else
    Maven Central."""
    chosen = (repository or os.environ.get(MAVEN_REPO_ENV) or DEFAULT_MAVEN_REPO).strip()
    if not chosen.startswith(("https://", "http://", "file://")):
        raise JarDownloadError(
            f"The Maven repository {chosen!r} is not a URL.",
            fix=f"set {MAVEN_REPO_ENV} to a repository URL such as {DEFAULT_MAVEN_REPO}.",
            repository=chosen,
        )
    return chosen.rstrip("/")


def artifact_url(repository: str, artifact: str, version: str) -> str:
    """The jar's URL in a Maven repository laid out as Maven Central is."""
    group = DELTA_GROUP.replace(".", "/")
    return f"{repository}/{group}/{artifact}/{version}/{artifact}-{version}.jar"


def fetch_delta_jars(
    target: str | Path,
    *,
    repository: str | None = None,
    version: str | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> list[FetchedJar]:
    """Put io.delta:delta-spark_2.13 and io.delta:delta-storage (the installed delta-spark's
    version, or `version`) into `target`, each verified against its published `.sha1`.

    Raises JarDownloadError when the repository cannot be reached, a file is missing there, or
    a checksum does not match (nothing half-written is left in `target`).
    """
    repo = maven_repository(repository)
    wanted = version or delta_version()
    folder = Path(target).expanduser()
    with _file_errors(
        f"The jars folder {folder} cannot be created", "pass a folder you can write to.", folder
    ):
        folder.mkdir(parents=True, exist_ok=True)
    return [_fetch_one(repo, artifact, wanted, folder, timeout) for artifact in DELTA_ARTIFACTS]


def _fetch_one(
    repository: str, artifact: str, version: str, folder: Path, timeout: float
) -> FetchedJar:
    url = artifact_url(repository, artifact, version)
    expected = _published_sha1(url, timeout)
    path = folder / f"{artifact}-{version}.jar"
    if path.is_file() and _sha1_of(path) == expected:
        return FetchedJar(artifact, path.resolve(), url, expected, path.stat().st_size, False)
    staged = path.with_name(f".{path.name}.{os.getpid()}.part")
    digest = hashlib.sha1(usedforsecurity=False)
    try:
        with _file_errors(
            f"Writing {path} failed", "check that the folder is writable and has room.", path
        ):
            with _open(url, timeout) as response, staged.open("wb") as out:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != expected:
                raise JarDownloadError(
                    f"The jar {url} does not match its published checksum (sha1 {actual}, "
                    f"expected {expected}).",
                    fix="run the command again; if it persists, the repository (or a proxy in "
                    f"between) serves a broken file: point {MAVEN_REPO_ENV} at another mirror.",
                    url=url,
                )
            os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
    return FetchedJar(artifact, path.resolve(), url, expected, path.stat().st_size, True)


@contextmanager
def _file_errors(what: str, fix: str, path: Path) -> Iterator[None]:
    """An OSError of the block as a JarDownloadError: `{what}: {reason}.`"""
    try:
        yield
    except OSError as error:
        raise JarDownloadError(
            f"{what}: {error.strerror or error}.", fix=fix, path=str(path)
        ) from error


def _published_sha1(url: str, timeout: float) -> str:
    with _open(f"{url}.sha1", timeout) as response:
        text = response.read(1024).decode("ascii", errors="replace")
    words = text.split()
    value = words[0].lower() if words else ""
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value):
        raise JarDownloadError(
            f"The checksum file {url}.sha1 does not hold a SHA-1 ({text[:60]!r}).",
            fix=f"point {MAVEN_REPO_ENV} at a Maven repository (laid out as Maven Central).",
            url=f"{url}.sha1",
        )
    return value


def _open(url: str, timeout: float) -> Any:
    """The open response for `url` (a context manager with `read`)."""
    request = urllib.request.Request(url, headers={"User-Agent": "featurelake-setup"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise JarDownloadError(
            f"The Maven repository answered {error.code} for {url}.",
            fix="check the repository URL ("
            f"{MAVEN_REPO_ENV}) and that it holds io.delta artifacts of this version.",
            url=url,
            status=error.code,
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise JarDownloadError(
            f"The Maven repository cannot be reached at {url}: {reason}.",
            fix=f"check the network or proxy, or set {MAVEN_REPO_ENV} to a reachable mirror; on "
            "a machine without one, run this command elsewhere and copy the folder over.",
            url=url,
        ) from error
    return response


def _sha1_of(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
