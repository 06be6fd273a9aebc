"""What an online read returns: one `FeatureVector` per entity, values with event time and age."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurelake.errors import FeatureNotFoundError
from featurelake.online.values import from_micros

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, slots=True)
class FeatureValue:
    """One feature of one entity: its value, when the event happened, and how old it is.

    `found` is False when the store had no value (then `value` is the default, or None);
    `version` is set by `get_value` / `get_value_history` when the store keeps history.
    """

    name: str
    value: Any
    event_time: datetime | None
    age: timedelta | None
    found: bool
    version: int | None = None
    """Which write of this value it is (1, 2, ...), when the store keeps value history."""

    @property
    def timestamp(self) -> datetime | None:
        """The event time (the name other stores give it)."""
        return self.event_time

    @property
    def age_seconds(self) -> float | None:
        """The age in seconds."""
        return None if self.age is None else self.age.total_seconds()


class FeatureVector:
    """The requested features of one entity, in request order.

    `get(name)` takes the output name (`feature`, or `group__feature` when two groups share a
    feature name) or the reference (`group.feature`). Vectors are immutable: `with_values`
    returns a new one.
    """

    __slots__ = ("_entity", "_event_us", "_index", "_names", "_now_us", "_values", "source")

    def __init__(
        self,
        entity: Mapping[str, Any],
        names: tuple[str, ...],
        index: Mapping[str, int],
        values: list[Any],
        event_us: list[int | None],
        now_us: int,
        source: str = "online",
    ) -> None:
        self._entity = entity
        self._names = names
        self._index = index
        self._values = values
        self._event_us = event_us
        self._now_us = now_us
        self.source = source

    # -- access --------------------------------------------------------------------------------

    @property
    def entity(self) -> dict[str, Any]:
        """The entity's key values."""
        return dict(self._entity)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def _position(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise FeatureNotFoundError(
                f"The feature vector has no feature '{name}'.",
                fix=f"use one of: {', '.join(self._names)}.",
                feature=name,
            ) from None

    def get(self, name: str, default: Any = None) -> Any:
        """The value of a feature (a copy for arrays and maps); `default` when it is null."""
        value = self._values[self._position(name)]
        if value is None:
            return default
        return copy.deepcopy(value) if isinstance(value, list | dict) else value

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def feature(self, name: str) -> FeatureValue:
        """The value of a feature with its event time, age and whether it was found."""
        position = self._position(name)
        micros = self._event_us[position]
        value = self._values[position]
        if isinstance(value, list | dict):
            value = copy.deepcopy(value)
        if micros is None:
            return FeatureValue(self._names[position], value, None, None, False)
        return FeatureValue(
            self._names[position],
            value,
            from_micros(micros),
            timedelta(microseconds=self._now_us - micros),
            True,
        )

    def event_time(self, name: str) -> datetime | None:
        micros = self._event_us[self._position(name)]
        return None if micros is None else from_micros(micros)

    def age(self, name: str) -> timedelta | None:
        micros = self._event_us[self._position(name)]
        return None if micros is None else timedelta(microseconds=self._now_us - micros)

    def found(self, name: str) -> bool:
        return self._event_us[self._position(name)] is not None

    def to_list(self) -> list[Any]:
        """The values, in request order."""
        return [copy.deepcopy(v) if isinstance(v, list | dict) else v for v in self._values]

    def to_dict(self, *, include_entity: bool = False) -> dict[str, Any]:
        """{name: value}, in request order (entity keys first when `include_entity`)."""
        out: dict[str, Any] = dict(self._entity) if include_entity else {}
        out.update(zip(self._names, self.to_list(), strict=True))
        return out

    def with_values(self, changes: Mapping[str, Any]) -> FeatureVector:
        """A new vector with some values replaced (event times and ages are kept)."""
        values = list(self._values)
        for name, value in changes.items():
            values[self._position(name)] = value
        return FeatureVector(
            self._entity,
            self._names,
            self._index,
            values,
            self._event_us,
            self._now_us,
            self.source,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureVector):
            return NotImplemented
        return (
            dict(self._entity) == dict(other._entity)
            and self._names == other._names
            and self._values == other._values
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(self._names, self._values, strict=True))
        return f"FeatureVector({dict(self._entity)!r}, {shown})"


def vectors_to_pandas(
    vectors: Sequence[FeatureVector], *, event_times: bool = False
) -> pd.DataFrame:
    """One row per vector: entity key columns, then the features (then `<name>__event_time`)."""
    import pandas as pd

    rows = []
    for vector in vectors:
        row = vector.to_dict(include_entity=True)
        if event_times:
            for name in vector.names:
                row[f"{name}__event_time"] = vector.event_time(name)
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows, columns=list(rows[0]))
