"""Copyable code that reads a group: Python through `featurelake.FeatureStore`, and the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from featurelake.server.ui.catalog import GroupPage


def refs_of(page: GroupPage) -> list[str]:
    """`group.*` for a key that reads every feature, else one ref per readable feature."""
    name = page.schema.name
    if page.reads_all:
        return [f"{name}.*"]
    return [f"{name}.{f.name}" for f in page.features]


def python_snippet(page: GroupPage) -> str:
    refs = refs_of(page)
    keys = ", ".join(f'"{k}"' for k in page.schema.entity_keys)
    return "\n".join(
        [
            "import featurelake",
            "from featurelake.config import load_config",
            "",
            'store = featurelake.FeatureStore(load_config("conf/featurelake.yaml"))',
            f"refs = {refs!r}".replace("'", '"'),
            "latest = store.get_features(refs, to_pandas=True)  # latest value per entity",
            f"# point in time: entity_df has the columns {keys} and event_timestamp",
            'training = store.get_training_set(entity_df, refs, name="my_set")',
            "online = store.get_online_features(refs, entity_ids, as_frame=True)",
        ]
    )


def cli_snippet(page: GroupPage) -> str:
    name = page.schema.name
    refs = ",".join(refs_of(page))
    return "\n".join(
        [
            f"featurelake describe {name}",
            f"featurelake report {name} --out reports/",
            f"featurelake training-set -e entities.parquet -f '{refs}' -o training.parquet",
        ]
    )
