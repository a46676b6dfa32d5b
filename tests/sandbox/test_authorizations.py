"""Contract v1: POST/GET /v1/authorizations (the sandbox acquirer) and the terminal heartbeat."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from drivers.pan import luhn_check_digit
from sandbox.billing.server import SandboxServer
from tests.sandbox.conftest import Api
from tests.sandbox.test_bills import assert_error

PAN = "6280580000001239"  # Luhn-valid


def auth_body(amount: int = 345600, pan: str = PAN, **changes) -> dict:
    body = {
        "payment_id": str(uuid.uuid4()),
        "amount": amount,
        "currency": "DZD",
        "card": {"pan": pan, "expiry": "2030-05", "scheme": "CIB", "aid": "A0000000031010", "pan_sequence": "01"},
        "emv": None,  # a card read without a transaction (contract 1.0); chip data: tests/sandbox/test_acquirer.py
    }
    body.update(changes)
    return body


def authorize(api: Api, body: dict, key: str | None = None):
    return api.post("v1/authorizations", json=body, headers={"Idempotency-Key": key or body["payment_id"]})


def test_approval_has_six_digit_code_and_is_stored_without_the_pan(api: Api):
    body = auth_body()
    r = authorize(api, body)
    assert r.status_code == 200
    answer = r.json()
    assert answer["approved"] is True and answer["response_code"] == "00"
    assert len(answer["code"]) == 6 and answer["code"].isdigit()
    assert answer["reference"] and answer["emv"].startswith("8A023030")
    assert api.get(f"v1/authorizations/{body['payment_id']}").json() == answer
    [stored] = api.get("_sandbox/authorizations").json()["items"]
    assert stored["pan_masked"] == "628058******1239"
    assert PAN not in api.get("_sandbox/authorizations").text


@pytest.mark.parametrize(
    "amount, pan, code",
    [
        (345651, PAN, "51"),  # minor units end in 51
        (51, PAN, "51"),
        (345654, PAN, "54"),  # the amount rules of docs/sandbox-server.md
        (345605, PAN, "05"),
        (345655, PAN, "55"),
        (345657, PAN, "57"),
        (345691, PAN, "91"),
        (345600, "6280580000000058", "51"),  # a declining test PAN
        (345600, "6280580000001238", "14"),  # fails Luhn
    ],
)
def test_decline_rules(api: Api, amount, pan, code):
    r = authorize(api, auth_body(amount, pan))
    assert r.status_code == 200
    assert r.json()["approved"] is False
    assert r.json()["response_code"] == code
    assert r.json()["code"] is None


def test_expired_card_declines_54(api: Api):
    body = auth_body()
    body["card"]["expiry"] = "2020-01"
    assert authorize(api, body).json()["response_code"] == "54"


def test_decline_pan_option(tmp_path):
    pan = "4000000000000" + "12"
    pan += luhn_check_digit(pan)
    with SandboxServer(tmp_path / "b.db", decline_pans=(pan,)) as srv:
        api = Api(srv)
        assert authorize(api, auth_body(pan=pan)).json()["response_code"] == "51"
        assert authorize(api, auth_body()).json()["response_code"] == "00"


def test_same_idempotency_key_returns_the_same_answer(api: Api):
    body = auth_body()
    first = authorize(api, body).json()
    # A retry after a timeout may carry other EMV data: the stored answer still comes back.
    assert authorize(api, {**body, "emv": "9F2701809F2608" + "AB" * 8}).status_code == 400  # checked first
    assert authorize(api, {**body, "emv": None}).json() == first
    assert authorize(api, body).json() == first
    [stored] = api.get("_sandbox/authorizations").json()["items"]
    assert stored["requests"] == 3
    # The code is deterministic per payment_id, not random.
    with SandboxServer() as other:
        assert authorize(Api(other), body).json() == first


def test_get_authorization_404_when_it_never_arrived(api: Api):
    assert_error(api.get(f"v1/authorizations/{uuid.uuid4()}"), 404, "authorization_not_found")


def test_authorization_request_problems(api: Api):
    body = auth_body()
    assert_error(api.post("v1/authorizations", json=body), 400, "missing_idempotency_key")
    assert_error(authorize(api, body, key=str(uuid.uuid4())), 400, "idempotency_key_mismatch")
    assert "body.track2" in assert_error(authorize(api, {**body, "track2": "x"}), 400, "unknown_field")
    card = {**body["card"], "cvv": "123"}
    assert "body.card.cvv" in assert_error(authorize(api, {**body, "card": card}), 400, "unknown_field")
    assert "amount" in assert_error(authorize(api, {**body, "amount": 12.5}), 400, "invalid_request")
    assert "amount" in assert_error(authorize(api, {**body, "amount": 2**63}), 400, "invalid_request")
    assert "card.pan" in assert_error(
        authorize(api, {**body, "card": {**body["card"], "pan": "12ab"}}), 400, "invalid_request"
    )
    r = api.post("v1/authorizations", data=b"nope", headers={"Idempotency-Key": "k"})
    assert_error(r, 400, "invalid_json")
    assert api.get(f"v1/authorizations/{body['payment_id']}").status_code == 404


def test_heartbeat_returns_server_time_and_is_recorded(api: Api):
    body = {"agent_version": "0.3.0", "queue_depth": 12, "oldest_pending_at": None,
            "devices": [{"kind": "pcsc", "name": "vpcd 0", "state": "ready"}]}  # fmt: skip
    r = api.post("v1/terminals/ORAN-07-G1/heartbeat", json=body)
    assert r.status_code == 200
    server_time = datetime.fromisoformat(r.json()["server_time"])
    assert server_time.utcoffset() is not None
    assert abs((server_time - datetime.now(UTC)).total_seconds()) < 60
    [seen] = api.get("_sandbox/heartbeats").json()["items"]
    assert seen["terminal_id"] == "ORAN-07-G1" and seen["body"] == body
    assert "bogus" in assert_error(
        api.post("v1/terminals/ORAN-07-G1/heartbeat", json={"bogus": 1}), 400, "unknown_field"
    )


def test_heartbeat_clock_offset_fakes_skew(api: Api, billing_server):
    billing_server.set_faults(clock_offset=600)
    t = datetime.fromisoformat(api.post("v1/terminals/ORAN-07-G1/heartbeat", json={}).json()["server_time"])
    assert 540 < (t - datetime.now(UTC)).total_seconds() < 660
    billing_server.set_faults(clock_offset=-300)
    t = datetime.fromisoformat(api.post("v1/terminals/ORAN-07-G1/heartbeat", json={}).json()["server_time"])
    assert -360 < (t - datetime.now(UTC)).total_seconds() < -240


def test_a_replay_must_be_the_same_request(api: Api):
    """Beyond contract v1 (backward compatible): a key reused for another amount or card is a conflict, so a
    client bug cannot hide behind the first answer."""
    body = auth_body()
    first = authorize(api, body).json()
    assert authorize(api, body).json() == first  # the same request: the first answer again
    r = authorize(api, {**body, "amount": body["amount"] + 100})
    assert_error(r, 409, "idempotency_conflict")
    other_card = {**body, "card": {**body["card"], "pan": "4111111111111111"}}
    assert_error(authorize(api, other_card), 409, "idempotency_conflict")
