"""Long-running job: stream a source into a feature group (Spark Structured Streaming).

    spark-submit jobs/stream.py --config conf/featurelake.yaml --group spend \\
        --trigger "30 seconds"
    spark-submit jobs/stream.py --group clicks --format kafka \\
        --option kafka.bootstrap.servers=broker:9092 --option subscribe=clicks

Each micro-batch is validated, merged into the Gold table and pushed to the online store when
enable_online_store is on; the checkpoint is kept under the store, so a restarted job resumes
without losing or repeating rows. `--trigger available_now` processes what is there and exits
(for batch-like schedules). The source is the group's declared one unless --source is given;
its query / transform turns records into the group's columns. Exit code 2 for a user error
(e.g. a micro-batch that breaks the schema: the stream stops without writing it), 1 for a
failure.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pyspark.sql import SparkSession

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig
from featurelake.pipeline.runtime import job_parser, parse_spark_conf, run_job
from featurelake.scheduling.stream_driver import DRIVER_MAX_ROWS
from featurelake.scheduling.streaming import start_stream

NAME = "stream"


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(NAME, "Stream a source into a feature group.")
    parser.add_argument("--group", required=True, help="GROUP or GROUP@VERSION")
    parser.add_argument("--source", help="Delta path or table (default: the group's source)")
    parser.add_argument("--trigger", default="10 seconds", help="available_now or an interval")
    parser.add_argument("--format", default="delta", help="delta, kafka, ...")
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="reader option"
    )
    parser.add_argument("--checkpoint", help="checkpoint folder (default: under the store)")
    parser.add_argument(
        "--driver-max-rows",
        type=int,
        default=DRIVER_MAX_ROWS,
        help="micro-batches of up to this many rows are checked on the driver (0: never)",
    )
    return parser


def run(
    args: argparse.Namespace, config: FeatureStoreConfig, spark: SparkSession
) -> dict[str, Any]:
    store = FeatureStore(config, spark)
    stream = start_stream(
        store,
        args.group,
        args.source,
        trigger=args.trigger,
        source_format=args.format,
        options=parse_spark_conf(args.option),
        checkpoint=args.checkpoint,
        driver_max_rows=args.driver_max_rows,
    )
    try:
        stream.await_termination()
    except KeyboardInterrupt:
        stream.stop()
    return {
        "group": stream.schema.name,
        "version": stream.schema.version,
        "checkpoint": stream.checkpoint,
        "batches": len(stream.batches),
        "rows_written": sum(b.rows_written for b in stream.batches),
        "engines": sorted({b.engine for b in stream.batches}),
    }


def main(argv: list[str] | None = None) -> int:
    return run_job(NAME, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
