"""`featurelake setup --jars DIR`: the Delta jars from a real Maven repository, verified."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featurelake.cli import app
from featurelake.errors import JarDownloadError
from featurelake.jars import DEFAULT_MAVEN_REPO, MAVEN_REPO_ENV, artifact_url, fetch_delta_jars
from featurelake.session import DELTA_ARTIFACTS, delta_version, find_delta_jars


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()


def test_setup_downloads_verified_jars_that_the_session_builder_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "jars"
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["setup", "--jars", str(folder)])
    assert result.exit_code == 0, result.output
    version = delta_version()
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"{a}-{version}.jar" for a in DELTA_ARTIFACTS)
    assert f"export FEATURELAKE_JARS_DIR={folder.resolve()}" in result.stdout
    for name in names:  # real jars: a zip holding Delta's classes
        assert (folder / name).read_bytes()[:2] == b"PK"
    monkeypatch.setenv("FEATURELAKE_JARS_DIR", str(folder))
    monkeypatch.chdir(tmp_path)
    found = find_delta_jars()
    assert found is not None and all(jar.parent == folder.resolve() for jar in found)

    # A second run keeps the verified jars; a damaged one is fetched again.
    (folder / names[1]).write_bytes(b"not a jar")
    again = CliRunner().invoke(app, ["--json", "setup", "--jars", str(folder)])
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    downloaded = {Path(j["path"]).name: j["downloaded"] for j in report["jars"]}
    assert downloaded == {names[0]: False, names[1]: True}
    assert report["env"] == {"FEATURELAKE_JARS_DIR": str(folder.resolve())}
    for jar in report["jars"]:
        assert jar["url"].startswith(DEFAULT_MAVEN_REPO)
        assert sha1(Path(jar["path"])) == jar["sha1"]


def test_a_jar_not_matching_its_published_sha1_is_refused(tmp_path: Path) -> None:
    """A repository (a folder laid out as Maven Central) whose jar does not match its .sha1."""
    repo = tmp_path / "repo"
    version = delta_version()
    for artifact in DELTA_ARTIFACTS:
        url = artifact_url(f"file://{repo}", artifact, version)
        jar = Path(url.removeprefix("file://"))
        jar.parent.mkdir(parents=True)
        jar.write_bytes(b"a jar that was changed on the way")
        Path(f"{jar}.sha1").write_text(hashlib.sha1(b"the published jar").hexdigest() + "\n")
    target = tmp_path / "jars"
    with pytest.raises(JarDownloadError, match="does not match its published checksum"):
        fetch_delta_jars(target, repository=f"file://{repo}")
    assert list(target.iterdir()) == []  # nothing half-written is left


def test_an_unreachable_repository_is_a_one_line_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = "https://127.0.0.1:9/maven2"  # nothing listens on the discard port
    with pytest.raises(JarDownloadError, match="cannot be reached") as caught:
        fetch_delta_jars(tmp_path / "jars", repository=unreachable, timeout=5)
    assert MAVEN_REPO_ENV in (caught.value.fix or "")

    monkeypatch.setenv(MAVEN_REPO_ENV, unreachable)
    result = CliRunner().invoke(app, ["setup", "--jars", str(tmp_path / "jars")])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "JarDownloadError" in errors[0], result.stderr
    assert unreachable in errors[0] and "Traceback" not in result.output

    bad = CliRunner().invoke(app, ["setup", "--jars", str(tmp_path), "--repository", "maven"])
    assert bad.exit_code == 2 and "is not a URL" in bad.stderr, bad.output
