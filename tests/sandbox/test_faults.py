"""Fault injection, observed from real clients: what the agent's uploader must survive."""

from __future__ import annotations

import json
import socket
from collections import Counter

import pytest
import requests

from sandbox.billing.server import SandboxServer
from tests.sandbox.conftest import Api, make_payment
from tests.sandbox.test_bills import assert_error


def test_error_fault_answers_500_and_commits_nothing(api: Api, billing_server, seeded_references):
    billing_server.set_faults(error_rate=1.0)
    p = make_payment(seeded_references[0], 1000)
    assert_error(api.post("v1/payments/batch", json={"payments": [p]}), 500, "internal_error")
    assert_error(api.get(f"v1/bills/{seeded_references[0]}"), 500, "internal_error")
    assert billing_server.recorded_payments() == []
    assert billing_server.fault_status()["injected"] == {"error": 2}
    billing_server.set_faults()
    assert api.batch([p])[0]["status"] == "accepted"


def test_unavailable_fault_answers_503_with_retry_after(api: Api, billing_server, seeded_references):
    billing_server.set_faults(unavailable_rate=1.0, retry_after=7)
    p = make_payment(seeded_references[0], 1000)
    r = api.post("v1/payments/batch", json={"payments": [p]})
    assert_error(r, 503, "unavailable")
    assert r.headers["Retry-After"] == "7"
    assert billing_server.recorded_payments() == []
    assert api.get("v1/bills/x").status_code == 503


def test_drop_after_commit_commits_then_client_gets_connection_error(api: Api, billing_server, seeded_references):
    ref = seeded_references[0]
    due = billing_server.bill(ref)["amount_due"]
    billing_server.set_faults(drop_after_commit_rate=1.0)
    p = make_payment(ref, 1000)
    with pytest.raises(requests.ConnectionError) as err:
        api.post("v1/payments/batch", json={"payments": [p]})
    assert "without response" in str(err.value) or "reset" in str(err.value).lower()
    # It really was committed: the server recorded it and the bill went down.
    billing_server.set_faults()
    assert [x["payment_id"] for x in billing_server.recorded_payments()] == [p["payment_id"]]
    assert api.get(f"v1/bills/{ref}").json()["amount_due"] == due - 1000
    assert api.get(f"v1/payments/{p['payment_id']}").json()["status"] == "recorded"
    # Replaying the batch (what the agent does) is safe.
    assert api.batch([p]) == [{"payment_id": p["payment_id"], "status": "duplicate"}]
    assert api.get(f"v1/bills/{ref}").json()["amount_due"] == due - 1000


def test_drop_after_commit_sends_not_a_single_byte(billing_server, seeded_references):
    billing_server.set_faults(drop_after_commit_rate=1.0)
    body = json.dumps({"payments": [make_payment(seeded_references[0], 100)]}).encode()
    head = (
        f"POST /v1/payments/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {billing_server.token}\r\n"
        f"X-Terminal-Id: ORAN-07-G1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", billing_server.port), timeout=10) as sock:
        sock.sendall(head + body)
        received = b""
        try:
            for _ in range(100):  # bounded; ends at EOF
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            pass
    assert received == b""
    assert len(billing_server.recorded_payments()) == 1


def test_garbage_fault_commits_then_answers_200_not_json(api: Api, billing_server, seeded_references):
    billing_server.set_faults(garbage_rate=1.0, garbage_kinds=["not_json"], garbage_record="always")
    p = make_payment(seeded_references[0], 1000)
    r = api.post("v1/payments/batch", json={"payments": [p]})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    billing_server.set_faults()
    assert len(billing_server.recorded_payments()) == 1
    assert api.batch([p])[0]["status"] == "duplicate"


def test_wrong_content_type_fault_commits_then_answers_html(api: Api, billing_server, seeded_references):
    billing_server.set_faults(wrong_content_type_rate=1.0)
    p = make_payment(seeded_references[0], 1000)
    r = api.post("v1/payments/batch", json={"payments": [p]})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<html" in r.text
    assert len(billing_server.recorded_payments()) == 1


def test_latency_fault_makes_a_short_client_timeout_expire(api: Api, billing_server, seeded_references):
    billing_server.set_faults(latency_ms=400)
    with pytest.raises(requests.Timeout):
        api.session.get(api.server.url + f"v1/bills/{seeded_references[0]}", timeout=0.05)
    billing_server.set_faults()
    assert api.get(f"v1/bills/{seeded_references[0]}").status_code == 200


def test_faults_never_touch_the_sandbox_endpoints(api: Api, billing_server):
    billing_server.set_faults(error_rate=0.5, unavailable_rate=0.5)
    for _ in range(5):
        assert api.get("_sandbox/faults").status_code == 200
    assert billing_server.fault_status()["injected"] == {}


def test_only_restricts_faults_to_some_requests(api: Api, billing_server, seeded_references):
    billing_server.set_faults(error_rate=1.0, only=["POST /v1/payments/batch"])
    assert api.get(f"v1/bills/{seeded_references[0]}").status_code == 200
    assert api.post("v1/payments/batch", json={"payments": [make_payment(seeded_references[0], 1)]}).status_code == 500
    billing_server.set_faults(unavailable_rate=1.0, only=["/v1/bills/"])
    assert api.get(f"v1/bills/{seeded_references[0]}").status_code == 503
    assert api.get("v1/bills", params={"agency": "ORAN-07"}).status_code == 200


def test_script_applies_faults_to_the_next_requests_in_order(api: Api, billing_server, seeded_references):
    billing_server.set_faults(script=["unavailable", "none", "error"])
    url = f"v1/bills/{seeded_references[0]}"
    assert [api.get(url).status_code for _ in range(4)] == [503, 200, 500, 200]


def outcome(api: Api, path: str) -> str:
    try:
        r = api.get(path)
    except requests.ConnectionError:
        return "drop"
    if r.status_code != 200:
        return str(r.status_code)
    if not r.headers["Content-Type"].startswith("application/json"):
        return "html"
    try:
        r.json()
    except ValueError:
        return "garbage"
    return "ok"


MIXED = {
    "error_rate": 0.1,
    "unavailable_rate": 0.1,
    "drop_after_commit_rate": 0.1,
    "garbage_rate": 0.1,
    "garbage_kinds": ["not_json"],  # the whole catalogue is exercised in test_garbage.py
    "wrong_content_type_rate": 0.1,
}


def test_fault_seed_makes_the_sequence_repeatable(tmp_path, billing_server, seeded_references):
    path = f"v1/bills/{seeded_references[0]}"
    runs = []
    for seed in (7, 7, 8):
        billing_server.set_faults(seed=seed, **MIXED)
        api = Api(billing_server)
        runs.append([outcome(api, path) for _ in range(40)])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert set(runs[0]) == {"ok", "500", "503", "drop", "garbage", "html"}


def test_fault_profile_over_http(api: Api):
    r = api.put("_sandbox/faults", json={"error_rate": 0.25, "seed": 3})
    assert r.status_code == 200 and r.json()["error_rate"] == 0.25
    assert api.get("_sandbox/faults").json()["seed"] == 3
    assert "bogus" in assert_error(api.put("_sandbox/faults", json={"bogus": 1}), 400, "unknown_field")
    assert "sum" in assert_error(
        api.put("_sandbox/faults", json={"error_rate": 0.6, "garbage_rate": 0.6}), 400, "invalid_request"
    )
    assert "error_rate" in assert_error(api.put("_sandbox/faults", json={"error_rate": 2}), 400, "invalid_request")
    assert "script" in assert_error(api.put("_sandbox/faults", json={"script": ["explode"]}), 400, "invalid_request")
    assert api.put("_sandbox/faults", json={}).json()["error_rate"] == 0.0


def upload_until_done(api: Api, payments: list[dict], batch: int = 100) -> Counter:
    """A minimal at-least-once uploader: resend a batch until a well-formed answer comes back."""
    seen: Counter = Counter()
    for i in range(0, len(payments), batch):
        chunk = payments[i : i + batch]
        for _ in range(200):  # bounded retries
            try:
                r = api.post("v1/payments/batch", json={"payments": chunk})
            except requests.ConnectionError:
                seen["drop"] += 1
                continue
            if r.status_code != 200 or not r.headers["Content-Type"].startswith("application/json"):
                seen[str(r.status_code) if r.status_code != 200 else "html"] += 1
                continue
            try:
                results = r.json()["results"]
            except ValueError:
                seen["garbage"] += 1
                continue
            assert [x["payment_id"] for x in results] == [p["payment_id"] for p in chunk]
            for x in results:
                assert x["status"] in ("accepted", "duplicate"), x
                seen[x["status"]] += 1
            break
        else:
            raise AssertionError("batch never went through")
    return seen


@pytest.mark.parametrize(
    "fault",
    ["error_rate", "unavailable_rate", "drop_after_commit_rate", "garbage_rate", "wrong_content_type_rate", "mixed"],
)
def test_2000_payments_under_faults_are_recorded_exactly_once(api: Api, billing_server: SandboxServer, fault):
    refs = billing_server.references()
    before = {ref: billing_server.bill(ref)["amount_due"] for ref in refs}
    payments = [make_payment(refs[i % len(refs)], 100 + i % 7) for i in range(2000)]
    profile: dict = MIXED if fault == "mixed" else {fault: 0.3, "garbage_kinds": ["not_json"]}
    billing_server.set_faults(seed=42, retry_after=0, **profile)
    seen = upload_until_done(api, payments)
    injected = billing_server.fault_status()["injected"]
    billing_server.set_faults()
    expected = [f.removesuffix("_rate") for f in profile if f.endswith("_rate")]
    assert all(injected.get(name, 0) > 0 for name in expected), injected
    assert seen["accepted"] + seen["duplicate"] == 2000
    recorded = billing_server.recorded_payments()
    assert len(recorded) == 2000
    assert {x["payment_id"] for x in recorded} == {p["payment_id"] for p in payments}
    committed_then_spoiled = seen["drop"] + seen["garbage"] + seen["html"]
    if committed_then_spoiled:
        assert seen["duplicate"] > 0  # replays of committed batches came back as duplicates
    paid: Counter = Counter()
    for p in payments:
        paid[p["bill_reference"]] += p["amount"]
    for ref in refs:
        assert billing_server.bill(ref)["amount_due"] == max(0, before[ref] - paid[ref])
