"""`serve` (the HTTP feature server under uvicorn) and `api-key create | revoke | list`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from featurelake.cli.state import state_of
from featurelake.errors import DependencyNotInstalledError

if TYPE_CHECKING:
    from featurelake.server.auth import ApiKeyStore

JsonFlag = Annotated[bool, typer.Option("--json", help="Print results as JSON (for scripts).")]

api_keys = typer.Typer(
    help="Create, revoke and list the API keys of the feature server.",
    no_args_is_help=True,
)


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest request body accepted (413 above).", min=1)
    ] = 1024 * 1024,
    key_cache_seconds: Annotated[
        float, typer.Option(help="How long API keys are cached (revocations apply after it).")
    ] = 2.0,
    max_future_seconds: Annotated[
        float, typer.Option(help="How far past the server's clock an event time may be.")
    ] = 300.0,
    serve_threads: Annotated[
        int, typer.Option(help="Threads reserved for online reads (serve).", min=1)
    ] = 16,
    offline_threads: Annotated[
        int, typer.Option(help="Historical requests running at once.", min=1)
    ] = 4,
    offline_queue: Annotated[
        int, typer.Option(help="Historical requests waiting (503 beyond).", min=0)
    ] = 16,
    offline_timeout_seconds: Annotated[
        float, typer.Option(help="Time limit of one historical request (504 after it).")
    ] = 120.0,
    offline_nice: Annotated[
        int,
        typer.Option(
            help="Linux: scheduling priority (nice) of a local Spark driver, so online reads "
            "run first (0: unchanged).",
            min=0,
            max=19,
        ),
    ] = 10,
    offline_idle: Annotated[
        bool,
        typer.Option(
            help="Linux: run a local Spark driver in the idle scheduling class, so a waking "
            "online read takes the processor from it at once.",
        ),
    ] = True,
    max_concurrent_per_key: Annotated[
        int, typer.Option(help="Requests one API key may have in flight (429 beyond).", min=1)
    ] = 32,
    max_historical_cells: Annotated[
        int,
        typer.Option(
            help="Largest historical answer: entities x windows x features x aggs.", min=1
        ),
    ] = 5_000_000,
    historical_page_cells: Annotated[
        int,
        typer.Option(help="Most values in one historical page (larger answers are paged).", min=1),
    ] = 1_000_000,
    unauthenticated_audit_rows: Annotated[
        int, typer.Option(help="401s audited one by one per client per minute.", min=0)
    ] = 20,
    online_refresh_seconds: Annotated[
        float,
        typer.Option(
            help="With online_backend: memory, how often serve requests check the Gold tables "
            "for other processes' writes.",
            min=0,
        ),
    ] = 2.0,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the store's features over HTTP (OpenAPI at /v1/docs) and the feature catalog
    in the browser (/ui).

    Starts no Spark session: online reads, writes, registrations and descriptions work
    without one; the first historical read starts it. With online_backend: memory the
    in-process store is filled from the Gold tables at start and follows later writes.
    """
    try:
        import uvicorn

        from featurelake.server import ServerSettings, create_app
    except ImportError as error:
        raise DependencyNotInstalledError(
            error.name or "fastapi", "server", "featurelake serve"
        ) from None
    state = state_of(ctx)
    config = state.config()
    settings = ServerSettings(
        max_body_bytes=max_body_bytes,
        key_cache_seconds=key_cache_seconds,
        max_future_seconds=max_future_seconds,
        serve_threads=serve_threads,
        offline_threads=offline_threads,
        offline_queue=offline_queue,
        offline_timeout_seconds=offline_timeout_seconds,
        offline_nice=offline_nice,
        offline_idle=offline_idle,
        max_concurrent_per_key=max_concurrent_per_key,
        max_historical_cells=max_historical_cells,
        historical_page_cells=historical_page_cells,
        unauthenticated_audit_rows=unauthenticated_audit_rows,
        online_refresh_seconds=online_refresh_seconds,
    )
    app = create_app(config, settings)
    base = f"http://{host}:{port}"
    typer.echo(f"Serving {config.storage_path} on {base}/v1 (docs: /v1/docs)", err=True)
    typer.echo(f"Feature catalog: {base}/ui (sign in with an API key)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def dead_letters(
    ctx: typer.Context,
    group: Annotated[
        str | None, typer.Argument(metavar="[GROUP]", help="Only this group's records.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many to show (newest first).", min=1)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Records written over HTTP that compaction could not merge into Gold, with the reason."""
    from featurelake.server.staging import StagingTable

    state = state_of(ctx)
    out = state.output(as_json)
    table = StagingTable.for_store(state.config()).dead_letters
    total = table.count(group)
    found = table.read(group, limit=limit)
    if out.as_json:
        out.json({"total": total, "dead_letters": found})
        return
    out.table(
        ["group", "version", "entity", "event time", "staged", "staging version", "reason"],
        [
            (
                r["group"],
                r["version"],
                r["entity"],
                r["event_time"],
                r["staged_at"],
                r["staging_version"],
                r["reason"],
            )
            for r in found
        ],
        title=f"Dead letters ({total} in all)",
    )


def _key_store(ctx: typer.Context) -> ApiKeyStore:
    """The keys of the configured store (registry only: no Spark)."""
    from featurelake.registry import Registry
    from featurelake.server.auth import ApiKeyStore

    return ApiKeyStore(Registry(state_of(ctx).config()))


@api_keys.command("create")
def create_key(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who uses the key, e.g. ranking-service.")],
    role: Annotated[
        str, typer.Option(help="reader (serve, read), writer (also write) or admin (all).")
    ] = "reader",
    read: Annotated[
        list[str] | None,
        typer.Option(
            "--read",
            metavar="PATTERN",
            help="Features the key may read: 'group.*', 'group.feature', globs. Repeatable. "
            "Default: every feature.",
        ),
    ] = None,
    write: Annotated[
        list[str] | None,
        typer.Option(
            "--write",
            metavar="PATTERN",
            help="Features a writer may write (default: its read patterns). Repeatable.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a key. The key itself is printed once: store it now; only its hash is kept."""
    keys = _key_store(ctx)
    out = state_of(ctx).output(as_json)
    created = keys.create(name, role, read=read or ("*",), write=write)
    if out.as_json:
        out.json({**created.key.to_public_dict(), "key": created.token})
        return
    key = created.key
    out.line(f"Created API key {key.id} '{key.name}' (role {key.role.value}).")
    out.line(f"  read:  {', '.join(key.read) or '-'}")
    out.line(f"  write: {', '.join(key.write) or '-'}")
    out.line("The key is shown once; store it now:")
    out.line(created.token)


@api_keys.command("revoke")
def revoke_key(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key id (see 'featurelake api-key list').")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key: servers refuse it within their key cache time (2 s by default)."""
    keys = _key_store(ctx)
    out = state_of(ctx).output(as_json)
    key = keys.revoke(key_id)
    if out.as_json:
        out.json(key.to_public_dict())
        return
    out.line(f"Revoked API key {key.id} '{key.name}' at {key.revoked_at}.")


@api_keys.command("list")
def list_keys(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every key: id, name, role, patterns, created and revoked times (never the key)."""
    keys = _key_store(ctx)
    out = state_of(ctx).output(as_json)
    found = keys.list_keys()
    if out.as_json:
        out.json([k.to_public_dict() for k in found])
        return
    out.table(
        ["id", "name", "role", "read", "write", "created", "revoked"],
        [
            (
                k.id,
                k.name,
                k.role.value,
                ", ".join(k.read),
                ", ".join(k.write),
                k.created_at,
                k.revoked_at,
            )
            for k in found
        ],
        title="API keys",
    )
