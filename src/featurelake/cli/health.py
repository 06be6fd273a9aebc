"""`health`: can this process reach Spark, the registry and every Gold table?"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from featurelake.cli.state import state_of
from featurelake.session import find_delta_jars, is_connect_session

JsonFlag = Annotated[bool, typer.Option("--json", help="Print results as JSON (for scripts).")]


def health(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Check the config, the Spark session, the registry and the Gold tables. Exit 1 if sick."""
    state = state_of(ctx)
    out = state.output(as_json)
    config = state.config()
    store = state.store(out)
    with out.status("Checking the store"):
        checks = store.offline.health_check()
        if config.enable_online_store:
            checks["online"] = store.online.health_check()
            checks["healthy"] = bool(checks.get("healthy")) and checks["online"]["healthy"]
    spark = store.spark
    jars = find_delta_jars(config.jars_dir)
    report: dict[str, Any] = {
        "healthy": bool(checks.get("healthy")),
        "config": str(state.config_path),
        "storage_path": config.storage_path,
        "storage": config.storage.to_dict() if config.storage else None,  # never a credential
        "mode": config.mode.value,
        "spark": {
            "version": spark.version,
            "connect": is_connect_session(spark),
            "master": _conf(spark, "spark.master"),
            "settings": {key: _conf(spark, key) for key in state.spark_conf},
        },
        "delta_jars": [str(jar) for jar in jars] if jars else None,
        "checks": checks,
    }
    if out.as_json:
        out.json(report)
    else:
        rows = [
            ("config", str(state.config_path)),
            ("store", f"{config.storage_path} ({config.mode.value})"),
            ("spark", f"{spark.version} on {report['spark']['master'] or 'Spark Connect'}"),
            ("delta jars", ", ".join(j.name for j in jars) if jars else "from the session"),
            ("registry", "readable" if checks.get("registry") else "NOT readable"),
            ("groups", str(checks.get("groups", "-"))),
        ]
        missing = checks.get("groups_without_data") or []
        if missing:
            rows.append(("without data", ", ".join(missing)))
        for key, value in report["spark"]["settings"].items():
            rows.append((key, str(value)))
        if "online" in checks:
            online = checks["online"]
            state_text = "reachable" if online.get("healthy") else "NOT reachable"
            rows.append(("online store", f"{online.get('target')} {state_text}"))
        if "error" in checks:
            rows.append(("error", str(checks["error"])))
        out.table(["check", "result"], rows, title="featurelake health")
        out.line("healthy" if report["healthy"] else "UNHEALTHY")
    if not report["healthy"]:
        raise typer.Exit(code=1)


def _conf(spark: Any, key: str) -> str | None:
    try:
        value = spark.conf.get(key, None)
    except Exception:
        return None
    return None if value is None else str(value)
