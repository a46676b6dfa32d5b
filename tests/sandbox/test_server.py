"""The runners (SandboxServer, `guichet sandbox serve`), seeding, and the /_sandbox/ admin endpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from sandbox.billing.cli import serve
from sandbox.billing.seed import first_reference, generate_bills, seeded_references
from sandbox.billing.server import SandboxServer
from tests.sandbox.conftest import Api, make_payment
from tests.sandbox.test_bills import assert_error

GUICHET = str(Path(sys.executable).with_name("guichet"))


def test_seed_is_deterministic_and_prefix_stable():
    a = generate_bills(300, "ORAN-07")
    assert a == generate_bills(300, "ORAN-07")
    assert generate_bills(40, "ORAN-07") == a[:40]
    assert generate_bills(300, "ORAN-07", seed=2) != a
    assert generate_bills(300, "TLEMCEN-01")[0]["reference"] != a[0]["reference"]
    # The documented known reference for tests and the demo: do not change the generator lightly.
    assert first_reference("ORAN-07") == a[0]["reference"] == "698103085770"
    refs = [b["reference"] for b in a]
    assert len(set(refs)) == 300 and all(len(r) == 12 and r.isdigit() for r in refs)
    assert seeded_references(300, "ORAN-07", status="unpaid") == [b["reference"] for b in a if b["status"] == "unpaid"]


def test_seed_shapes_customers_services_and_amounts():
    bills = generate_bills(1000, "ORAN-07", currency="TND")
    per_customer: dict[str, set[str]] = {}
    for b in bills:
        per_customer.setdefault(b["customer_id"], set()).add(b["contract"])
    sizes = [len(v) for v in per_customer.values()]
    assert min(sizes) >= 1 and max(sizes) <= 10 and max(sizes) > 3
    assert {b["service"] for b in bills} == {"water", "electricity", "gas", "sanitation"}
    assert {b["currency"] for b in bills} == {"TND"}
    assert {b["status"] for b in bills} == {"unpaid", "partially_paid", "paid", "cancelled"}
    assert all(b["amount_due"] % 100 == 0 for b in bills)  # never ends in 51: full payments authorise
    assert all(b["amount_due"] > 0 for b in bills if b["status"] in ("unpaid", "partially_paid"))
    assert all(b["amount_due"] == 0 for b in bills if b["status"] == "paid")


def test_stop_refuses_connections_and_start_comes_back_on_same_port_with_same_data(tmp_path):
    with SandboxServer(tmp_path / "b.db", seed_bills=20) as srv:
        api = Api(srv)
        ref = srv.references()[0]
        p = make_payment(ref, 1000)
        api.batch([p])
        url = srv.url
        srv.stop()
        assert not srv.running
        with pytest.raises(requests.ConnectionError):
            api.get(f"v1/bills/{ref}")
        srv.start()
        assert srv.url == url
        assert api.batch([p])[0]["status"] == "duplicate"
        assert [x["payment_id"] for x in srv.recorded_payments()] == [p["payment_id"]]
    # A new server on the same DB file sees everything (and re-seeding adds nothing).
    with SandboxServer(tmp_path / "b.db", seed_bills=20) as again:
        assert len(again.references(status=None)) == 20
        seeded_due = generate_bills(20, "ORAN-07")[0]["amount_due"]
        assert again.bill(ref)["amount_due"] == seeded_due - 1000
        assert Api(again).get(f"v1/payments/{p['payment_id']}").status_code == 200


def test_given_port_is_used(tmp_path):
    with SandboxServer(tmp_path / "a.db") as first:
        port = first.port
    with SandboxServer(tmp_path / "a.db", port=port) as second:
        assert second.url == f"http://127.0.0.1:{port}/"
        assert requests.get(second.url + "v1/bills/1", headers=second.headers(), timeout=5).status_code == 404


def test_admin_bills_endpoint_adds_and_changes_bills(api: Api, billing_server, seeded_references):
    new = {
        "reference": "123456789012", "contract": "07-001-00001", "customer_name": "Z. Test", "service": "water",
        "period": "2026-T4", "issued_on": "2027-01-05", "due_on": "2027-02-15", "amount_due": 120000,
        "currency": "DZD", "status": "unpaid", "agency_id": "ORAN-07", "customer_id": "C-1234567",
    }  # fmt: skip
    r = api.post("_sandbox/bills", json=new)
    assert r.status_code == 200 and r.json()["version"] == 1
    assert api.get("v1/bills/123456789012").json()["amount_due"] == 120000
    r = api.post("_sandbox/bills", json={"reference": "123456789012", "amount_due": 5000})
    assert r.json()["version"] == 2 and r.json()["amount_due"] == 5000
    assert "colour" in assert_error(
        api.post("_sandbox/bills", json={"reference": "1", "colour": "red"}), 400, "unknown_field"
    )
    assert "contract" in assert_error(api.post("_sandbox/bills", json={"reference": "999"}), 400, "invalid_request")
    assert "service" in assert_error(
        api.post("_sandbox/bills", json={"reference": "123456789012", "service": "phone"}), 400, "invalid_request"
    )
    listed = api.get("_sandbox/bills", params={"status": "unpaid", "limit": 3}).json()["items"]
    assert [b["reference"] for b in listed] == seeded_references[:3]


def test_sandbox_payments_lists_counts(api: Api, seeded_references):
    p = make_payment(seeded_references[0], 100)
    api.batch([p, p])
    api.batch([{**p, "amount": 5}])
    body = api.get("_sandbox/payments").json()
    assert body["total"] == 1
    [item] = body["items"]
    assert (item["payment_id"], item["count"], item["duplicates"], item["conflicts"]) == (p["payment_id"], 3, 1, 1)
    assert item["payment"] == p


def test_cli_serve_prints_url_first_and_serves(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [GUICHET, "sandbox", "serve", "--port", "0", "--db", str(tmp_path / "cli.db"), "--token", "cli-token",
         "--seed-bills", "30", "--agency", "ORAN-07", "--currency", "DZD", "--unavailable-rate", "1",
         "--retry-after", "9", "--admin-token", "cli-admin", "--no-strict-atc", "--no-require-chip-data",
         "--bad-script-mac"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("listening on http://127.0.0.1:") and first.endswith("/"), first
        url = first.removeprefix("listening on ")
        assert first_reference("ORAN-07") in proc.stdout.readline()
        headers = {"Authorization": "Bearer cli-token", "X-Terminal-Id": "T1"}
        r = requests.get(url + "v1/bills/" + first_reference("ORAN-07"), headers=headers, timeout=10)
        assert r.status_code == 503 and r.headers["Retry-After"] == "9"
        assert requests.put(url + "_sandbox/faults", json={}, headers=headers, timeout=10).status_code == 403
        admin = {"Authorization": "Bearer cli-admin"}
        assert requests.put(url + "_sandbox/faults", json={}, headers=admin, timeout=10).status_code == 200
        issuer = requests.get(url + "_sandbox/issuer", headers=admin, timeout=10).json()
        assert (issuer["strict_atc"], issuer["require_chip_data"], issuer["bad_script_mac"]) == (False, False, True)
        r = requests.get(url + "v1/bills/" + first_reference("ORAN-07"), headers=headers, timeout=10)
        assert r.status_code == 200 and r.json()["reference"] == first_reference("ORAN-07")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--error-rate", "1.5"], "--error-rate"),
        (["--error-rate", "0.6", "--garbage-rate", "0.6"], "sum"),
        (["--token", ""], "--token"),
        (["--terminal", "ORAN-07-G1:tok"], "--terminal"),
        (["--garbage-kind", "bogus"], "--garbage-kind"),
        (["--garbage-record", "sometimes"], "--garbage-record"),
        (["--terminal", "ORAN-07-G1:ORAN-07:same", "--admin-token", "same"], "tokens"),
    ],
)
def test_cli_serve_rejects_bad_options_with_one_line(tmp_path, args, message):
    result = CliRunner().invoke(serve, ["--port", "0", "--db", str(tmp_path / "x.db"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "listening" not in result.output


def test_cli_serve_port_in_use_fails_clearly(tmp_path, billing_server):
    result = CliRunner().invoke(serve, ["--port", str(billing_server.port), "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{billing_server.port}" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_root_fixtures_point_the_config_at_the_server(billing_config, billing_server, seeded_references, tmp_path):
    assert billing_config.server.url == billing_server.url
    assert billing_config.terminal.id == "ORAN-07-G1" and billing_config.terminal.agency_id == "ORAN-07"
    assert Path(billing_config.state.dir).parent == tmp_path
    headers = {
        "Authorization": f"Bearer {billing_config.server.token.get_secret_value()}",
        "X-Terminal-Id": billing_config.terminal.id,
    }
    r = requests.get(f"{billing_config.server.url}v1/bills/{seeded_references[0]}", headers=headers, timeout=5)
    assert r.status_code == 200
    assert seeded_references[0] == first_reference("ORAN-07")
    customer, refs = billing_server.customer_with_bills(3)
    assert refs == seeded_references[:3]
