"""Contract 1.1 on the sandbox server: settled payments, chip data, stamp duty, reversals, receipts, the
business day, the heartbeat's receipt high-water mark, and the machine-readable contract at /openapi.json."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
import requests

import contract
from sandbox.billing.server import SandboxServer
from tests.sandbox.conftest import Api, make_payment
from tests.sandbox.test_authorizations import auth_body, authorize
from tests.sandbox.test_bills import assert_error

SETTLEMENT = {"by": "c0042", "from": "terminal_ticket", "at": "2026-11-22T10:00:00+01:00"}


def settled(ref: str, amount: int, **changes) -> dict:
    """A card payment whose unknown outcome a supervisor settled from the TPE's ticket."""
    p = make_payment(ref, amount, settlement=SETTLEMENT)
    p["card"] = {"scheme": "CIB", "pan_masked": "************1239", "pan_token": None}
    p["authorization"] = {"code": "A1B2C3", "reference": None, "approved_at": None}
    p.update(changes)
    return p


def test_a_settled_card_payment_is_accepted_and_returned_as_recorded(api: Api, seeded_references):
    # Issue 12: "invalid_payment: card: required for card_terminal" for every settled card payment.
    p = settled(seeded_references[0], 1000)
    [result] = api.batch([p])
    assert result["status"] == "accepted", result
    assert api.get(f"v1/payments/{p['payment_id']}").json() == {**p, "status": "recorded"}
    assert api.batch([p]) == [{"payment_id": p["payment_id"], "status": "duplicate"}]
    # From the server's own authorization record, for a card_reader payment.
    q = settled(seeded_references[1], 500, method="card_reader", settlement={**SETTLEMENT, "from": "server"})
    assert api.batch([q])[0]["status"] == "accepted"


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"card": {"scheme": "CIB", "pan_masked": "************1239", "expiry": "2028-05"}}, "card.expiry"),
        ({"card": None}, "card"),
        ({"settlement": {**SETTLEMENT, "from": "memory"}}, "settlement.from"),
        ({"settlement": {**SETTLEMENT, "by": " "}}, "settlement.by"),
        ({"settlement": {**SETTLEMENT, "at": "yesterday"}}, "settlement.at"),
        ({"card": {"scheme": "CIB", "pan_masked": "6280580000001239"}}, "card.pan_masked"),
    ],
)
def test_a_settled_payment_holds_only_what_a_ticket_shows(api: Api, seeded_references, changes, field):
    [result] = api.batch([settled(seeded_references[0], 1000, **changes)])
    assert result["status"] == "rejected" and result["error"]["code"] == "invalid_payment"
    assert result["error"]["message"].startswith(field), result


def test_unsettled_card_payments_still_need_their_card(api: Api, seeded_references):
    [result] = api.batch([make_payment(seeded_references[0], 1000, card=None)])
    assert result["status"] == "rejected" and result["error"]["message"] == "card: required for card_terminal"
    cash = make_payment(seeded_references[0], 1000, method="cash", settlement=SETTLEMENT)
    assert api.batch([cash])[0]["error"]["message"].startswith("settlement:")


def test_chip_data_entry_mode_and_stamp_duty(api: Api, seeded_references):
    ref = seeded_references[0]
    # approved online first (the sandbox credits a card_reader payment only on its acquirer's record)
    from tests.sandbox.test_acquirer import online_payment

    chip = online_payment(api, ref, 100, emv="9F2701409F2608" + "AB" * 8)
    chip["card"]["entry_mode"] = "contactless"
    cash = make_payment(ref, 100, method="cash", stamp_duty=4000)
    results = api.batch([chip, cash])
    assert [r["status"] for r in results] == ["accepted", "accepted"], results
    assert api.get(f"v1/payments/{cash['payment_id']}").json()["stamp_duty"] == 4000
    bad = [
        make_payment(ref, 100, method="cash", stamp_duty=-1),
        make_payment(ref, 100, stamp_duty=100),  # cash only
        make_payment(ref, 100, emv="not hex"),
        make_payment(ref, 100, method="cash", emv="9F27"),
        {**make_payment(ref, 100), "card": {**make_payment(ref, 1)["card"], "entry_mode": "magstripe"}},
    ]
    messages = [r["error"]["message"].split(":")[0] for r in api.batch(bad)]
    assert messages == ["stamp_duty", "stamp_duty", "emv", "emv", "card.entry_mode"]
    r = api.post(
        "v1/payments/batch", json={"payments": [{**make_payment(ref, 1), "settlement": {**SETTLEMENT, "x": 1}}]}
    )
    assert "payments[0].settlement.x" in assert_error(r, 400, "unknown_field")


def test_reversal_is_idempotent_and_404_without_an_approval(api: Api):
    body = auth_body()
    assert authorize(api, body).json()["approved"] is True
    pid = body["payment_id"]
    for _ in range(2):
        r = api.post(f"v1/authorizations/{pid}/reversal", json={"reason": "card_removed"})
        assert r.status_code == 200 and r.json() == {"payment_id": pid, "reversed": True}
    [stored] = api.get("_sandbox/authorizations").json()["items"]
    assert stored["reversal_reason"] == "card_removed" and stored["reversed_at"]
    declined = auth_body(amount=345651)
    assert authorize(api, declined).json()["approved"] is False
    for unknown in (declined["payment_id"], str(uuid.uuid4())):
        r = api.post(f"v1/authorizations/{unknown}/reversal", json={"reason": "timeout"})
        assert_error(r, 404, "authorization_not_found")
    assert_error(api.post(f"v1/authorizations/{pid}/reversal", json={"reason": "bored"}), 400, "invalid_request")
    assert_error(
        api.post(f"v1/authorizations/{pid}/reversal", json={"reason": "timeout", "x": 1}), 400, "unknown_field"
    )


def test_receipt_send_waits_for_the_payment_then_queues_once(api: Api, seeded_references):
    p = make_payment(seeded_references[0], 100)
    number = p["receipt_number"]
    body = {"channel": "email", "to": "amel@example.dz", "language": "fr"}
    assert_error(api.post(f"v1/receipts/{number}/send", json=body), 404, "receipt_not_found")
    api.batch([p])
    for _ in range(2):
        r = api.post(f"v1/receipts/{number}/send", json=body)
        assert r.status_code == 202 and r.json() == {"receipt_number": number, "status": "queued"}
    [sent] = api.get("_sandbox/receipts").json()["items"]
    assert (sent["address"], sent["requests"]) == ("amel@example.dz", 2)
    assert api.post(f"v1/receipts/{number}/send", json={"channel": "sms", "to": "+213550123456"}).status_code == 202
    for bad in ({"channel": "sms", "to": "0550"}, {"channel": "email", "to": "amel"}):
        assert_error(api.post(f"v1/receipts/{number}/send", json=bad), 400, "invalid_address")
    assert_error(api.post(f"v1/receipts/{number}/send", json={**body, "language": "de"}), 400, "invalid_request")


def test_business_day_pages_the_terminals_payments_with_day_totals(api: Api, seeded_references):
    ref = seeded_references[0]
    day = [make_payment(ref, 100 + i, captured_at=f"2026-11-22T{8 + i:02d}:00:00+01:00") for i in range(5)]
    day[1]["method"], day[1]["card"], day[1]["authorization"], day[1]["stamp_duty"] = "cash", None, None, 10
    # 23:30 UTC on the 21st is 00:30 on the 22nd in Oran; 23:30 +01:00 on the 22nd is still the 22nd.
    edge = [make_payment(ref, 7, captured_at="2026-11-21T23:30:00Z"),
            make_payment(ref, 9, captured_at="2026-11-22T23:30:00+01:00")]  # fmt: skip
    other_day = make_payment(ref, 1, captured_at="2026-11-23T08:00:00+01:00")
    api.batch([*day, *edge, other_day])
    got, cursor, pages = [], None, 0
    while pages < 10:  # bounded
        params = {"business_day": "2026-11-22", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("v1/terminals/ORAN-07-G1/payments", params=params).json()
        got += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [x["payment_id"] for x in got] == [p["payment_id"] for p in (*day, *edge)]
    assert got[1]["stamp_duty"] == 10 and got[0]["stamp_duty"] == 0 and got[0]["recorded_at"]
    totals = page["totals"]
    assert totals["count"] == 7 and totals["amount"] == {"DZD": sum(range(100, 105)) + 16}
    assert totals["by_method"]["cash"] == {"count": 1, "amount": {"DZD": 101}}
    bad = {"business_day": "2026-11-31"}
    assert "business_day" in assert_error(
        api.get("v1/terminals/ORAN-07-G1/payments", params=bad), 400, "invalid_request"
    )
    r = api.get("v1/terminals/ORAN-07-G1/payments", params={"business_day": "2026-11-22", "cursor": "c1.xx"})
    assert_error(r, 400, "invalid_cursor")


def test_heartbeat_answers_the_highest_receipt_seen_for_the_terminal(api: Api, seeded_references):
    url = "v1/terminals/ORAN-07-G1/heartbeat"
    assert api.post(url, json={"queue_depth": 0}).json()["last_receipt_number"] is None
    api.batch([make_payment(seeded_references[0], 100, receipt_number=f"ORAN-07-G1-{n:06d}") for n in (9, 12, 10)])
    assert api.post(url, json={}).json()["last_receipt_number"] == "ORAN-07-G1-000012"
    # The journal's own mark counts too; a lower one (a journal that lost payments) does not lower it.
    assert api.post(url, json={"last_receipt_number": "ORAN-07-G1-000015"}).json()["last_receipt_number"] == (
        "ORAN-07-G1-000015"
    )
    assert api.post(url, json={"last_receipt_number": "ORAN-07-G1-000003"}).json()["last_receipt_number"] == (
        "ORAN-07-G1-000015"
    )
    bad = {"last_receipt_number": {"n": 1}}
    assert "last_receipt_number" in assert_error(api.post(url, json=bad), 400, "invalid_request")
    bad = {"devices": [{"kind": "pcsc", "name": "r", "state": "ready", "colour": "red"}]}
    assert "devices[0].colour" in assert_error(api.post(url, json=bad), 400, "unknown_field")


def test_openapi_json_is_the_contract_and_needs_no_token(billing_server):
    r = requests.get(billing_server.url + "openapi.json", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json() == contract.openapi()
    assert r.json()["info"]["version"] == "1.1"


def test_a_database_from_before_11_gets_its_columns_and_marks(tmp_path):
    db = tmp_path / "old.db"
    with SandboxServer(db, seed_bills=5) as srv:
        ref = srv.references()[0]
        p = make_payment(ref, 100, receipt_number="ORAN-07-G1-000042")
        Api(srv).batch([p])
    with sqlite3.connect(db) as conn:  # the 1.0 layout: none of the 1.1 columns or tables
        conn.execute("DROP INDEX payments_day")
        conn.execute("DROP INDEX payments_receipt")
        for column in ("terminal_id", "receipt_number", "business_day"):
            conn.execute(f"ALTER TABLE payments DROP COLUMN {column}")
        conn.execute("DROP TABLE terminal_marks")
    with SandboxServer(db) as srv:
        api = Api(srv)
        assert api.get(f"v1/payments/{p['payment_id']}").status_code == 200
        beat = api.post("v1/terminals/ORAN-07-G1/heartbeat", json={}).json()
        assert beat["last_receipt_number"] == "ORAN-07-G1-000042"
        day = api.get("v1/terminals/ORAN-07-G1/payments", params={"business_day": "2026-11-22"}).json()
        assert [x["payment_id"] for x in day["items"]] == [p["payment_id"]]
