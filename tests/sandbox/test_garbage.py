"""The catalogue of broken answers (the ``garbage`` fault), seen from a real client: every kind really is an
answer a terminal cannot trust, a garbage batch is recorded or not as asked, and the draws are controllable.
H2's hostile tests and soak use it against the agent; docs/sandbox-server.md describes each kind."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import contract
from sandbox.billing.faults import GARBAGE_KINDS
from sandbox.billing.garbage import applies
from sandbox.billing.server import SandboxServer
from tests.sandbox.conftest import Api, make_payment
from tests.sandbox.test_authorizations import auth_body, authorize
from tests.sandbox.test_bills import assert_error

SPEC = contract.openapi()
REGISTRY: Registry[Any] = Registry().with_resource("urn:c", Resource(SPEC, specification=DRAFT202012))
DOCUMENTED = {"200", "202", "400", "401", "403", "404", "409", "413", "429", "503"}


def schema_valid(name: str, value: Any) -> bool:
    return jsonschema.Draft202012Validator({"$ref": f"urn:c#/components/schemas/{name}"}, registry=REGISTRY).is_valid(
        value
    )


def strict_json(raw: bytes) -> Any:
    """JSON as the contract means it: UTF-8, no NaN/Infinity; ValueError otherwise (RecursionError too)."""

    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


def trustworthy(r: requests.Response, ok_schema: str, sent: list[dict[str, Any]] | None = None) -> bool:
    """Whether a terminal could take this answer as the contract's: documented status, JSON, right shape, and
    for a batch one result per payment ``sent``, in order."""
    if str(r.status_code) not in DOCUMENTED or not r.headers.get("content-type", "").startswith("application/json"):
        return False
    if "charset" in r.headers["content-type"] and "utf-8" not in r.headers["content-type"].lower():
        return False
    try:
        body = strict_json(r.content)
    except (ValueError, RecursionError):
        return False
    if not schema_valid(ok_schema if r.status_code < 300 else "Error", body):
        return False
    if sent is not None and r.status_code == 200:
        return [x["payment_id"] for x in body["results"]] == [p["payment_id"] for p in sent]
    return True


def request_for(kind: str, srv: SandboxServer, api: Api) -> tuple[str, str, dict[str, Any], str]:
    """(method, path, requests kwargs, the contract schema of a good answer) where ``kind`` applies."""
    ref = srv.references()[0]
    if kind.startswith("batch_"):
        return "POST", "v1/payments/batch", {"json": {"payments": [make_payment(ref, 100)]}}, "BatchResults"
    if kind.startswith("heartbeat_"):
        return "POST", "v1/terminals/ORAN-07-G1/heartbeat", {"json": {}}, "HeartbeatResponse"
    if kind.startswith("auth_"):
        body = auth_body()
        authorize(api, body)
        return "GET", f"v1/authorizations/{body['payment_id']}", {}, "AuthorizationResponse"
    if kind.startswith("bill_"):
        return "GET", f"v1/bills/{ref}", {}, "Bill"
    return "GET", "v1/bills", {"params": {"agency": "ORAN-07", "limit": 3}}, "BillFeed"


@pytest.mark.parametrize("kind", GARBAGE_KINDS)
def test_every_kind_is_an_answer_a_terminal_cannot_trust(kind: str, api: Api, billing_server: SandboxServer):
    method, path, kw, good = request_for(kind, billing_server, api)
    sent = kw["json"]["payments"] if "payments" in kw.get("json", {}) else None
    sane = api.session.request(method, billing_server.url + path, timeout=10, allow_redirects=False, **kw)
    assert trustworthy(sane, good, sent), sane.text[:200]  # the same request without the fault is fine
    if sent is not None:
        sent = [make_payment(billing_server.references()[0], 100)]
        kw = {"json": {"payments": sent}}
    billing_server.set_faults(garbage_rate=1.0, garbage_kinds=[kind], drip_seconds=1, huge_bytes=1024 * 1024)
    try:
        r = api.session.request(method, billing_server.url + path, timeout=10, allow_redirects=False, **kw)
    except requests.RequestException as e:  # short_read, content_encoding_lie: the client library refuses it
        assert kind in ("short_read", "content_encoding_lie"), e
        return
    finally:
        served = billing_server.fault_status()["garbage"]["kinds"]
        billing_server.set_faults()
    assert served == {kind: 1}
    if kind.startswith("retry_after_"):  # a well-formed 503/429 whose Retry-After a client must cap or ignore
        assert r.status_code in (429, 503) and r.headers["retry-after"] in (
            "999999", "Fri, 31 Dec 9999 23:59:59 GMT", "soon; -5",
        )  # fmt: skip
    elif kind == "slow_drip":  # valid in the end; only the pace (a write every 0.25 s) is hostile
        assert r.content.startswith(b"   ") and trustworthy(r, good, sent)
    elif kind == "batch_contract_4xx":  # well-formed; a lie about the request a client must not blame on a payment
        assert r.status_code == 400 and trustworthy(r, good) and r.json()["error"]["code"] == "invalid_json"
    elif kind == "bill_extra_fields":  # legal (answers are open): a client must ignore, not keep, them
        assert trustworthy(r, good) and {"loyalty", "notes", "amount_eur"} <= set(r.json())
    else:
        assert not trustworthy(r, good, sent), r.content[:200]
    if kind == "huge_body":
        assert len(r.content) > 1024 * 1024


@pytest.mark.parametrize("mode, recorded", [("always", 1), ("never", 0)])
def test_a_garbage_batch_is_recorded_or_not_as_asked(api: Api, billing_server, seeded_references, mode, recorded):
    billing_server.set_faults(garbage_rate=1.0, garbage_kinds=["batch_error_string"], garbage_record=mode)
    p = make_payment(seeded_references[0], 100)
    r = api.post("v1/payments/batch", json={"payments": [p]})
    assert r.json()["results"][0]["error"] == "idempotency_conflict"  # the broken shape, not a real rejection
    status = billing_server.fault_status()["garbage"]
    assert (status["recorded"], status["not_recorded"]) == (recorded, 1 - recorded)
    assert status["log"] == [{"kind": "batch_error_string", "method": "POST", "path": "/v1/payments/batch",
                              "recorded": bool(recorded)}]  # fmt: skip
    assert len(billing_server.recorded_payments()) == recorded
    billing_server.set_faults()
    # The agent's way out either way: replay; idempotency makes it exactly once.
    assert api.batch([p])[0]["status"] == ("duplicate" if recorded else "accepted")
    assert len(billing_server.recorded_payments()) == 1


@pytest.mark.parametrize("kind", ["negative_numbers", "huge_numbers", "float_numbers", "nan_numbers"])
def test_a_batch_answer_the_kind_cannot_spoil_is_never_a_lie(api: Api, billing_server, seeded_references, kind):
    # A batch result has no number to spoil: had the server not recorded it, its "accepted" would be a lie that no
    # client can tell from the truth (the soak found one payment marked uploaded and never recorded).
    billing_server.set_faults(garbage_rate=1.0, garbage_kinds=[kind], garbage_record="never")
    p = make_payment(seeded_references[0], 100)
    r = api.post("v1/payments/batch", json={"payments": [p]})
    assert trustworthy(r, "BatchResults", [p]) and r.json()["results"][0]["status"] == "accepted"  # nothing spoilt
    assert len(billing_server.recorded_payments()) == 1  # so it must be true
    status = billing_server.fault_status()["garbage"]
    assert (status["recorded"], status["not_recorded"]) == (1, 0)
    assert status["log"][-1]["recorded"] is True


def test_by_default_half_the_garbage_batches_are_recorded(api: Api, billing_server, seeded_references):
    billing_server.set_faults(garbage_rate=1.0, garbage_kinds=["all"], seed=5, drip_seconds=0, huge_bytes=65536)
    sent = [make_payment(seeded_references[i % 5], 100) for i in range(30)]
    for p in sent:
        try:
            api.session.post(billing_server.url + "v1/payments/batch", json={"payments": [p]}, timeout=10,
                             allow_redirects=False)  # fmt: skip
        except requests.RequestException:
            pass
    status = billing_server.fault_status()["garbage"]
    billing_server.set_faults()
    assert status["recorded"] + status["not_recorded"] == 30
    assert 5 <= status["recorded"] <= 25, status  # seeded: a fixed sequence, both outcomes present
    assert len(billing_server.recorded_payments()) == status["recorded"]
    assert all(applies(k, "POST", "/v1/payments/batch") for k in status["kinds"])
    assert len(status["kinds"]) > 10  # "all": the whole catalogue, batch kinds included
    assert any(k.startswith("batch_") for k in status["kinds"])


def test_a_script_names_a_kind_and_kinds_that_do_not_fit_leave_the_answer_alone(api: Api, billing_server,
                                                                                seeded_references):  # fmt: skip
    billing_server.set_faults(script=["garbage:batch_short", "none"])
    p = make_payment(seeded_references[0], 100)
    assert api.post("v1/payments/batch", json={"payments": [p]}).json() == {"results": []}
    assert api.batch([p])[0]["status"] in ("accepted", "duplicate")
    billing_server.set_faults(garbage_rate=1.0, garbage_kinds=["batch_error_string"])
    assert api.get(f"v1/bills/{seeded_references[0]}").status_code == 200  # no batch kind fits a bill
    assert billing_server.fault_status()["garbage"]["kinds"] == {"batch_short": 1}


def test_garbage_settings_are_checked(api: Api):
    assert "kind" in assert_error(api.put("_sandbox/faults", json={"garbage_kinds": ["bogus"]}), 400, "invalid_request")
    assert "garbage_record" in assert_error(
        api.put("_sandbox/faults", json={"garbage_record": "maybe"}), 400, "invalid_request"
    )
    assert_error(api.put("_sandbox/faults", json={"script": ["garbage:bogus"]}), 400, "invalid_request")
    assert_error(api.put("_sandbox/faults", json={"drip_seconds": 9999}), 400, "invalid_request")
    body = {"garbage_rate": 0.5, "garbage_kinds": ["deep_json", "slow_drip"], "garbage_record": "never"}
    assert api.put("_sandbox/faults", json=body).json()["garbage_kinds"] == ["deep_json", "slow_drip"]


def test_every_kind_is_documented():
    doc = (Path(__file__).parents[2] / "docs" / "sandbox-server.md").read_text(encoding="utf-8")
    missing = [k for k in GARBAGE_KINDS if f"`{k}`" not in doc]
    assert not missing, missing
    assert len(GARBAGE_KINDS) >= 25
    assert Counter(GARBAGE_KINDS).most_common(1)[0][1] == 1
