from __future__ import annotations

import subprocess
import sys

import featurelake


def test_every_export_resolves() -> None:
    for name in featurelake.__all__:
        assert getattr(featurelake, name) is not None, name


def test_import_starts_no_spark_and_registry_needs_no_spark() -> None:
    code = (
        "import sys, featurelake\n"
        "from featurelake import FeatureGroupSchema, Registry, FeatureStore\n"
        "assert 'pyspark' not in sys.modules, 'importing featurelake imported pyspark'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_store_class_is_public() -> None:
    stores = [n for n in featurelake.__all__ if n.endswith(("Store", "Reader"))]
    assert stores == ["FeatureStore"]
    for name in ("MaterializedFeatureStore", "HybridFeatureStore", "DuckDBFeatureReader"):
        try:
            getattr(featurelake, name)
        except AttributeError as error:
            assert "featurelake.FeatureStore" in str(error)
        else:
            raise AssertionError(f"{name} is still exported")
