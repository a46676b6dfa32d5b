"""Contract v1, payments: POST /v1/payments/batch and GET /v1/payments/{id}."""

from __future__ import annotations

import uuid

import pytest

from tests.sandbox.conftest import Api, make_payment
from tests.sandbox.test_bills import assert_error


def test_accepted_payment_reduces_amount_due_and_bumps_version(api: Api, billing_server, seeded_references):
    ref = seeded_references[0]
    before = api.get(f"v1/bills/{ref}").json()
    p = make_payment(ref, 1000)
    [result] = api.batch([p])
    assert result == {"payment_id": p["payment_id"], "status": "accepted", "receipt_number": p["receipt_number"]}
    after = api.get(f"v1/bills/{ref}").json()
    assert after["amount_due"] == before["amount_due"] - 1000
    assert after["status"] == "partially_paid"
    assert after["version"] == before["version"] + 1
    [rest] = api.batch([make_payment(ref, after["amount_due"], method="cash")])
    assert rest["status"] == "accepted" and "notice" not in rest
    final = api.get(f"v1/bills/{ref}").json()
    assert (final["amount_due"], final["status"], final["version"]) == (0, "paid", before["version"] + 2)


def test_get_payment_returns_it_as_recorded_or_404(api: Api, seeded_references):
    p = make_payment(seeded_references[0], 2500)
    assert_error(api.get(f"v1/payments/{p['payment_id']}"), 404, "payment_not_found")
    api.batch([p])
    r = api.get(f"v1/payments/{p['payment_id']}")
    assert r.status_code == 200
    assert r.json() == {**p, "status": "recorded"}


def test_replaying_identical_payment_is_duplicate_and_changes_nothing(api: Api, billing_server, seeded_references):
    ref = seeded_references[0]
    p = make_payment(ref, 1000)
    assert api.batch([p])[0]["status"] == "accepted"
    due = billing_server.bill(ref)["amount_due"]
    # Same content, keys in another order: still identical (canonical comparison).
    reordered = dict(reversed(list(p.items())))
    assert api.batch([reordered]) == [{"payment_id": p["payment_id"], "status": "duplicate"}]
    assert api.batch([p])[0]["status"] == "duplicate"
    assert billing_server.bill(ref)["amount_due"] == due
    [rec] = [x for x in billing_server.recorded_payments() if x["payment_id"] == p["payment_id"]]
    assert (rec["count"], rec["duplicates"], rec["conflicts"]) == (3, 2, 0)
    assert len(billing_server.recorded_payments()) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 1001},
        {"captured_offline": True},
        {"receipt_number": "ORAN-07-G1-999999"},
        {"card": None, "authorization": None, "method": "cash"},
    ],
)
def test_same_payment_id_with_different_content_is_idempotency_conflict(
    api: Api, billing_server, seeded_references, change
):
    p = make_payment(seeded_references[0], 1000)
    api.batch([p])
    due = billing_server.bill(seeded_references[0])["amount_due"]
    [result] = api.batch([{**p, **change}])
    assert result["status"] == "rejected"
    assert result["payment_id"] == p["payment_id"]
    assert result["error"]["code"] == "idempotency_conflict"
    assert billing_server.bill(seeded_references[0])["amount_due"] == due
    assert api.get(f"v1/payments/{p['payment_id']}").json()["amount"] == 1000  # the first one stands


def test_overpayment_and_paid_bill_are_accepted_with_credit_notice(api: Api, billing_server, seeded_references):
    ref = seeded_references[0]
    due = billing_server.bill(ref)["amount_due"]
    over, again = make_payment(ref, due + 500), make_payment(ref, 700)
    results = api.batch([over, again])
    assert [r["status"] for r in results] == ["accepted", "accepted"]
    assert [r.get("notice") for r in results] == ["credited_to_account", "credited_to_account"]
    bill = billing_server.bill(ref)
    assert (bill["amount_due"], bill["status"]) == (0, "paid")
    # A payment on a cancelled bill: the money was taken, so it is accepted and credited too.
    cancelled = seeded_references[1]
    billing_server.put_bill(reference=cancelled, status="cancelled")
    [r] = api.batch([make_payment(cancelled, 100)])
    assert (r["status"], r["notice"]) == ("accepted", "credited_to_account")
    assert billing_server.bill(cancelled)["status"] == "cancelled"


def test_bill_not_found_and_currency_mismatch_are_rejected(api: Api, billing_server, seeded_references):
    missing = make_payment("000000000001", 100)
    tnd = make_payment(seeded_references[0], 100, currency="TND")  # any other ISO code: "USD" the same
    results = api.batch([missing, tnd])
    assert [r["error"]["code"] for r in results] == ["bill_not_found", "currency_mismatch"]
    assert [r["payment_id"] for r in results] == [missing["payment_id"], tnd["payment_id"]]
    assert "000000000001" in results[0]["error"]["message"]
    assert billing_server.recorded_payments() == []
    assert [x["code"] for x in billing_server.rejections()] == ["bill_not_found", "currency_mismatch"]


FULL_PAN_CARD = {
    "scheme": "CIB",
    "pan_masked": "6280580000001239",
    "pan_token": "ab" * 32,
    "expiry": "2028-05",
    "aid": None,
}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"amount": 10.5}, "amount"),
        ({"amount": "1000"}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": -100}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 2**63}, "amount"),
        ({"currency": "dzd"}, "currency"),  # not an ISO 4217 code ("USD" is: currency_mismatch)
        ({"method": "cheque"}, "method"),
        ({"card": None}, "card"),
        ({"method": "cash"}, "card"),
        ({"method": "cash", "card": None}, "authorization"),
        ({"card": FULL_PAN_CARD}, "card.pan_masked"),
        ({"card": {**FULL_PAN_CARD, "pan_masked": "6280580000******"}}, "card.pan_masked"),
        ({"card": {**FULL_PAN_CARD, "pan_masked": "628058******1239", "pan_token": "not hex"}}, "card.pan_token"),
        ({"card": {**FULL_PAN_CARD, "pan_masked": "628058******1239", "expiry": "05/28"}}, "card.expiry"),
        ({"payment_id": "p-1"}, "payment_id"),
        ({"transaction_id": None}, "transaction_id"),
        ({"captured_at": "2026-11-22 09:14"}, "captured_at"),
        ({"captured_at": "2026-11-22T09:14:05"}, "captured_at"),
        ({"captured_offline": "no"}, "captured_offline"),
        ({"cashier_id": ""}, "cashier_id"),
        ({"bill_reference": 410726095518}, "bill_reference"),
    ],
)
def test_malformed_payment_is_rejected_naming_the_field(api: Api, billing_server, seeded_references, change, field):
    p = {**make_payment(seeded_references[0], 1000), **change}
    ok = make_payment(seeded_references[1], 1000)
    results = api.batch([p, ok])
    assert results[0]["status"] == "rejected"
    assert results[0]["error"]["code"] == "invalid_payment"
    assert results[0]["error"]["message"].startswith(field + ":")
    assert results[1]["status"] == "accepted"  # each payment is decided on its own
    assert [x["payment_id"] for x in billing_server.recorded_payments()] == [ok["payment_id"]]


def test_missing_field_is_invalid_payment(api: Api, seeded_references):
    p = make_payment(seeded_references[0], 1000)
    del p["captured_offline"]
    [r] = api.batch([p])
    assert r["error"]["code"] == "invalid_payment" and "captured_offline" in r["error"]["message"]
    [r] = api.batch(["not an object"])  # type: ignore[list-item]
    assert r == {
        "payment_id": None,
        "status": "rejected",
        "error": {"code": "invalid_payment", "message": r["error"]["message"]},
    }


def test_masked_pans_that_are_allowed(api: Api, seeded_references):
    for masked in ("628058******1239", "************1239", "628058XXXXXX1239", None):
        card = {"scheme": "EDAHABIA", "pan_masked": masked, "pan_token": None, "expiry": None, "aid": None}
        [r] = api.batch([make_payment(seeded_references[0], 100, card=card)])
        assert r["status"] == "accepted", (masked, r)


def test_batch_results_are_in_order_each_decided_on_its_own(api: Api, seeded_references):
    a = make_payment(seeded_references[0], 100)
    b = make_payment("000000000002", 100)
    c = make_payment(seeded_references[1], 100, method="cash", card=None, authorization=None)
    conflict = {**a, "amount": 999}
    results = api.batch([a, b, a, c, conflict])
    assert [(r["payment_id"], r["status"]) for r in results] == [
        (a["payment_id"], "accepted"),
        (b["payment_id"], "rejected"),
        (a["payment_id"], "duplicate"),
        (c["payment_id"], "accepted"),
        (a["payment_id"], "rejected"),
    ]
    assert results[4]["error"]["code"] == "idempotency_conflict"


def test_payments_sharing_a_transaction_are_each_recorded(api: Api, billing_server):
    customer, refs = billing_server.customer_with_bills(3)
    tx = str(uuid.uuid4())
    payments = [make_payment(ref, billing_server.bill(ref)["amount_due"], transaction_id=tx) for ref in refs]
    assert [r["status"] for r in api.batch(payments)] == ["accepted"] * len(refs)
    assert api.get(f"v1/customers/{customer}/bills").json()["items"] == []


def test_whole_request_problems_are_400(api: Api, seeded_references):
    url = "v1/payments/batch"
    assert_error(api.post(url, data=b"{not json", headers={"Content-Type": "application/json"}), 400, "invalid_json")
    assert_error(api.post(url, json=[]), 400, "invalid_request")
    assert_error(api.post(url, json={}), 400, "invalid_request")
    assert_error(api.post(url, json={"payments": []}), 400, "batch_empty")
    p = make_payment(seeded_references[0], 100)
    too_many = [make_payment(seeded_references[0], 100) for _ in range(501)]
    assert "501" in assert_error(api.post(url, json={"payments": too_many}), 400, "batch_too_large")
    msg = assert_error(api.post(url, json={"payments": [p], "dry_run": True}), 400, "unknown_field")
    assert msg.startswith("body.dry_run")
    msg = assert_error(api.post(url, json={"payments": [p, {**p, "pan": "6280580000001239"}]}), 400, "unknown_field")
    assert msg.startswith("payments[1].pan")
    card = {**p["card"], "cvv": "123"}
    msg = assert_error(api.post(url, json={"payments": [{**p, "card": card}]}), 400, "unknown_field")
    assert msg.startswith("payments[0].card.cvv")
    # None of these recorded anything.
    assert api.get("_sandbox/payments").json() == {"items": [], "total": 0}


def test_batch_of_500_is_accepted_in_one_request(api: Api, billing_server):
    refs = billing_server.references()
    payments = [make_payment(refs[i % len(refs)], 100) for i in range(500)]
    results = api.batch(payments)
    assert [r["payment_id"] for r in results] == [p["payment_id"] for p in payments]
    assert {r["status"] for r in results} == {"accepted"}
    assert api.get("_sandbox/payments").json()["total"] == 500
