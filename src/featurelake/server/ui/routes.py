"""The catalog's routes under `/ui`: sign-in, search, group pages, lineage, training sets.

Every page but the sign-in form and its script needs a signed-in session (see `sessions.py`);
without one, or with a wrong, unknown or revoked key, the answer is the sign-in page (401),
never data. A group the key may not read answers like one that does not exist (404).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from featurelake.quality import report
from featurelake.server.access import visible_group
from featurelake.server.auth import ApiKey, AuthenticationError, parse_token
from featurelake.server.errors import NotFoundError
from featurelake.server.state import ServerState, server_state
from featurelake.server.ui.catalog import (
    FRESHNESS_STATES,
    Catalog,
    CatalogCache,
    GroupPage,
    LineageGraph,
)
from featurelake.server.ui.lineage import lineage_svg
from featurelake.server.ui.sessions import COOKIE, UiSessions
from featurelake.server.ui.snippets import cli_snippet, python_snippet

UI_PREFIX = "/ui"
HERE = Path(__file__).parent
MAX_ROWS = 500
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

CSS = """
nav{display:flex;gap:18px;align-items:center;margin:-24px -24px 18px;padding:10px 24px;
background:#1d2733}nav a,nav .who{color:#fff;text-decoration:none}nav .who{margin-left:auto;
color:#c9d3de;font-size:12px}nav form{margin:0}nav button{font-size:12px}
a{color:#2f6fb0}.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;
background:#eaeef2;color:#1d2733}.badge.fresh{background:#d6f0df;color:#1f6b3f}
.badge.stale{background:#f8d7d3;color:#9b2a1f}.badge.never{background:#fbeedd;color:#8a5a12}
form.search{display:flex;gap:8px;flex-wrap:wrap;margin-bottom:12px}
form.search input[type=search]{flex:1;min-width:260px;padding:6px}
td.l,th.l{text-align:left;white-space:normal}pre{background:#fff;border:1px solid #d8dee4;
padding:10px;overflow:auto;margin:0}.snippet{position:relative;margin-bottom:10px}
.snippet button{position:absolute;top:6px;right:6px}.tag{font-size:12px;color:#57606a}
svg.lineage text{font-size:12px}.signin{max-width:420px;margin:60px auto}
.signin input{width:100%;padding:8px;margin:8px 0;box-sizing:border-box}.error{color:#c0392b}
.panel{overflow-x:auto}
"""

router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        prefix=UI_PREFIX, freshness_states=FRESHNESS_STATES, css=Markup(report.CSS + CSS)
    )
    env.filters.update(duration=report.duration, number=lambda v: Markup(report.number(v)))
    return env


templates = Jinja2Templates(env=_environment())


class SignInRequired(Exception):
    """No session, or its key is no longer valid: answer with the sign-in page."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


def install(app: FastAPI) -> None:
    """Mount the catalog on the feature server's app."""
    app.state.ui_sessions = UiSessions()
    app.state.ui_cache = CatalogCache()
    app.include_router(router)

    @app.exception_handler(SignInRequired)
    async def sign_in_required(request: Request, error: SignInRequired) -> Response:
        return _sign_in_page(request, error.message, status=401)


def _catalog(request: Request, key: ApiKey) -> Catalog:
    return Catalog(server_state(request).store.registry, key, cache=request.app.state.ui_cache)


def _sessions(request: Request) -> UiSessions:
    sessions: UiSessions = request.app.state.ui_sessions
    return sessions


def signed_in(request: Request) -> ApiKey:
    """The key of the browser session, verified now (revocations apply at once)."""
    state = server_state(request)
    token = _sessions(request).token(request.cookies.get(COOKIE))
    if token is None:
        raise SignInRequired()
    request.state.claimed_key_id = parse_token(token)
    try:
        key = state.keys.verify(token)
    except AuthenticationError as error:
        _sessions(request).close(request.cookies.get(COOKIE))
        request.state.error_code = error.code
        raise SignInRequired(error.message) from None
    request.state.principal = key
    request.state.ui_started = time.perf_counter()
    state.key_limits.acquire(key.id)
    request.state.key_slot = key.id  # released by the middleware when the request ends
    return key


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, name, {"key": getattr(request.state, "principal", None), **context}, status
    )
    response.headers.update(HEADERS)
    started = getattr(request.state, "ui_started", None)
    if started is not None:  # the page's time on the server, data and template together
        response.headers["Server-Timing"] = (
            f"render;dur={(time.perf_counter() - started) * 1000:.1f}"
        )
    return response


def _sign_in_page(request: Request, message: str, status: int) -> HTMLResponse:
    target = request.url.path if request.method == "GET" else UI_PREFIX
    return _page(request, "signin.html", {"message": message, "next": _safe_next(target)}, status)


def _safe_next(target: str) -> str:
    """Only a path of the catalog itself (no scheme, host or `//`)."""
    if not target.startswith(UI_PREFIX) or "//" in target or "\\" in target:
        return UI_PREFIX
    if target.startswith(f"{UI_PREFIX}/sign-"):
        return UI_PREFIX
    return target


# -- sign-in --------------------------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request) -> HTMLResponse:
    return _page(request, "signin.html", {"message": "", "next": UI_PREFIX})


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    """Check the key from the form; on success keep it in a session and go to `next`."""
    body = (await request.body()).decode("utf-8", errors="replace")
    form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
    token = form.get("api_key", "").strip()
    state: ServerState = server_state(request)
    if token:
        request.state.claimed_key_id = parse_token(token)
    try:
        key = await run_in_threadpool(state.keys.verify, token)
    except AuthenticationError as error:
        request.state.error_code = error.code
        request.state.error_message = error.message
        return _sign_in_page(request, error.message, status=401)
    request.state.principal = key
    response = RedirectResponse(_safe_next(form.get("next", UI_PREFIX)), status_code=303)
    response.set_cookie(
        COOKIE,
        _sessions(request).open(token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=UI_PREFIX,
    )
    return response


@router.post("/sign-out")
def sign_out(request: Request) -> Response:
    _sessions(request).close(request.cookies.get(COOKIE))
    response = RedirectResponse(f"{UI_PREFIX}/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path=UI_PREFIX)
    return response


@router.get("/static/catalog.js")
def script() -> Response:
    text = (HERE / "static" / "catalog.js").read_text()
    return Response(text, media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})


# -- pages ----------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def home(
    request: Request, q: str = "", entity: str = "", freshness: str = "", limit: int = MAX_ROWS
) -> HTMLResponse:
    """Every group the key may read, searched and filtered."""
    key = signed_in(request)
    started = time.perf_counter()
    catalog = _catalog(request, key)
    rows, total = catalog.search(
        q[:256], entity[:128], freshness[:32], limit=max(1, min(limit, MAX_ROWS))
    )
    return _page(
        request,
        "home.html",
        {
            "rows": rows,
            "total": total,
            "q": q,
            "entity": entity,
            "freshness": freshness,
            "entities": catalog.entities(),
            "now": catalog.now,
            "took_ms": (time.perf_counter() - started) * 1000,
        },
    )


@router.get("/groups/{group}", response_class=HTMLResponse)
def group_page(request: Request, group: str) -> HTMLResponse:
    """One group: schema, history, statistics and charts, checks, sync, router, snippets."""
    key = signed_in(request)
    registry = server_state(request).store.registry
    try:
        schema = visible_group(registry, key, group[:140])
    except NotFoundError:
        return _page(request, "not_found.html", {"what": group[:140]}, 404)
    catalog = _catalog(request, key)
    if not catalog.readable(schema):  # a write-only key
        return _page(request, "not_found.html", {"what": group[:140]}, 404)
    page = catalog.group_page(schema)
    graph = LineageGraph.build(catalog)
    focus = f"group:{schema.name}"
    near = (
        {focus}
        | {a for a, b in graph.edges if b == focus}
        | {b for a, b in graph.edges if a == focus}
    )
    local = LineageGraph(
        nodes={n: graph.nodes[n] for n in near},
        edges=[(a, b) for a, b in graph.edges if a in near and b in near],
    )
    return _page(
        request,
        "group.html",
        {
            "page": page,
            "charts": _charts(page),
            "history": _delta_history(registry, schema),
            "lineage": Markup(lineage_svg(local, UI_PREFIX, focus)),
            "python": python_snippet(page),
            "cli": cli_snippet(page),
        },
    )


@router.get("/lineage", response_class=HTMLResponse)
def lineage(request: Request) -> HTMLResponse:
    """Sources -> groups -> training sets and services, as a graph to click through."""
    key = signed_in(request)
    catalog = _catalog(request, key)
    graph = LineageGraph.build(catalog)
    return _page(
        request,
        "lineage.html",
        {
            "svg": Markup(lineage_svg(graph, UI_PREFIX)),
            "graph": graph,
            "services": catalog.services(),
        },
    )


@router.get("/training-sets", response_class=HTMLResponse)
def training_sets(request: Request) -> HTMLResponse:
    """Saved training set manifests: features, pinned Delta versions, the rebuild call."""
    key = signed_in(request)
    catalog = _catalog(request, key)
    return _page(request, "training_sets.html", {"manifests": catalog.training_sets()})


# -- helpers --------------------------------------------------------------------------------------


def _charts(page: GroupPage) -> dict[str, Any]:
    """The report's tables and SVG charts for the statistics the key may see."""
    history = page.statistics
    latest = list(history.values())[-1] if history else None
    if latest is None:
        return {"latest": None}
    null_rates = {
        name: Markup(
            report.bar_chart(
                [
                    (str(v), s.features[name].null_rate)
                    for v, s in history.items()
                    if name in s.features
                ],
                fmt="{:.1%}",
                color=report.ORANGE,
                x_label="Delta version",
            )
        )
        for name in latest.features
    }
    drift = {}
    if page.drifts:
        threshold = page.drifts[-1].psi_threshold
        names = list(dict.fromkeys(n for d in page.drifts for n in d.features))
        drift = {
            name: Markup(
                report.bar_chart(
                    [
                        (f"v{d.current_delta_version}", d.features[name].psi or 0.0)
                        for d in page.drifts
                        if name in d.features
                    ],
                    fmt="{:.3f}",
                    threshold=threshold,
                )
            )
            for name in names
        }
    return {
        "latest": latest,
        "summary": Markup(report.summary_table(latest)),
        "distributions": {
            name: Markup(report.distribution_chart(f)) for name, f in latest.features.items()
        },
        "null_rates": null_rates,
        "drift": drift,
        "drift_table": Markup(report.drift_table(page.drifts[-1])) if page.drifts else None,
        "checks": Markup(report.check_table(page.check)),
    }


def _delta_history(registry: Any, schema: Any) -> dict[str, Any]:
    """The Gold table's Delta history through delta-rs (no Spark): operation, rows, time."""
    location = registry.gold_location(schema.name, schema.version)
    path = location.path
    if location.table_name or not path or ("://" in path and not path.startswith("file:")):
        return {
            "rows": [],
            "note": "The Delta history of catalog tables and remote paths is "
            "shown by 'store.history(group)'.",
        }
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(path):
        return {"rows": [], "note": "No Gold table yet."}
    rows = []
    for commit in DeltaTable(path).history(20):
        metrics = commit.get("operationMetrics") or {}
        written = next(
            (
                metrics[m]
                for m in ("numOutputRows", "num_added_rows", "numTargetRowsInserted")
                if m in metrics
            ),
            None,
        )
        stamp = commit.get("timestamp")
        rows.append(
            {
                "version": commit.get("version"),
                "operation": commit.get("operation"),
                "rows": written,
                "at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp / 1000))
                if isinstance(stamp, (int, float))
                else "",
            }
        )
    return {"rows": rows, "note": ""}
