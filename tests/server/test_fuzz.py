"""Property-based fuzzing of the OpenAPI schema (schemathesis): no request gets a 5xx.

Every operation gets a bounded number of generated requests, valid and invalid, sent with an
admin key to the live server; each answer must be a non-5xx, and an error must be the JSON
error body (a stable code, never a stack trace).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from .conftest import LiveServer

pytestmark = [pytest.mark.redis]

EXAMPLES_PER_OPERATION = 20
OPERATIONS = [
    ("POST", "/v1/features/register"),
    ("GET", "/v1/features"),
    ("GET", "/v1/features/{group}"),
    ("GET", "/v1/features/{group}/stats"),
    ("POST", "/v1/features/write"),
    ("POST", "/v1/features/write-batch"),
    ("POST", "/v1/features/serve"),
    ("POST", "/v1/features/historical"),
    ("POST", "/v1/features/materialize"),
    ("GET", "/v1/features/{group}/{feature}/history"),
    ("GET", "/v1/health"),
    ("GET", "/v1/metrics"),
]


@pytest.fixture(scope="module")
def api_schema(live_server: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{live_server.url}/v1/openapi.json")


def test_the_fuzzed_operations_are_all_of_the_api(api_schema: Any) -> None:
    documented = {
        (method.upper(), path)
        for path, methods in api_schema.raw_schema["paths"].items()
        for method in methods
    }
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_request_gets_a_server_error(
    api_schema: Any, live_server: LiveServer, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    headers = {"X-API-Key": live_server.admin}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call(base_url=live_server.url, headers=headers)
        assert response.status_code < 500, (
            case.method,
            case.formatted_path,
            case.body,
            response.text,
        )
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}, response.text
            assert "Traceback" not in response.text

    check()
