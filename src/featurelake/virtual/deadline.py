"""`query_timeout_seconds`: a virtual query that runs longer is cancelled on its engine.

Each engine says how to cancel its work (Spark interrupts the operations of a tag, DuckDB
interrupts the connection); `deadline` starts the clock, cancels when it runs out, and turns
the engine's cancellation error into a `QueryTimeoutError` naming the limit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from featurelake.errors import QueryTimeoutError

RECANCEL_SECONDS = 0.5


@contextmanager
def deadline(
    seconds: float | None, cancel: Callable[[], Any], *, what: str, group: str | None = None
) -> Iterator[None]:
    """Run the block; after `seconds` (None: no limit) call `cancel()`, and when the block then
    fails, raise QueryTimeoutError for `what` (e.g. "the virtual query of group 'x'")."""
    if seconds is None:
        yield
        return
    fired, done = threading.Event(), threading.Event()

    def expire() -> None:
        if done.wait(seconds):
            return
        fired.set()
        # again until the block ends: work the engine had not started yet when the time ran
        # out (a job still being planned) is cancelled once it starts
        while not done.is_set():
            cancel()
            done.wait(RECANCEL_SECONDS)

    timer = threading.Thread(target=expire, name="featurelake-deadline", daemon=True)
    timer.start()
    try:
        yield
    except Exception as error:
        if fired.is_set():
            raise QueryTimeoutError(
                f"{what[0].upper()}{what[1:]} ran longer than query_timeout_seconds="
                f"{seconds:g} and was cancelled.",
                fix="make the query cheaper (filter its sources, materialize the group with "
                "store.materialize), or raise query_timeout_seconds in the store config.",
                group=group,
                timeout_seconds=seconds,
            ) from error
        raise
    finally:
        done.set()
