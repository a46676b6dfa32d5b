"""contract/billing-api.yaml is a valid OpenAPI 3.1 document whose schemas say what the contract says."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.specs.openapi.definitions import OPENAPI_31

import contract

SPEC = contract.openapi()


def component(name: str) -> jsonschema.Draft202012Validator:
    """A validator for ``#/components/schemas/<name>`` with every $ref of the document resolvable."""
    registry: Registry[Any] = Registry().with_resource("urn:contract", Resource(SPEC, specification=DRAFT202012))
    return jsonschema.Draft202012Validator(
        {"$ref": f"urn:contract#/components/schemas/{name}"},
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def test_document_is_valid_openapi_31():
    jsonschema.Draft202012Validator(OPENAPI_31).validate(SPEC)
    assert SPEC["openapi"].startswith("3.1") and SPEC["info"]["version"] == "1.1"


@pytest.mark.parametrize("name", sorted(SPEC["components"]["schemas"]))
def test_every_schema_is_valid_json_schema_and_resolves(name):
    jsonschema.Draft202012Validator.check_schema(SPEC["components"]["schemas"][name])
    component(name).is_valid({})  # walks the $refs it meets; an unresolvable one raises


def test_every_contract_endpoint_is_described():
    ops = {(m.upper(), p) for p, item in SPEC["paths"].items() for m in item}
    assert ops == {
        ("GET", "/v1/bills/{reference}"), ("GET", "/v1/customers/{customer_id}/bills"), ("GET", "/v1/bills"),
        ("POST", "/v1/payments/batch"), ("GET", "/v1/payments/{payment_id}"), ("POST", "/v1/authorizations"),
        ("GET", "/v1/authorizations/{payment_id}"), ("POST", "/v1/authorizations/{payment_id}/reversal"),
        ("POST", "/v1/receipts/{receipt_number}/send"), ("GET", "/v1/terminals/{terminal_id}/payments"),
        ("POST", "/v1/terminals/{terminal_id}/heartbeat"),
    }  # fmt: skip
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            assert {"400", "401", "403"} <= set(op["responses"]), (method, path)
            if method == "post":
                assert "413" in op["responses"], (method, path)
                body = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                schema = SPEC["components"]["schemas"][body]
                assert schema.get("additionalProperties") is False, f"{body}: request bodies are closed"


CARD = {"scheme": "CIB", "pan_masked": "628058******1234", "pan_token": "ab" * 32, "expiry": "2028-05",
        "aid": "A0000000031010", "entry_mode": "chip"}  # fmt: skip
AUTH = {"code": "123456", "reference": "TPE-1", "approved_at": "2026-11-22T09:14:03+01:00"}


def payment(**changes: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "payment_id": "0b7e8f7a-2a4e-4f3f-9a53-1c1f0b0d7c11", "transaction_id": "0b7e8f7a-2a4e-4f3f-9a53-1c1f0b0d7c11",
        "bill_reference": "410726095518", "amount": 345600, "currency": "DZD", "method": "card_terminal",
        "card": CARD, "emv": None, "authorization": AUTH, "agency_id": "ORAN-07", "terminal_id": "ORAN-07-G2",
        "cashier_id": "c0042", "receipt_number": "ORAN-07-G2-000123", "captured_at": "2026-11-22T09:14:05+01:00",
        "captured_offline": True,
    }  # fmt: skip
    p.update(changes)
    return p


SETTLEMENT = {"by": "c0042", "from": "terminal_ticket", "at": "2026-11-22T10:00:00+01:00"}


@pytest.mark.parametrize(
    "body",
    [
        payment(),
        payment(method="cash", card=None, authorization=None, stamp_duty=4000),
        payment(method="card_reader", emv="9F2701409F2608" + "00" * 8),
        payment(settlement=SETTLEMENT, card={"scheme": "CIB", "pan_masked": "************1234", "pan_token": None}),
        payment(settlement={**SETTLEMENT, "from": "server"}, method="card_reader", card={"scheme": "OTHER"}),
        payment(amount=2**63 - 1),
    ],
)
def test_contract_payments_validate(body):
    component("Payment").validate(body)


@pytest.mark.parametrize(
    "body, why",
    [
        (payment(card=None), "card required without settlement"),
        (payment(settlement=SETTLEMENT), "a settled card holds only scheme and pan_masked"),
        (payment(card={**CARD, "pan": "6280580000001234"}), "never a PAN"),
        # (3456.0 is an "integer" to JSON Schema: the server refuses it, the schema cannot)
        (payment(amount=3456.5), "money is an integer"),
        (payment(amount=2**63), "beyond 64 bits"),
        (payment(amount=0), "amount > 0"),
        (payment(method="cheque"), "method enum"),
        (payment(colour="red"), "unknown field"),
        (payment(method="cash", card=None, authorization=None, stamp_duty=-1), "negative stamp duty"),
        (payment(stamp_duty=100), "stamp duty is cash only"),
        (payment(settlement={**SETTLEMENT, "from": "memory"}), "settlement.from enum"),
        (payment(card={**CARD, "pan_masked": "6280580000001234"}), "unmasked"),
        (payment(captured_at="2026-11-22 09:14:05"), "RFC 3339 with offset"),
    ],
)
def test_contract_refuses_bad_payments(body, why):
    assert not component("Payment").is_valid(body), why


def test_heartbeat_carries_the_receipt_high_water_mark_both_ways():
    component("HeartbeatRequest").validate(
        {"agent_version": "0.3.0", "queue_depth": 0, "oldest_pending_at": None,
         "devices": [{"kind": "pcsc", "name": "vpcd", "state": "ready"}], "last_receipt_number": "ORAN-07-G2-000123"}
    )  # fmt: skip
    component("HeartbeatResponse").validate({"server_time": "2026-11-22T09:14:05Z", "last_receipt_number": None})
    assert not component("HeartbeatRequest").is_valid({"queue_depth": -1})


def test_bill_version_beyond_64_bits_is_not_a_bill():
    bill = {
        "reference": "410726095518", "contract": "07-118-00423", "customer_name": "B. Amel", "service": "water",
        "period": "2026-T3", "issued_on": "2026-10-05", "due_on": "2026-11-15", "amount_due": 345600,
        "currency": "DZD", "status": "unpaid", "agency_id": "ORAN-07", "customer_id": "C-0071182", "version": 3,
    }  # fmt: skip
    component("Bill").validate({**bill, "extra": "responses are open"})
    assert not component("Bill").is_valid({**bill, "version": 2**70})
    assert not component("Bill").is_valid({**bill, "customer_name": {"a": 1}})
