"""Contract 1.1 per-terminal tokens and the sandbox's admin token: a terminal reads and writes only as itself."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandbox.billing.seed import first_reference
from sandbox.billing.server import SandboxServer
from tests.sandbox.conftest import Api, make_payment
from tests.sandbox.test_authorizations import auth_body, authorize
from tests.sandbox.test_bills import assert_error
from tests.sandbox.test_server import GUICHET

TERMINALS = {
    "ORAN-07-G1": ("tok-g1", "ORAN-07"),
    "ORAN-07-G2": ("tok-g2", "ORAN-07"),
    "TLEMCEN-01-G1": ("tok-tl", "TLEMCEN-01"),
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SandboxServer]:
    with SandboxServer(tmp_path / "b.db", seed_bills=30, terminals=TERMINALS, admin_token="adm") as srv:
        yield srv


def as_terminal(srv: SandboxServer, terminal_id: str) -> Api:
    api = Api(srv)
    api.session.headers.update(srv.headers(terminal_id))
    return api


def test_a_token_speaks_only_for_its_own_terminal(server: SandboxServer):
    ref = server.references()[0]
    url = server.url + f"v1/bills/{ref}"
    assert requests.get(url, headers=server.headers("ORAN-07-G1"), timeout=5).status_code == 200
    spoof = {"Authorization": "Bearer tok-g1", "X-Terminal-Id": "ORAN-07-G2"}
    assert "ORAN-07-G2" in assert_error(requests.get(url, headers=spoof, timeout=5), 403, "forbidden")
    # The legacy shared token is gone once terminals have their own.
    legacy = {"Authorization": "Bearer test-token", "X-Terminal-Id": "ORAN-07-G1"}
    assert_error(requests.get(url, headers=legacy, timeout=5), 401, "unauthorized")
    g1 = as_terminal(server, "ORAN-07-G1")
    assert_error(g1.post("v1/terminals/ORAN-07-G2/heartbeat", json={}), 403, "forbidden")
    assert_error(g1.get("v1/terminals/ORAN-07-G2/payments", params={"business_day": "2026-11-22"}), 403, "forbidden")
    assert g1.post("v1/terminals/ORAN-07-G1/heartbeat", json={}).status_code == 200


def test_a_terminal_cannot_post_another_terminals_payment(server: SandboxServer):
    g1 = as_terminal(server, "ORAN-07-G1")
    ref = server.references()[0]
    mine, theirs = make_payment(ref, 100), make_payment(ref, 100, terminal_id="ORAN-07-G2")
    r = g1.post("v1/payments/batch", json={"payments": [mine, theirs]})
    assert "payments[1].terminal_id" in assert_error(r, 403, "forbidden")
    assert server.recorded_payments() == []  # the whole request is refused
    assert g1.batch([mine])[0]["status"] == "accepted"


def test_a_terminal_reads_only_its_own_payments_and_authorizations(server: SandboxServer):
    g1, g2 = as_terminal(server, "ORAN-07-G1"), as_terminal(server, "ORAN-07-G2")
    p = make_payment(server.references()[0], 100)
    g1.batch([p])
    assert g1.get(f"v1/payments/{p['payment_id']}").status_code == 200
    assert_error(g2.get(f"v1/payments/{p['payment_id']}"), 404, "payment_not_found")
    body = auth_body()
    assert authorize(g1, body).json()["approved"] is True
    pid = body["payment_id"]
    assert_error(g2.get(f"v1/authorizations/{pid}"), 404, "authorization_not_found")
    assert_error(
        g2.post(f"v1/authorizations/{pid}/reversal", json={"reason": "cancelled"}), 404, "authorization_not_found"
    )
    assert_error(authorize(g2, body), 403, "forbidden")  # nor replay it to learn the answer
    assert g1.get(f"v1/authorizations/{pid}").status_code == 200
    day = {"business_day": p["captured_at"][:10]}
    assert g2.get("v1/terminals/ORAN-07-G2/payments", params=day).json()["items"] == []
    number = p["receipt_number"]
    assert_error(g2.post(f"v1/receipts/{number}/send", json={"channel": "sms", "to": "+213550123456"}), 404,
                 "receipt_not_found")  # fmt: skip


def test_a_terminal_reads_only_its_own_agencys_bills(server: SandboxServer):
    tl = as_terminal(server, "TLEMCEN-01-G1")
    ref = server.references()[0]  # an ORAN-07 bill
    assert_error(tl.get(f"v1/bills/{ref}"), 404, "bill_not_found")
    customer = server.bill(ref)["customer_id"]
    assert_error(tl.get(f"v1/customers/{customer}/bills"), 404, "customer_not_found")
    assert "ORAN-07" in assert_error(tl.get("v1/bills", params={"agency": "ORAN-07"}), 403, "forbidden")
    assert tl.get("v1/bills", params={"agency": "TLEMCEN-01"}).json()["items"] == []


def test_only_the_admin_token_opens_the_sandbox_endpoints(server: SandboxServer):
    g1 = {"Authorization": "Bearer tok-g1", "X-Terminal-Id": "ORAN-07-G1"}
    admin = {"Authorization": "Bearer adm"}
    for method, path, body in (("GET", "_sandbox/payments", None), ("PUT", "_sandbox/faults", {"error_rate": 1.0}),
                               ("POST", "_sandbox/bills", {"reference": "1", "status": "paid"})):  # fmt: skip
        r = requests.request(method, server.url + path, json=body, headers=g1, timeout=5)
        assert_error(r, 403, "forbidden")
    assert server.fault_status()["error_rate"] == 0.0  # a terminal cannot switch faults on for everyone
    assert requests.get(server.url + "_sandbox/payments", headers=admin, timeout=5).status_code == 200
    # The admin token is nobody's terminal.
    r = requests.get(server.url + "v1/bills/1", headers={**admin, "X-Terminal-Id": "ORAN-07-G1"}, timeout=5)
    assert_error(r, 403, "forbidden")


def test_tokens_must_be_distinct(tmp_path: Path):
    with pytest.raises(ValueError, match="own"):
        SandboxServer(tmp_path / "a.db", terminals={"A-1": ("same", "A"), "A-2": ("x", "A")}, admin_token="same")


def test_cli_terminal_and_admin_token_options(tmp_path: Path):
    proc = subprocess.Popen(
        [GUICHET, "sandbox", "serve", "--port", "0", "--db", str(tmp_path / "cli.db"), "--seed-bills", "5",
         "--terminal", "ORAN-07-G1:ORAN-07:t1", "--terminal", "ORAN-07-G2:ORAN-07:t2:with:colons",
         "--admin-token", "adm"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("listening on ")
        proc.stdout.readline()
        third = proc.stdout.readline()
        assert "no shared token" in third and "admin token adm" in third, third
        bill = url + "v1/bills/" + first_reference("ORAN-07")
        assert requests.get(bill, headers={"Authorization": "Bearer t1", "X-Terminal-Id": "ORAN-07-G1"},
                            timeout=10).status_code == 200  # fmt: skip
        r = requests.get(bill, headers={"Authorization": "Bearer t2:with:colons", "X-Terminal-Id": "ORAN-07-G1"},
                         timeout=10)  # fmt: skip
        assert r.status_code == 403
        r = requests.get(bill, headers={"Authorization": "Bearer sandbox-token", "X-Terminal-Id": "ORAN-07-G1"},
                         timeout=10)  # fmt: skip
        assert r.status_code == 401
        assert requests.get(url + "_sandbox/faults", headers={"Authorization": "Bearer adm"}, timeout=10).ok
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0
