"""Schemathesis against the management API, from its own OpenAPI document: generated
valid and invalid requests for every operation must never get a 5xx, nor an answer (a
status, a content type, a body) that the document does not describe."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from announcements import apikeys, translations
from announcements.models import ApiScope, utcnow
from tests.factories import make_note, make_product

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 60


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_breaks_the_api_or_its_schema(app, session, mode) -> None:
    product = make_product(session, slug="acme")
    # Languages, so that generated translations get past the language check.
    translations.set_languages(session, product, "en", ["fr", "ar"], by=None, now=utcnow())
    session.commit()
    for number in range(3):
        make_note(session, product, version=f"1.{number}.0")
    make_note(session, product, status="draft", version="2.0.0")
    _, raw = apikeys.create(
        session,
        product,
        "fuzz",
        [scope.value for scope in ApiScope],
        by=None,
        now=utcnow(),
    )
    headers = {"Authorization": f"Bearer {raw}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 21

    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def check(case) -> None:
            # The key and the product are set right, so the generated request reaches the
            # operation itself instead of stopping at 401 or 403.
            if "slug" in (case.path_parameters or {}):
                case.path_parameters["slug"] = "acme"
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
