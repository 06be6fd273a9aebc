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
        "from featurelake import FeatureGroupSchema, Registry, MaterializedFeatureStore\n"
        "assert 'pyspark' not in sys.modules, 'importing featurelake imported pyspark'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
