"""A small local scheduler for users without an orchestrator.

On each tick it takes, per scheduled group, the latest cron slot at or before now. A slot
later than the last claimed one is claimed in the registry with an insert-if-absent: the
registry's Delta commit decides, so with several schedulers on one store exactly one of them
wins each slot and runs it. After downtime the latest missed slot runs once (an incremental
run reads every change since the last one anyway), not once per missed slot. Each run is
recorded in the registry by `materialize_from_source` (slot, start, end, rows, Gold Delta
version, outcome); a failed run is recorded and the scheduler goes on.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from loguru import logger

from featurelake.registry.registry import group_key
from featurelake.scheduling.incremental import (
    FAILED,
    SUCCEEDED,
    MaterializationRun,
    materialize_from_source,
)
from featurelake.scheduling.schedules import latest_slot, next_slot, scheduled_groups
from featurelake.schema import FeatureGroupSchema
from featurelake.serving.store import FeatureStore
from featurelake.times import utc_now

SLOT_CLAIM = "schedule_slot"
KEEP_CLAIMS = 3
SKIPPED = "skipped"


@dataclass(frozen=True)
class SlotRun:
    """One slot this scheduler claimed: `succeeded`, `failed` (with `error`) or `skipped`
    (a later slot was claimed meanwhile by another scheduler)."""

    group: str
    version: int
    slot: datetime
    outcome: str
    run: MaterializationRun | None = None
    error: str | None = None


class Scheduler:
    """Runs due groups of one store; `groups` (name or name@version) narrows them."""

    def __init__(
        self,
        store: FeatureStore,
        groups: list[str] | None = None,
        *,
        owner: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.registry = store.registry
        self.groups = groups
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.clock = clock

    def due(self, now: datetime | None = None) -> list[tuple[FeatureGroupSchema, datetime]]:
        """Groups whose latest slot at `now` is later than their last claimed slot."""
        at = now or self.clock()
        self.registry.invalidate()
        claims = self._claims()
        out = []
        for schema in scheduled_groups(self.registry, self.groups):
            assert schema.materialization_schedule is not None
            slot = latest_slot(schema.materialization_schedule, at)
            last = max(claims.get(group_key(schema.name, schema.version), []), default=None)
            if last is None or slot > last:
                out.append((schema, slot))
        return out

    def run_pending(self, now: datetime | None = None) -> list[SlotRun]:
        """Claim and run every due slot; return what this scheduler ran."""
        results = []
        for schema, slot in self.due(now):
            key = group_key(schema.name, schema.version)
            claim = f"{key}|{slot.isoformat()}"
            payload = {"owner": self.owner, "claimed_at": utc_now().isoformat()}
            if not self.registry.put_object_if_absent(SLOT_CLAIM, claim, payload):
                continue  # another scheduler has it
            later = [s for s in self._claims().get(key, []) if s > slot]
            if later:
                results.append(SlotRun(schema.name, schema.version, slot, SKIPPED))
                continue
            results.append(self._run(schema, slot))
            self._prune(key)
        return results

    def _run(self, schema: FeatureGroupSchema, slot: datetime) -> SlotRun:
        logger.info(
            "scheduler {}: running {} v{} for slot {}",
            self.owner,
            schema.name,
            schema.version,
            slot,
        )
        try:
            run = materialize_from_source(
                self.store, schema, slot=slot, job="featurelake schedule run"
            )
        except Exception as error:
            text = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            logger.error("scheduled run of {} for slot {} failed: {}", schema.name, slot, text)
            return SlotRun(schema.name, schema.version, slot, FAILED, error=text)
        return SlotRun(schema.name, schema.version, slot, SUCCEEDED, run)

    def _claims(self) -> dict[str, list[datetime]]:
        claims: dict[str, list[datetime]] = {}
        for key in self.registry.list_objects(SLOT_CLAIM):
            group, _, slot = key.rpartition("|")
            claims.setdefault(group, []).append(datetime.fromisoformat(slot))
        return claims

    def _prune(self, key: str) -> None:
        """Keep only the newest claims of a group, so the registry does not grow per slot."""
        slots = sorted(self._claims().get(key, []))
        for slot in slots[:-KEEP_CLAIMS]:
            self.registry.delete_object(SLOT_CLAIM, f"{key}|{slot.isoformat()}")

    def run_forever(
        self,
        *,
        poll_seconds: float = 30.0,
        stop: threading.Event | None = None,
        on_run: Callable[[SlotRun], None] | None = None,
    ) -> None:
        """Tick until `stop` is set: run what is due, then sleep until the next slot (at most
        `poll_seconds`, so new groups and schedules are picked up)."""
        event = stop or threading.Event()
        while not event.is_set():
            for result in self.run_pending():
                if on_run is not None:
                    on_run(result)
            event.wait(self._sleep_seconds(poll_seconds))

    def _sleep_seconds(self, poll_seconds: float) -> float:
        now = self.clock()
        nexts = [
            next_slot(g.materialization_schedule, now)
            for g in scheduled_groups(self.registry, self.groups)
            if g.materialization_schedule is not None
        ]
        if not nexts:
            return poll_seconds
        wait = (min(nexts) - now).total_seconds() + 0.5
        return max(0.5, min(poll_seconds, wait))


def run_due_once(store: FeatureStore, groups: list[str] | None = None) -> list[SlotRun]:
    """Run what is due now, once (for a crontab line or a test)."""
    started = time.perf_counter()
    results = Scheduler(store, groups).run_pending()
    logger.info("scheduler tick: {} run(s) in {:.1f}s", len(results), time.perf_counter() - started)
    return results
