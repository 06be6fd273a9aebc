"""`setup --jars DIR`: fetch the Delta jars for a machine where Spark cannot download them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from featurelake.cli.state import state_of
from featurelake.session import JARS_DIR_ENV


def setup(
    ctx: typer.Context,
    jars: Annotated[
        Path,
        typer.Option(
            "--jars",
            metavar="DIR",
            help="Folder to put the Delta jars in (created when missing).",
            show_default=False,
        ),
    ],
    repository: Annotated[
        str | None,
        typer.Option(
            "--repository",
            metavar="URL",
            help="Maven repository. Default: $FEATURELAKE_MAVEN_REPO, else Maven Central.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Download the Delta Lake jars matching the installed delta-spark into DIR, each checked
    against its published SHA-1; then set FEATURELAKE_JARS_DIR=DIR so sessions use them.

    Needed only where Spark cannot fetch io.delta packages from Maven Central itself (run it
    on a connected machine and copy DIR over for an air-gapped one).
    """
    from featurelake.jars import fetch_delta_jars, maven_repository

    out = state_of(ctx).output(as_json)
    repo = maven_repository(repository)
    with out.status(f"Fetching the Delta jars from {repo} into {jars}"):
        fetched = fetch_delta_jars(jars, repository=repo)
    folder = fetched[0].path.parent
    if out.as_json:
        out.json(
            {
                "jars_dir": folder,
                "env": {JARS_DIR_ENV: str(folder)},
                "jars": [
                    {
                        "artifact": j.artifact,
                        "path": j.path,
                        "url": j.url,
                        "sha1": j.sha1,
                        "bytes": j.size,
                        "downloaded": j.downloaded,
                    }
                    for j in fetched
                ],
            }
        )
        return
    for jar in fetched:
        what = "downloaded" if jar.downloaded else "already there"
        out.line(f"{jar.path.name}: {what} ({jar.size:,} bytes), sha1 verified.")
    out.line("Spark sessions use these jars once this is set:")
    out.line(f"export {JARS_DIR_ENV}={folder}", soft_wrap=True)
