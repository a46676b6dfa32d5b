"""Schemathesis against the live sandbox server, from contract/billing-api.yaml: whatever the contract allows a
terminal to send (and much it does not), the server never fails (no 5xx), answers only documented status codes,
and every answer has the documented shape and content type.

Bounded: MAX_EXAMPLES per operation (11 operations) keeps the run well under a minute on a 2-core box;
derandomized when ``CI`` is set, like every hypothesis test of the suite (tests/conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import contract
from sandbox.billing.server import SandboxServer
from tests.conftest import BILLING_AGENCY, BILLING_SEED_BILLS, BILLING_TERMINAL, BILLING_TOKEN

MAX_EXAMPLES = int(os.environ.get("GUICHET_SCHEMATHESIS_EXAMPLES", "25"))  # more for a deeper hunt
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]

schema = schemathesis.openapi.from_dict(contract.openapi())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=bool(os.environ.get("CI")),
    with_security_parameters=False,  # the seeded terminal's real token and id, below
)
# The seeded terminal's own id in paths, so heartbeat and business day reach their handlers (another id is 403).
schema.config.update(parameters={"terminal_id": BILLING_TERMINAL})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    """One server for every example of the module (hypothesis runs many examples per test)."""
    db = tmp_path_factory.mktemp("schemathesis") / "billing-server.db"
    with SandboxServer(db, token=BILLING_TOKEN, agency=BILLING_AGENCY, seed_bills=BILLING_SEED_BILLS) as srv:
        yield srv


@schema.parametrize()
def test_the_sandbox_server_answers_as_the_contract_says(case, server):
    case.call_and_validate(
        base_url=server.url.rstrip("/"), headers=server.headers(BILLING_TERMINAL), checks=CHECKS, timeout=10
    )


# The other direction: whatever the contract allows a terminal to upload, the server takes. A payment the YAML
# accepts but the server rejects as `invalid_payment` would be money taken and never credited (issue 12).
uploads = schemathesis.openapi.from_dict(contract.openapi()).include(method="POST", path="/v1/payments/batch")
uploads.config.generation.update(
    modes=[GenerationMode.POSITIVE],
    max_examples=MAX_EXAMPLES * 2,
    deterministic=bool(os.environ.get("CI")),
    with_security_parameters=False,
)


@uploads.parametrize()
def test_the_sandbox_server_takes_every_payment_the_contract_allows(case, server):
    for p in case.body["payments"]:  # the seeded terminal's own (another terminal's is a 403, by design)
        p["terminal_id"] = BILLING_TERMINAL
    response = case.call_and_validate(
        base_url=server.url.rstrip("/"), headers=server.headers(BILLING_TERMINAL), checks=CHECKS, timeout=10
    )
    assert response.status_code == 200, response.text
    for sent, result in zip(case.body["payments"], response.json()["results"], strict=True):
        if has_float(sent):  # 1.0 is an "integer" to JSON Schema, never money to the server
            continue
        # Semantics may still refuse it (an unknown bill, another currency, a reused id): never its shape.
        assert result.get("error", {}).get("code") != "invalid_payment", (sent, result)


def has_float(value: object) -> bool:
    if isinstance(value, dict):
        return any(has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(has_float(v) for v in value)
    return isinstance(value, float)
