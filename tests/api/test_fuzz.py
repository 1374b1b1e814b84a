"""Schemathesis against the running API's own OpenAPI schema: no 5xx, no response that breaks
the schema, whatever a client sends (bounded: a fixed number of examples per operation)."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case

from tests.conftest import StartApps

API_KEY = "fuzz-key"


@pytest.fixture
def api_schema(start_apps: StartApps, namespace: str) -> schemathesis.BaseSchema:
    apps = start_apps(namespace, workers=0, env={"KT_API_KEYS": json.dumps([API_KEY])})
    assert apps.api is not None
    return schemathesis.openapi.from_url(f"{apps.api.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schemathesis.auth()
class ApiKey:
    """Lets schemathesis send the key itself, so it can also try requests without it."""

    def get(self, case: Case, context: schemathesis.AuthContext) -> str:
        return API_KEY

    def set(self, case: Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "X-API-Key": data}


@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_input_gets_a_server_error_or_a_response_outside_the_schema(case: Case) -> None:
    case.call_and_validate(timeout=15)
