"""A local S3-compatible server (SeaweedFS `weed server -s3`) on loopback, as a child process.

Tests, benchmarks and local development run a store on `s3://` against it: a real S3 API
(signed requests, conditional puts, multipart uploads), not a mock. The `weed` binary is built
once by `scripts/build_seaweedfs.sh` (the set-up does it) and found in its cache, or named by
`$FEATURELAKE_WEED`. The server gets one identity (its access key and secret), keeps its data in
a folder of the caller's, reports request counts on a Prometheus endpoint, and is stopped by
its process id.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from featurelake.connect_server import LOOPBACK, free_loopback_port
from featurelake.errors import ConfigurationError
from featurelake.processes import LoggedProcess, start_logged, stop_process_group, wait_until
from featurelake.storage import Secret, StorageSettings

WEED_ENV = "FEATURELAKE_WEED"
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"
REQUESTS_METRIC = "SeaweedFS_s3_request_total"


def find_weed() -> Path | None:
    """The `weed` binary: `$FEATURELAKE_WEED`, else the set-up's cache, else None."""
    named = os.environ.get(WEED_ENV)
    if named:
        return Path(named) if Path(named).is_file() else None
    root = os.environ.get("FEATURELAKE_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "featurelake"
    )
    binary = Path(root) / "seaweedfs" / SEAWEEDFS_VERSION / "weed"
    return binary if binary.is_file() else None


@dataclass(eq=False)
class LocalS3Server(LoggedProcess):
    """A running SeaweedFS server with its S3 gateway; use as a context manager or `stop()`."""

    process: subprocess.Popen[bytes]
    s3_port: int
    metrics_port: int
    access_key: str
    secret_key: Secret
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.s3_port}"

    def settings(self) -> StorageSettings:
        """The storage section that reaches this server (credentials from the environment)."""
        return StorageSettings(
            endpoint=self.endpoint, region="us-east-1", path_style=True, allow_http=True
        )

    def environment(self) -> dict[str, str]:
        """The AWS_* variables holding this server's credentials."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key.reveal(),
        }

    @classmethod
    def start(
        cls, data_dir: str | Path, *, binary: Path | None = None, timeout_s: float = 60.0
    ) -> LocalS3Server:
        """Start `weed server -s3` on free loopback ports with data in `data_dir`; wait until
        its S3 gateway answers."""
        weed = binary or find_weed()
        if weed is None:
            raise ConfigurationError(
                "The SeaweedFS `weed` binary is not built.",
                fix="run scripts/build_seaweedfs.sh (make setup starts it), or set "
                f"{WEED_ENV} to a weed binary.",
            )
        folder = Path(data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        access_key = "featurelake" + secrets.token_hex(4)
        secret_key = Secret(secrets.token_hex(20))
        identities = {
            "identities": [
                {
                    "name": "featurelake",
                    "credentials": [{"accessKey": access_key, "secretKey": secret_key.reveal()}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config_file = folder / "s3.json"
        config_file.write_text(json.dumps(identities))
        config_file.chmod(0o600)
        ports = {name: free_loopback_port() for name in ("master", "volume", "filer", "s3")}
        grpc = {name: free_loopback_port() for name in ports}
        metrics_port = free_loopback_port()
        command = [
            str(weed),
            "server",
            f"-dir={folder}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={grpc['s3']}",
            f"-s3.config={config_file}",
            "-s3.port.iceberg=0",  # the gateway's catalog ports (fixed by default): off
            "-s3.port.lance=0",
            f"-metricsPort={metrics_port}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=64",
            "-volume.preStopSeconds=0",
        ]
        log_path = folder / "weed.log"
        logger.info("starting SeaweedFS (S3 on {}:{})", LOOPBACK, ports["s3"])
        process = start_logged(command, log_path, stdin=subprocess.DEVNULL)
        server = cls(process, ports["s3"], metrics_port, access_key, secret_key, log_path)
        server._wait_until_ready(timeout_s)
        return server

    def _wait_until_ready(self, timeout_s: float) -> None:
        if wait_until(self._ready, self.running, timeout_s, interval_s=0.2):
            return
        tail = self.log_tail()
        self.stop()
        raise ConfigurationError(
            f"SeaweedFS did not start its S3 gateway on port {self.s3_port}: {tail}",
            fix=f"read {self.log_path}.",
        )

    def _ready(self) -> bool:
        try:
            # Any HTTP answer from the gateway (403 to an unsigned request) means it is up;
            # a bucket creation then proves the filer and a volume are writable.
            urllib.request.urlopen(self.endpoint, timeout=1)
        except urllib.error.HTTPError:
            try:
                self.create_bucket("featurelake-ready")
                return True
            except Exception:
                pass
        except OSError:
            pass
        return False

    def create_bucket(self, name: str) -> None:
        """Create a bucket (a signed CreateBucket request; no-op when it exists)."""
        from pyarrow import fs

        filesystem = fs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key.reveal(),
            endpoint_override=self.endpoint,
            scheme="http",
            region="us-east-1",
            force_virtual_addressing=False,
            allow_bucket_creation=True,
        )
        filesystem.create_dir(name)

    def request_counts(self) -> dict[str, int]:
        """S3 requests served so far, by request type (from the server's metrics)."""
        url = f"http://{LOOPBACK}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        counts: dict[str, int] = {}
        for line in text.splitlines():
            if not line.startswith(REQUESTS_METRIC + "{"):
                continue
            match = re.search(r'type="([^"]*)"', line)
            kind = match[1] if match else "?"
            counts[kind] = counts.get(kind, 0) + int(float(line.rsplit(" ", 1)[1]))
        return counts

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server by its process id (its process group; killed after `timeout_s`);
        idempotent."""
        stop_process_group(self.process, timeout_s)
