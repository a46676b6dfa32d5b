"""Contract v1, bills side: auth, error bodies, bill lookup, customer bills, the delta feed."""

from __future__ import annotations

import pytest
import requests

from sandbox.billing.seed import first_reference
from sandbox.billing.server import SandboxServer
from sandbox.billing.store import BILL_FIELDS
from tests.sandbox.conftest import Api, make_payment


def assert_error(r: requests.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    message: str = body["error"]["message"]
    return message


@pytest.mark.parametrize(
    "headers, code",
    [
        ({}, "unauthorized"),
        ({"X-Terminal-Id": "ORAN-07-G1"}, "unauthorized"),
        ({"Authorization": "Bearer wrong", "X-Terminal-Id": "ORAN-07-G1"}, "unauthorized"),
        ({"Authorization": "test-token", "X-Terminal-Id": "ORAN-07-G1"}, "unauthorized"),
        ({"Authorization": "Bearer test-token"}, "missing_terminal_id"),
        ({"Authorization": "Bearer test-token", "X-Terminal-Id": ""}, "missing_terminal_id"),
    ],
)
def test_requests_without_token_or_terminal_id_get_401(billing_server, seeded_references, headers, code):
    url = billing_server.url + "v1/bills/" + seeded_references[0]
    assert_error(requests.get(url, headers=headers, timeout=5), 401, code)
    r = requests.post(billing_server.url + "v1/payments/batch", json={"payments": []}, headers=headers, timeout=5)
    assert_error(r, 401, code)
    # The test-only endpoints need the admin token: a wrong one is 401, a terminal's 403.
    r = requests.get(billing_server.url + "_sandbox/payments", headers=headers, timeout=5)
    assert_error(r, 401, code) if code == "unauthorized" else assert_error(r, 403, "forbidden")


def test_get_bill_returns_every_contract_field(api: Api, seeded_references):
    ref = seeded_references[0]
    assert ref == first_reference("ORAN-07")
    r = api.get(f"v1/bills/{ref}")
    assert r.status_code == 200
    bill = r.json()
    assert tuple(bill) == BILL_FIELDS
    assert bill["reference"] == ref and len(ref) == 12 and ref.isdigit()
    assert bill["status"] == "unpaid" and bill["currency"] == "DZD" and bill["agency_id"] == "ORAN-07"
    assert isinstance(bill["amount_due"], int) and bill["amount_due"] > 0
    assert bill["service"] in ("water", "electricity", "gas", "sanitation")
    assert bill["version"] == 1


def test_unknown_bill_customer_and_route_are_404_with_error_body(api: Api):
    assert "999999999999" in assert_error(api.get("v1/bills/999999999999"), 404, "bill_not_found")
    assert_error(api.get("v1/customers/C-0000000/bills"), 404, "customer_not_found")
    assert_error(api.get("v1/nothing-here"), 404, "not_found")
    assert_error(api.session.delete(api.server.url + "v1/payments/batch", timeout=5), 405, "method_not_allowed")


def test_customer_bills_lists_the_open_bills_of_all_their_contracts(api: Api, seeded_references):
    bill = api.get(f"v1/bills/{seeded_references[0]}").json()
    items = api.get(f"v1/customers/{bill['customer_id']}/bills").json()["items"]
    assert len(items) == 3
    assert seeded_references[0] in [b["reference"] for b in items]
    assert {b["customer_id"] for b in items} == {bill["customer_id"]}
    assert len({b["contract"] for b in items}) == 3
    # Paying one off removes it from the list.
    api.batch([make_payment(items[1]["reference"], items[1]["amount_due"])])
    again = api.get(f"v1/customers/{bill['customer_id']}/bills").json()["items"]
    assert [b["reference"] for b in again] == [items[0]["reference"], items[2]["reference"]]


def test_customer_bills_skip_paid_and_cancelled(api: Api, billing_server):
    for ref in billing_server.references(status=None):
        b = billing_server.bill(ref)
        items = api.get(f"v1/customers/{b['customer_id']}/bills").json()["items"]
        assert all(i["status"] in ("unpaid", "partially_paid") for i in items)
        if b["status"] in ("paid", "cancelled"):
            assert ref not in [i["reference"] for i in items]
            return
    pytest.fail("the seed has no paid or cancelled bill")


def feed_all(api: Api, limit: int, cursor: str | None = None) -> tuple[list[dict], str, int]:
    """Page through the feed until caught up; returns (items, cursor, pages)."""
    items: list[dict] = []
    for pages in range(1, 1000):
        params = {"agency": "ORAN-07", "limit": limit}
        if cursor is not None:
            params["updated_after"] = cursor
        r = api.get("v1/bills", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"items", "next_cursor"}
        items += body["items"]
        cursor = body["next_cursor"]
        assert isinstance(cursor, str) and cursor
        if len(body["items"]) < limit:
            return items, cursor, pages
    raise AssertionError("feed never caught up")


def test_feed_full_download_pages_with_cursor_then_is_caught_up(api: Api, billing_server):
    items, cursor, pages = feed_all(api, limit=64)
    assert pages == 4  # 200 bills: 64 + 64 + 64 + 8
    refs = [b["reference"] for b in items]
    assert len(refs) == len(set(refs)) == 200
    assert set(refs) == set(billing_server.references(status=None))
    statuses = {b["status"] for b in items}
    assert {"paid", "unpaid"} <= statuses  # paid and cancelled ones are in the feed too
    # Caught up: nothing new after the cursor, and the cursor stays usable.
    r = api.get("v1/bills", params={"agency": "ORAN-07", "updated_after": cursor})
    assert r.json()["items"] == []
    assert r.json()["next_cursor"] == cursor


def test_feed_shows_paid_and_changed_bills_after_the_cursor(api: Api, billing_server, seeded_references):
    _, cursor, _ = feed_all(api, limit=5000)
    ref_a, ref_b, ref_c = seeded_references[:3]
    due_a = billing_server.bill(ref_a)["amount_due"]
    api.batch([make_payment(ref_a, due_a), make_payment(ref_b, 100)])
    billing_server.put_bill(reference=ref_c, status="cancelled")
    changed, cursor2, _ = feed_all(api, limit=2, cursor=cursor)
    by_ref = {b["reference"]: b for b in changed}
    assert set(by_ref) == {ref_a, ref_b, ref_c}
    assert by_ref[ref_a]["status"] == "paid" and by_ref[ref_a]["amount_due"] == 0
    assert by_ref[ref_a]["version"] == 2
    assert by_ref[ref_b]["status"] == "partially_paid"
    assert by_ref[ref_c]["status"] == "cancelled"
    assert feed_all(api, limit=10, cursor=cursor2)[0] == []


def test_feed_is_per_agency(tmp_path):
    terminals = {"ORAN-07-G1": ("tok-oran", "ORAN-07"), "TLEMCEN-01-G1": ("tok-tlemcen", "TLEMCEN-01")}
    with SandboxServer(tmp_path / "b.db", seed_bills=30, terminals=terminals) as srv:
        srv.put_bill(
            reference="555000111222", contract="01-001-00001", customer_name="X. Test", service="gas",
            period="2026-T3", issued_on="2026-10-05", due_on="2026-11-15", amount_due=1000, currency="DZD",
            status="unpaid", agency_id="TLEMCEN-01", customer_id="C-9999999",
        )  # fmt: skip
        oran, tlemcen = Api(srv), Api(srv)
        tlemcen.session.headers.update(srv.headers("TLEMCEN-01-G1"))
        items, cursor, _ = feed_all(oran, limit=5000)
        assert len(items) == 30 and "555000111222" not in [b["reference"] for b in items]
        other = tlemcen.get("v1/bills", params={"agency": "TLEMCEN-01"}).json()
        assert [b["reference"] for b in other["items"]] == ["555000111222"]
        # A cursor is only good for the agency that got it.
        r = tlemcen.get("v1/bills", params={"agency": "TLEMCEN-01", "updated_after": cursor})
        assert_error(r, 400, "invalid_cursor")


@pytest.mark.parametrize(
    "params, code, names",
    [
        ({"agency": "ORAN-07", "limit": "0"}, "invalid_limit", "limit"),
        ({"agency": "ORAN-07", "limit": "5001"}, "invalid_limit", "limit"),
        ({"agency": "ORAN-07", "limit": "ten"}, "invalid_limit", "limit"),
        ({"agency": "ORAN-07", "updated_after": "not-a-cursor"}, "invalid_cursor", "updated_after"),
        ({"agency": "ORAN-07", "updated_after": "c1.!!!"}, "invalid_cursor", "updated_after"),
        ({"limit": "10"}, "invalid_request", "agency"),
        ({"agency": "ORAN-07", "since": "x"}, "unknown_field", "since"),
    ],
)
def test_feed_rejects_bad_parameters_naming_them(api: Api, params, code, names):
    assert names in assert_error(api.get("v1/bills", params=params), 400, code)


def test_feed_limit_bounds_are_inclusive(api: Api):
    assert len(api.get("v1/bills", params={"agency": "ORAN-07", "limit": 1}).json()["items"]) == 1
    assert len(api.get("v1/bills", params={"agency": "ORAN-07", "limit": 5000}).json()["items"]) == 200
    assert len(api.get("v1/bills", params={"agency": "ORAN-07"}).json()["items"]) == 200  # default 1000
