"""Custom implementations named by a dotted path in the config (online stores, executors)."""

from __future__ import annotations

import importlib
from typing import Any

from featurelake.errors import ConfigurationError


def load_subclass(path: str, base: type, *, what: str, key: str | None = None) -> Any:
    """The class at `path` (`package.module.Class`), which must extend `base`; else a
    ConfigurationError naming `what` and the fix."""
    module_name, _, class_name = str(path).rpartition(".")
    details = {"key": key} if key else {}
    try:
        cls: Any = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigurationError(
            f"The {what} '{path}' cannot be imported: {error}",
            fix="check the dotted path and that its package is installed.",
            **details,
        ) from error
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigurationError(
            f"The {what} '{path}' is not {_article(base.__name__)} {base.__name__} subclass.",
            fix=f"point at a class that extends {base.__module__}.{base.__name__}.",
            **details,
        )
    return cls


def _article(word: str) -> str:
    return "an" if word[:1].upper() in "AEIOU" else "a"
