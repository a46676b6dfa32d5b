"""contract/models.py takes every answer contract/billing-api.yaml allows (issue 12, review item 6): answers are
open, so a model may be more lenient than the YAML, never stricter. A contract-valid answer the model refused
would be a BadAnswer forever (a 65-character notice made its whole batch unrecordable).

For each answer schema the test walks the YAML: the model requires no field the YAML leaves optional, and every
string property, filled to the YAML's extreme (its maxLength, or 5,000 characters when it has none, shaped by its
pattern), still validates through the model. Each instance is first checked valid against the YAML itself.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from contract import models
from tests.sandbox.test_contract_yaml import SPEC, component

SCHEMAS = SPEC["components"]["schemas"]
UNBOUNDED = 5000

# A minimal valid answer per schema, and the model that takes it (the Error schema's inner object apart).
BILL = {"reference": "410726095518", "contract": "07-118-00423", "customer_name": "B. Amel", "service": "water",
        "period": "2026-T3", "issued_on": "2026-10-05", "due_on": "2026-11-15", "amount_due": 345600,
        "currency": "DZD", "status": "unpaid", "agency_id": "ORAN-07", "customer_id": "C-0071182", "version": 3}
CASES: list[tuple[type[models._Answer], str, dict[str, Any]]] = [
    (models.ErrorBody, "Error", {"error": {"code": "invalid_json", "message": "body"}}),
    (models.Bill, "Bill", BILL),
    (models.BillPage, "BillFeed", {"items": [], "next_cursor": "c"}),
    (models.BillList, "BillList", {"items": []}),
    (models.BatchResult, "BatchResult", {"payment_id": "p", "status": "accepted"}),
    (models.BatchResults, "BatchResults", {"results": []}),
    (models.PaymentRecord, "RecordedPayment", {
        "payment_id": "p", "transaction_id": "t", "bill_reference": "410726095518", "amount": 100,
        "currency": "DZD", "method": "cash", "terminal_id": "ORAN-07-G1", "receipt_number": "ORAN-07-G1-000001",
        "captured_at": "2026-11-22T09:14:05+01:00", "status": "recorded"}),
    (models.AuthorizationAnswer, "AuthorizationResponse", {"approved": False, "response_code": "51"}),
    (models.HeartbeatAnswer, "HeartbeatResponse", {"server_time": "2026-11-22T09:14:05+01:00"}),
]

# The longest string each of the YAML's patterns allows, at most `n` characters.
EXTREMES: dict[str, Any] = {
    r"^[a-z0-9_]+$": lambda n: "z_9" * (n // 3) or "z",
    r"^[A-Z]{3}$": lambda n: "DZD",
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$": lambda n: "2026-12-31",
    r"\S": lambda n: "é" * n,
    r"^([0-9a-fA-F]{2})+$": lambda n: "aF" * (n // 2),
}


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _extreme(prop: dict[str, Any]) -> str | None:
    prop = _resolve(prop)
    types = prop.get("type")
    if "string" not in (types if isinstance(types, list) else [types]) or "enum" in prop or "const" in prop:
        return None
    n = prop.get("maxLength", UNBOUNDED)
    pattern = prop.get("pattern")
    if pattern == SCHEMAS["DateTime"]["pattern"]:
        return "2026-11-22T09:14:05.123456789+01:00"
    return EXTREMES[pattern](n) if pattern else "é" * n


def _model_required(model: type[models._Answer]) -> set[str]:
    return {name for name, f in model.model_fields.items() if f.is_required()}


@pytest.mark.parametrize("model, name, base", CASES, ids=[c[1] for c in CASES])
def test_a_model_requires_only_what_the_yaml_requires(model, name, base):
    schema = SCHEMAS[name]
    assert component(name).is_valid(base), name
    model.model_validate(base)
    assert _model_required(model) <= set(schema.get("required", []))
    if name == "Error":
        assert _model_required(models.ErrorCode) <= set(schema["properties"]["error"]["required"])


@pytest.mark.parametrize("model, name, base", CASES, ids=[c[1] for c in CASES])
def test_every_string_the_yaml_allows_at_its_extreme_is_taken(model, name, base):
    schema = SCHEMAS[name]
    tried = 0
    targets: list[tuple[list[str], dict[str, Any]]] = [([], schema)]
    if name == "Error":
        targets = [(["error"], schema["properties"]["error"])]
    for path, obj in targets:
        for key, prop in obj.get("properties", {}).items():
            value = _extreme(prop)
            if value is None:
                continue
            answer = _with(base, [*path, key], value)
            assert component(name).is_valid(answer), (name, key)  # the test's own instance is contract-valid
            model.model_validate(answer)  # never a ValidationError
            tried += 1
    assert tried or name in ("BillList", "BatchResults")


def _with(base: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    out = dict(base)
    if len(path) == 1:
        out[path[0]] = value
    else:
        out[path[0]] = _with(base[path[0]], path[1:], value)
    return out


@pytest.mark.parametrize("answer, field, kept", [
    ({"payment_id": "p", "status": "accepted", "notice": "n" * 65}, "notice", "n" * 64),
    ({"payment_id": "p", "status": "accepted", "receipt_number": "R" * 300}, "receipt_number", "R" * 200),
    ({"payment_id": "p", "status": "rejected", "error": {"code": "Not-Snake", "message": "m" * 900}}, "error", None),
])
def test_batch_results_the_yaml_allows_are_taken_and_kept_bounded(answer, field, kept):
    got = models.BatchResult.model_validate(answer)
    if kept is not None:
        assert getattr(got, field) == kept
    else:
        assert got.error is not None and len(got.error.message) == 500


@pytest.mark.parametrize("masked, kept", [
    ("XXXXXXXXXXXXXXXXXXX1234", True), ("412345######1234", True), ("412345xxxxxx1234", True),
    ("4111111111111111", False), ("not a masked number", False),
])
def test_a_recorded_card_keeps_only_a_masked_number_never_a_pan(masked, kept):
    record = models.PaymentRecord.model_validate({
        "payment_id": "p", "status": "recorded", "amount": 100, "currency": "DZD", "method": "card_terminal",
        "card": {"scheme": "CIB", "pan_masked": masked}})
    assert record.card is not None and (record.card.pan_masked == masked) is kept
    if not kept:
        assert record.card.pan_masked is None


def test_the_error_body_is_as_strict_as_the_yaml():
    for bad in ({"error": {"code": "Bad Code", "message": "m"}}, {"error": {"code": "x"}}, {"error": "x"}, {}):
        assert not component("Error").is_valid(bad)
        with pytest.raises(models.ValidationError):
            models.ErrorBody.model_validate(bad)


def test_the_model_patterns_are_the_yamls():
    assert models.PAN_MASKED == SCHEMAS["PanMasked"]["pattern"]
    assert models.DATE_TIME == SCHEMAS["DateTime"]["pattern"]
    assert re.fullmatch(models.PAN_MASKED, "X" * SCHEMAS["PanMasked"]["maxLength"])
