"""Load feature group schemas from YAML files (one group, or a list of groups, per file)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from featurelake.errors import SchemaValidationError
from featurelake.schema.model import FeatureGroupSchema

DEFAULT_FEATURES_DIR = Path("conf/features")


def load_group_file(path: str | os.PathLike[str]) -> list[FeatureGroupSchema]:
    """The groups in one YAML file; an error names the file and the problem."""
    file = Path(path)
    try:
        loaded = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SchemaValidationError(
            f"Cannot read the feature group file {file}: {error}",
            fix="check that the file exists and is valid YAML.",
        ) from error
    if isinstance(loaded, dict) and "groups" in loaded and len(loaded) == 1:
        loaded = loaded["groups"]
    items = loaded if isinstance(loaded, list) else [loaded]
    groups = []
    for item in items:
        try:
            groups.append(FeatureGroupSchema.from_dict(item))
        except SchemaValidationError as error:
            raise SchemaValidationError(f"In {file}: {error.message}", fix=error.fix) from error
    return groups


def load_groups(folder: str | os.PathLike[str] = DEFAULT_FEATURES_DIR) -> list[FeatureGroupSchema]:
    """Every group in the `*.yaml` / `*.yml` files of `folder`, sorted by file name.

    Two definitions of the same group name and version are an error.
    """
    directory = Path(folder)
    if not directory.is_dir():
        raise SchemaValidationError(
            f"The feature folder {directory} does not exist.",
            fix="create it (featurelake init does) or point to the right folder.",
        )
    groups: list[FeatureGroupSchema] = []
    origin: dict[tuple[str, int], Path] = {}
    for file in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        for group in load_group_file(file):
            key = (group.name, group.version)
            if key in origin:
                raise SchemaValidationError(
                    f"Group '{group.name}' v{group.version} is defined in both {origin[key]} "
                    f"and {file}.",
                    fix="keep one definition, or bump the version of the newer one.",
                )
            origin[key] = file
            groups.append(group)
    return groups
