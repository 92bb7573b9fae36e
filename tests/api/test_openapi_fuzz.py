"""Schemathesis against the app's own OpenAPI schema: no server error, and every
answer (errors included) as the schema says. A launcher double starts no bots.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from api.app import create_app
from api.keys import create_key
from api.store import Store
from tests.api.test_app import FakeLauncher

pytestmark = pytest.mark.integration

_store = Store("sqlite://")
_key = create_key(_store, "fuzz")[1]
app = create_app(FakeLauncher(), store=_store, max_bots=1000)
schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(
    # Event streams stay open by design; the SSE tests cover them.
    path_regex=r"/stream$"
)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_schema(case: schemathesis.Case) -> None:
    # Not "positive data acceptance": the schema cannot say which hosts and
    # plugins this control plane allows, so a schema-valid body may be a 422.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {_key}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
            unsupported_method,
            allow_header_conformance,
        ],
    )
