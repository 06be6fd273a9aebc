"""Request-time transforms: each step, chains, immutability, storage round trip."""

from __future__ import annotations

import math

import pytest

from featurelake.serving import FeatureTransform, TransformError, register_transform


def test_scale_standardise_clip_and_log() -> None:
    assert FeatureTransform.scale(2, 1).apply(3) == 7.0
    assert FeatureTransform.scale(mean=10, std=4).apply(18) == 2.0
    assert FeatureTransform.clip(0, 1).apply_many([-1, 0.5, 3]) == [0, 0.5, 1]
    assert FeatureTransform.clip(upper=5).apply(9) == 5
    assert FeatureTransform.log().apply(math.e) == pytest.approx(1.0)
    assert FeatureTransform.log(offset=1).apply(0) == 0.0
    assert FeatureTransform.log(base=10).apply(1000) == pytest.approx(3.0)


def test_one_hot() -> None:
    colour = FeatureTransform.one_hot(["red", "green", "blue"])
    assert colour.apply("green") == [0, 1, 0]
    assert colour.apply("purple") == [0, 0, 0]
    assert colour.apply(None) == [0, 0, 0]
    strict = FeatureTransform.one_hot(["a"], unknown="error")
    with pytest.raises(TransformError, match="not one of"):
        strict.apply("b")


def test_chains_apply_in_order_and_never_change_their_input() -> None:
    chain = FeatureTransform.clip(0, 100).then(FeatureTransform.log(offset=1)) | (
        FeatureTransform.scale(2)
    )
    assert chain.name == "clip|log|scale"
    assert chain.apply(500) == pytest.approx(2 * math.log(101))
    values = [1.0, None, 250.0]
    out = chain.apply(values)
    assert values == [1.0, None, 250.0]  # arrays go element by element into a new list
    assert out[1] is None and out[2] == pytest.approx(2 * math.log(101))
    assert chain.apply(None) is None
    with pytest.raises(AttributeError):
        chain.name = "other"  # type: ignore[misc]


def test_custom_functions_are_registered_by_name() -> None:
    def append_one(value: list[int]) -> list[int]:
        value.append(1)
        return value

    custom = FeatureTransform.custom("append_one", append_one)
    original = [0]
    assert custom.apply(original) == [0, 1] and original == [0]
    register_transform("double", lambda v: None if v is None else v * 2)
    assert FeatureTransform.custom("double").then(custom.named("x")).name == "double|x"
    with pytest.raises(TransformError, match="register_transform"):
        FeatureTransform.custom("never_registered")
    failing = FeatureTransform.custom("fails", lambda v: 1 / 0)
    with pytest.raises(TransformError, match="'fails' failed"):
        failing.apply(3)


def test_stored_form_round_trips() -> None:
    register_transform("negate", lambda v: -v)
    chain = (
        FeatureTransform.scale(mean=1, std=2)
        .then(FeatureTransform.clip(-3, 3))
        .then(FeatureTransform.custom("negate"))
    )
    again = FeatureTransform.from_dict(chain.to_dict())
    assert again == chain
    assert again.apply(11) == -3.0
    hot = FeatureTransform.one_hot(["a", "b"])
    assert FeatureTransform.from_dict(hot.to_dict()).apply("b") == [0, 1]
    with pytest.raises(TransformError, match="cannot be read"):
        FeatureTransform.from_dict({"name": "x", "steps": [{"op": "teleport"}]})


def test_bad_arguments_and_values_are_explained() -> None:
    with pytest.raises(TransformError, match="std"):
        FeatureTransform.scale(mean=1, std=0)
    with pytest.raises(TransformError, match="swap"):
        FeatureTransform.clip(5, 1)
    with pytest.raises(TransformError, match="undefined"):
        FeatureTransform.log().apply(0)
    with pytest.raises(TransformError, match="numbers"):
        FeatureTransform.scale(2).apply("abc")
    with pytest.raises(TransformError, match="twice"):
        FeatureTransform.one_hot(["a", "a"])
