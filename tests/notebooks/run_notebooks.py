"""Run notebooks as plain scripts, one after another in this process (one JVM start for all).

Usage: python run_notebooks.py NOTEBOOK WORKDIR STORE [NOTEBOOK WORKDIR STORE ...]

Each notebook runs as `__main__` in its own working folder with FEATURELAKE_STORAGE_PATH set to
its own store, its output in WORKDIR/stdout.txt and WORKDIR/stderr.txt; WORKDIR/exit_code.txt
is written when it is done: 0, or 1 when it raised or left a Spark session running (a local run
must stop the session it started).
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from pathlib import Path


def left_running() -> bool:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    return (
        SparkSession.getActiveSession() is not None
        or SparkContext._active_spark_context is not None
    )


def run(notebook: Path, workdir: Path, store: str) -> int:
    os.chdir(workdir)
    os.environ["FEATURELAKE_STORAGE_PATH"] = store
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with (workdir / "stdout.txt").open("wb") as out, (workdir / "stderr.txt").open("wb") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            runpy.run_path(str(notebook), run_name="__main__")
            code = 0
            if left_running():
                print(f"{notebook.name} left its Spark session running", file=sys.stderr)
                code = 1
                from pyspark.sql import SparkSession

                SparkSession.builder.getOrCreate().stop()  # the next notebook starts its own
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
    return code


def main(args: list[str]) -> int:
    failed = 0
    for i in range(0, len(args), 3):
        notebook, workdir, store = Path(args[i]), Path(args[i + 1]), args[i + 2]
        code = run(notebook, workdir, store)
        written = workdir / "exit_code.txt.part"  # renamed whole: a reader never sees it half
        written.write_text(str(code))
        written.rename(workdir / "exit_code.txt")
        failed += code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
