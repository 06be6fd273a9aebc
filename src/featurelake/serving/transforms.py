"""Request-time transforms of feature values: scale, clip, log, one-hot, and your own functions.

A `FeatureTransform` is an immutable chain of steps. `apply(value)` returns a new value and
never changes its input; arrays are transformed element by element; nulls stay null (one-hot
of a null is all zeros). Built-in steps are plain data (`to_dict` / `from_dict`), so a feature
service stored in the registry brings its transforms to every process. A custom step is a
function registered by name with `register_transform`; each serving process registers it at
import time, and the stored service refers to it by that name.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from featurelake.errors import FeatureStoreError


class TransformError(FeatureStoreError):
    """A transform is malformed, or cannot be applied to a value."""


_CUSTOM: dict[str, Callable[[Any], Any]] = {}
_CUSTOM_LOCK = threading.Lock()


def register_transform(name: str, function: Callable[[Any], Any]) -> None:
    """Make `function` usable as `FeatureTransform.custom(name)` in this process."""
    if not callable(function):
        raise TransformError(
            f"The transform '{name}' is not callable.",
            fix="register a function that takes one value and returns the new value.",
        )
    with _CUSTOM_LOCK:
        _CUSTOM[name] = function


def registered_transforms() -> list[str]:
    return sorted(_CUSTOM)


@dataclass(frozen=True)
class _Step:
    op: str
    params: tuple[tuple[str, Any], ...] = ()
    function: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in self.params},
        }


@dataclass(frozen=True)
class FeatureTransform:
    """A named chain of request-time steps. Build with the class methods, chain with `then`.

    A transform of whole vectors holds one transform per feature instead:
    `FeatureTransform().add("age", lambda v: v / 100).add("spend", FeatureTransform.log())`;
    `apply(vector)` then returns a new `FeatureVector` with those features transformed.
    """

    name: str = "transform"
    steps: tuple[_Step, ...] = ()
    per_feature: dict[str, FeatureTransform] = field(
        default_factory=dict, compare=False, repr=False
    )

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def scale(
        cls,
        factor: float = 1.0,
        offset: float = 0.0,
        *,
        mean: float | None = None,
        std: float | None = None,
        name: str | None = None,
    ) -> FeatureTransform:
        """`value * factor + offset`, or standardise with `mean` and `std`: (value - mean) / std."""
        if mean is not None or std is not None:
            if mean is None or not std:
                raise TransformError(
                    "Standardising needs both mean and a non-zero std.",
                    fix="pass scale(mean=..., std=...) with std != 0, or scale(factor, offset).",
                )
            factor, offset = 1.0 / std, -mean / std
        return cls._single(
            "scale", {"factor": float(factor), "offset": float(offset)}, name or "scale"
        )

    @classmethod
    def clip(
        cls, lower: float | None = None, upper: float | None = None, *, name: str | None = None
    ) -> FeatureTransform:
        """Limit values to [lower, upper] (either bound may be omitted)."""
        if lower is None and upper is None:
            raise TransformError("clip needs a lower or an upper bound.", fix="pass one or both.")
        if lower is not None and upper is not None and lower > upper:
            raise TransformError(
                f"clip's lower bound {lower} is above its upper bound {upper}.",
                fix="swap the bounds.",
            )
        return cls._single("clip", {"lower": lower, "upper": upper}, name or "clip")

    @classmethod
    def log(
        cls, *, base: float | None = None, offset: float = 0.0, name: str | None = None
    ) -> FeatureTransform:
        """`log(value + offset)` (natural log unless `base`); `offset=1` gives log1p."""
        if base is not None and (base <= 0 or base == 1):
            raise TransformError(
                f"log base {base} is not valid.", fix="use a positive base other than 1."
            )
        return cls._single("log", {"base": base, "offset": float(offset)}, name or "log")

    @classmethod
    def one_hot(
        cls, categories: Sequence[Any], *, unknown: str = "zeros", name: str | None = None
    ) -> FeatureTransform:
        """A 0/1 list, one position per category. `unknown`: `zeros` or `error` for others."""
        if not categories:
            raise TransformError("one_hot needs at least one category.", fix="list them.")
        if len(set(categories)) != len(categories):
            raise TransformError("one_hot lists a category twice.", fix="list each once.")
        if unknown not in ("zeros", "error"):
            raise TransformError(
                f"one_hot's unknown={unknown!r} is not an option.", fix="use 'zeros' or 'error'."
            )
        return cls._single(
            "one_hot", {"categories": tuple(categories), "unknown": unknown}, name or "one_hot"
        )

    @classmethod
    def custom(cls, name: str, function: Callable[[Any], Any] | None = None) -> FeatureTransform:
        """A step running a registered function (registered here when `function` is given)."""
        if function is not None:
            register_transform(name, function)
        elif name not in _CUSTOM:
            raise TransformError(
                f"No transform function is registered as '{name}'.",
                fix=f"call register_transform('{name}', function) in this process before using "
                "it (known: " + (", ".join(registered_transforms()) or "none") + ").",
            )
        return cls(name, (_Step("custom", (("name", name),), _CUSTOM[name]),))

    @classmethod
    def _single(cls, op: str, params: Mapping[str, Any], name: str) -> FeatureTransform:
        return cls(name, (_Step(op, tuple(params.items())),))

    # -- composition ---------------------------------------------------------------------------

    def then(self, other: FeatureTransform, *, name: str | None = None) -> FeatureTransform:
        """A new transform: this one, then `other`."""
        return FeatureTransform(name or f"{self.name}|{other.name}", self.steps + other.steps)

    __or__ = then

    def named(self, name: str) -> FeatureTransform:
        return FeatureTransform(name, self.steps)

    def add(
        self, feature: str, function: FeatureTransform | Callable[[Any], Any]
    ) -> FeatureTransform:
        """Transform `feature` of a vector with `function` (a callable of one value, or a
        FeatureTransform); registers it on this transform and returns it, so calls chain.
        A plain callable lives in this process only (register it with `register_transform`
        to store it in a feature service)."""
        if self.steps:
            raise TransformError(
                f"The transform '{self.name}' transforms single values; add() builds a "
                "transform of vectors.",
                fix="start from FeatureTransform() and add one transform per feature.",
            )
        if isinstance(function, FeatureTransform):
            step = function
        elif callable(function):
            label = getattr(function, "__name__", "function")
            step = FeatureTransform(label, (_Step("custom", (("name", label),), function),))
        else:
            raise TransformError(
                f"The transform of '{feature}' is a {type(function).__name__}.",
                fix="pass a function of one value, or a FeatureTransform.",
            )
        self.per_feature[feature] = step
        return self

    # -- application ---------------------------------------------------------------------------

    def apply(self, value: Any) -> Any:
        """The transformed value; `value` itself is never modified. A `FeatureVector` gets
        each feature `add`ed here transformed (features it lacks are left out)."""
        if self.per_feature and type(value).__name__ == "FeatureVector":
            changes = {
                name: transform.apply(value.get(name))
                for name, transform in self.per_feature.items()
                if name in value
            }
            return value.with_values(changes)
        for step in self.steps:
            value = _apply_step(step, value)
        return value

    __call__ = apply

    def apply_many(self, values: Iterable[Any]) -> list[Any]:
        return [self.apply(v) for v in values]

    # -- storage -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureTransform:
        try:
            steps: list[_Step] = []
            for raw in data["steps"]:
                params = {k: v for k, v in raw.items() if k != "op"}
                op = raw["op"]
                if op == "custom":
                    steps.extend(cls.custom(params["name"]).steps)
                    continue
                if op not in _STEPS:
                    raise KeyError(op)
                if "categories" in params:
                    params["categories"] = tuple(params["categories"])
                steps.append(_Step(op, tuple(params.items())))
            return cls(str(data["name"]), tuple(steps))
        except TransformError:
            raise
        except (KeyError, TypeError) as error:
            raise TransformError(
                f"The stored transform {dict(data)!r} cannot be read ({error!r}).",
                fix="register the feature service again with valid transforms.",
            ) from error


# -- steps ------------------------------------------------------------------------------------


def _apply_step(step: _Step, value: Any) -> Any:
    if step.op == "one_hot":
        return _one_hot(step, value)
    if step.op == "custom":
        assert step.function is not None
        try:
            return step.function(_copy(value))
        except Exception as error:
            raise TransformError(
                f"The custom transform '{step.param('name')}' failed on {value!r}: {error}",
                fix="make the function handle this value (and None).",
            ) from error
    function = _STEPS[step.op]
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [None if v is None else function(step, v) for v in value]
    return function(step, value)


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _number(step: _Step, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TransformError(
            f"The transform '{step.op}' needs numbers, got {value!r}.",
            fix=f"apply '{step.op}' to numeric features only.",
        )
    return float(value)


def _scale(step: _Step, value: Any) -> float:
    return _number(step, value) * step.param("factor") + step.param("offset")


def _clip(step: _Step, value: Any) -> Any:
    number = _number(step, value)
    lower, upper = step.param("lower"), step.param("upper")
    if lower is not None and number < lower:
        return lower
    if upper is not None and number > upper:
        return upper
    return value


def _log(step: _Step, value: Any) -> float:
    number = _number(step, value) + step.param("offset")
    if number <= 0:
        raise TransformError(
            f"log of {number} (value {value!r} + offset {step.param('offset')}) is undefined.",
            fix="add an offset (log(offset=1) is log1p) or clip the feature first.",
        )
    base = step.param("base")
    return math.log(number) if base is None else math.log(number, base)


def _one_hot(step: _Step, value: Any) -> list[int]:
    categories = step.param("categories")
    encoded = [1 if value == c else 0 for c in categories]
    if value is not None and not any(encoded) and step.param("unknown") == "error":
        raise TransformError(
            f"one_hot got {value!r}, which is not one of {list(categories)}.",
            fix="add the category, or use unknown='zeros'.",
        )
    return encoded


_STEPS: dict[str, Callable[[_Step, Any], Any]] = {
    "scale": _scale,
    "clip": _clip,
    "log": _log,
    "one_hot": _one_hot,
}
