"""Cron slots of scheduled groups (croniter does the cron arithmetic; times are naive UTC)."""

from __future__ import annotations

from datetime import datetime, timedelta

from featurelake.errors import ConfigurationError
from featurelake.registry import Registry
from featurelake.schema import FeatureGroupSchema

DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


def _croniter(expression: str, start: datetime):  # type: ignore[no-untyped-def]
    from croniter import croniter

    return croniter(expression, start)


def latest_slot(expression: str, now: datetime) -> datetime:
    """The most recent slot at or before `now`."""
    floor = now.replace(second=0, microsecond=0)
    slot: datetime = _croniter(expression, floor + timedelta(seconds=1)).get_prev(datetime)
    return slot


def next_slot(expression: str, after: datetime) -> datetime:
    """The first slot strictly after `after`."""
    slot: datetime = _croniter(expression, after).get_next(datetime)
    return slot


def scheduled_groups(
    registry: Registry, names: list[str] | None = None
) -> list[FeatureGroupSchema]:
    """The latest version of every group that declares a `materialization_schedule`.

    `names` (name or name@version) narrows the list; a named group without a schedule is a
    ConfigurationError saying what to add.
    """
    if names:
        chosen = []
        for name in names:
            group, _, version = name.partition("@")
            schema = registry.get_group(group, int(version) if version else None)
            if schema.materialization_schedule is None:
                raise ConfigurationError(
                    f"Group '{schema.name}' v{schema.version} has no materialization_schedule.",
                    fix="add e.g. \"materialization_schedule: '0 * * * *'\" and a 'source' to "
                    "its YAML, then featurelake apply.",
                )
            chosen.append(schema)
        return chosen
    return [g for g in registry.list_groups() if g.materialization_schedule is not None]


def to_quartz(expression: str) -> str:
    """The Quartz form of a 5-field cron expression (Databricks Jobs schedules).

    Quartz has a seconds field, names days of the week SUN..SAT (1-7) and needs `?` in one of
    the two day fields; an expression restricting both (cron's 'either day matches') has no
    Quartz form and raises ConfigurationError.
    """
    fields = _croniter(expression, datetime(2000, 1, 1)).expanded

    def join(values: list[int | str]) -> str:
        return "*" if values == ["*"] else ",".join(str(v) for v in values)

    minutes, hours, days, months, weekdays = fields
    if days != ["*"] and weekdays != ["*"]:
        raise ConfigurationError(
            f"The schedule '{expression}' restricts both the day of the month and the day of "
            "the week, which Databricks (Quartz) schedules cannot express.",
            fix="restrict only one of the two day fields, or schedule two groups of runs.",
        )
    day_of_week = (
        "?"
        if weekdays == ["*"]
        else ",".join(DAY_NAMES[int(v) % 7] if str(v).isdigit() else str(v) for v in weekdays)
    )
    day_of_month = "?" if weekdays != ["*"] else join(days)
    return " ".join(["0", join(minutes), join(hours), day_of_month, join(months), day_of_week])
