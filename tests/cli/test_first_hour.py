"""The first hour from `pip install`: the built wheel in a fresh virtualenv, no repository files,
a new project run end to end from a pandas-written parquet of naive times (README's "Start a new
project"). Every command exits 0 and its stderr holds no Java stack trace."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
EXTRAS = "redis,server,duckdb"
JAVA_FRAME = re.compile(r"^\s+at [\w$.<>]+\(", re.MULTILINE)


class Project:
    """A user's project folder, with the wheel's `featurelake` on the PATH."""

    def __init__(self, root: Path, venv: Path, jars: Path) -> None:
        self.root = root
        self.env = {
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": os.environ.get("HOME", str(root)),
            "LANG": "C.UTF-8",
            "FEATURELAKE_JARS_DIR": str(jars),
            # short-lived JVMs: the C1 compiler and serial GC cost far less processor time
            "JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
            **{k: v for k, v in os.environ.items() if k in ("JAVA_HOME", "TMPDIR")},
        }
        self.featurelake = str(venv / "bin" / "featurelake")

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.featurelake, *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        shown = f"featurelake {' '.join(args)}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        assert done.returncode == 0, shown
        assert not JAVA_FRAME.search(done.stderr), shown
        assert "Traceback" not in done.stderr, shown
        return done

    def serve(self, *args: str) -> Iterator[str]:
        port = _free_port()
        process = subprocess.Popen(
            [self.featurelake, *args, "serve", "--port", str(port), "--log-level", "warning"],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                assert process.poll() is None, process.communicate()
                try:
                    with urllib.request.urlopen(f"{url}/v1/health", timeout=5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    time.sleep(0.5)
            else:
                raise AssertionError("featurelake serve did not answer /v1/health")
            yield url
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
            assert not JAVA_FRAME.search(stderr), stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": key},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return dict(json.load(response))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel built from this checkout, installed with its extras in a fresh virtualenv."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = folder.glob("featurelake-*.whl")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        # --no-compile: modules are compiled when first imported, not all of pyspark up front
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-compile",
            f"{wheel}[{EXTRAS}]",
        ],
        check=True,
        capture_output=True,
    )
    return venv, folder / "jars"


def test_a_new_project_runs_end_to_end_from_the_wheel(
    installed: tuple[Path, Path],
    tmp_path: Path,
    redis_server_factory: Callable[[], Any],
) -> None:
    venv, jars = installed
    project = Project(tmp_path / "project", venv, jars)
    project.root.mkdir()
    project.run("setup", "--jars", str(jars))
    project.run("init")
    config = project.root / "conf" / "featurelake.yaml"
    config.write_text(
        config.read_text().replace("enable_online_store: false", "enable_online_store: true")
    )
    project.run("apply")

    # What most users have: pandas with naive times (Spark reads them as TIMESTAMP_NTZ).
    recent = datetime.now().replace(microsecond=0) - timedelta(hours=6)
    activity = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 1],
            "event_timestamp": [recent - timedelta(days=d) for d in (3, 2, 1, 0)],
            "orders_7d": [2, 5, 1, 3],
            "spend_7d": [40.0, 120.5, 9.9, 61.0],
            "favourite_category": ["books", "garden", "toys", "books"],
        }
    )
    activity.to_parquet(project.root / "acts.parquet")
    labels = pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "event_timestamp": [recent - timedelta(days=1), recent, recent - timedelta(days=2)],
            "churned": [0, 1, 0],
        }
    )
    labels.to_parquet(project.root / "labels.parquet")

    project.run("materialize", "customer_activity", "--source", "acts.parquet")
    described = json.loads(project.run("describe", "customer_activity", "--json").stdout)
    assert [v["rows"] for v in described["versions"]] == [4]
    project.run(
        "training-set",
        "-e",
        "labels.parquet",
        "-f",
        "customer_activity.*",
        "-o",
        "training.parquet",
    )
    training = pd.read_parquet(project.root / "training.parquet").sort_values("customer_id")
    # customer 1 at (recent - 1 day) takes its event of (recent - 3 days), not the later one;
    # customer 3's only event is after its label time
    assert training["spend_7d"].iloc[:2].tolist() == [40.0, 120.5]
    assert pd.isna(training["spend_7d"].iloc[2])
    project.run("report", "customer_activity", "--out", "reports")
    assert (project.root / "reports").is_dir()

    token = json.loads(project.run("api-key", "create", "app", "--json").stdout)["key"]
    body = {"features": ["customer_activity.spend_7d"], "entities": [1, 2, 3]}
    expected = {1: 61.0, 2: 120.5, 3: 9.9}

    # The scaffold's memory backend: served from Gold, loaded when the server starts.
    for url in project.serve():
        served = _post(f"{url}/v1/features/serve", body, token)
        got = {v["entity"]["customer_id"]: v["values"]["spend_7d"] for v in served["vectors"]}
        assert got == expected, served

    # Redis after sync-online.
    redis = redis_server_factory()
    (project.root / "conf" / "redis.yaml").write_text(
        config.read_text().replace("online_backend: memory", "online_backend: redis")
        + f"online_url: {redis.url}\n"
    )
    project.run("-c", "conf/redis.yaml", "sync-online", "customer_activity")
    for url in project.serve("-c", "conf/redis.yaml"):
        served = _post(f"{url}/v1/features/serve", body, token)
        got = {v["entity"]["customer_id"]: v["values"]["spend_7d"] for v in served["vectors"]}
        assert got == expected, served
    shutil.rmtree(project.root / "feature_store", ignore_errors=True)
