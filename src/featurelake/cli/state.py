"""The CLI's state: what the global options chose, the config and the store built on first use."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from featurelake.cli.output import Output
from featurelake.config import FeatureStoreConfig
from featurelake.pipeline.runtime import default_config_path, load_settings, session_for
from featurelake.session import active_session

if TYPE_CHECKING:
    from featurelake.serving.store import FeatureStore


class State:
    """What the global options chose; the config and the store are built on first use."""

    def __init__(
        self,
        config_path: Path | None,
        spark_conf: dict[str, str],
        as_json: bool,
        verbose: bool = False,
    ) -> None:
        self.explicit_config = config_path
        self.verbose = verbose
        self.spark_conf = spark_conf
        self.as_json = as_json
        self._config: FeatureStoreConfig | None = None
        self._store: FeatureStore | None = None

    @property
    def config_path(self) -> Path:
        return self.explicit_config or default_config_path()

    def config(self) -> FeatureStoreConfig:
        if self._config is None:
            self._config = load_settings(self.config_path, self.spark_conf)
        return self._config

    def output(self, as_json: bool = False) -> Output:
        return Output(as_json=as_json or self.as_json)

    def store(self, out: Output) -> FeatureStore:
        """The store every command uses, opened like every entry point opens it."""
        if self._store is None:
            from featurelake.serving.store import FeatureStore

            config = self.config()
            if not self.verbose and active_session() is None and not config.spark_remote:
                config = quiet_spark_logs(config)
            with out.status(f"Opening the store at {config.storage_path}"):
                spark = session_for(config, self.spark_conf)
                self._store = FeatureStore(config, spark)
        return self._store


QUIET_LOG4J = """\
# Spark's log for a session started by the featurelake CLI: errors only, on stderr.
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
# PySpark's gateway: at the root's level, so Spark prints no "Setting default log level" note.
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


def quiet_spark_logs(config: FeatureStoreConfig) -> FeatureStoreConfig:
    """`config` with Spark's startup chatter (INFO/WARN lines) off; errors still show.

    Applies only to a session the CLI starts itself; `--verbose` keeps Spark's own logging.
    """
    current = config.spark_conf.get("spark.driver.extraJavaOptions", "")
    if "log4j" in current:  # the user chose Spark's logging
        return config
    file = Path(tempfile.gettempdir()) / "featurelake-cli-log4j2.properties"
    try:
        if not file.is_file() or file.read_text() != QUIET_LOG4J:
            staged = file.with_name(f"{file.name}.{os.getpid()}")
            staged.write_text(QUIET_LOG4J)
            os.replace(staged, file)
    except OSError:  # no writable temp folder: keep Spark's default logging
        return config
    option = f"-Dlog4j2.configurationFile={file}"
    return config.replace(
        spark_conf={
            **config.spark_conf,
            "spark.driver.extraJavaOptions": f"{current} {option}".strip(),
        }
    )


def state_of(ctx: typer.Context) -> State:
    state = ctx.find_object(State)
    if state is None:  # a command invoked without the group callback (tests of one command)
        state = State(None, {}, False)
        ctx.obj = state
    return state


def open_store(ctx: typer.Context, as_json: bool = False) -> tuple[Output, FeatureStore]:
    """A command's output, and the run's store (opened on first use, its status shown there)."""
    state = state_of(ctx)
    out = state.output(as_json)
    return out, state.store(out)
