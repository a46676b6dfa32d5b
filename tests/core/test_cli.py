"""`guichet pay`, `queue` and `sync` as technicians and scripts use them: JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
import re

from agent.locks import UploadLock
from tests.core.conftest import recorded_ids

PAY_FIELDS = {"payment_id", "state", "bill_reference", "amount", "currency", "method", "receipt_number",
              "captured_offline"}


def test_pay_json_and_queue(guichet, billing_server, seeded_references) -> None:
    r = guichet("pay", seeded_references[0], "--method", "cash", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == PAY_FIELDS
    assert out["state"] == "uploaded" and out["receipt_number"] == "ORAN-07-G1-000001"
    assert isinstance(out["amount"], int) and out["currency"] == "DZD" and out["captured_offline"] is False
    assert recorded_ids(billing_server) == [out["payment_id"]]
    shown = json.loads(guichet("queue", "show", out["receipt_number"], "--json").stdout)
    assert [h["to_state"] for h in shown["history"]] == ["created", "authorizing", "approved", "uploaded"]
    status = json.loads(guichet("queue", "status", "--json").stdout)
    assert status["unsent"] == 0 and status["needs_attention"] == 0


def test_pay_a_partial_amount_given_as_decimal(guichet, billing_server, seeded_references, billing_config,
                                               tmp_path) -> None:
    from config import write_config
    from tests.core.conftest import with_changes

    cfg = write_config(with_changes(billing_config, payments={"allow_partial": True}), tmp_path / "p.toml")
    r = guichet("pay", seeded_references[0], "--method", "cash", "--amount", "12.50", "--json", cfg=cfg)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["amount"] == 1250
    bad = guichet("pay", seeded_references[0], "--method", "cash", "--amount", "12.505", cfg=cfg)
    assert bad.returncode == 2 and "more than 2 decimals" in bad.stderr


def test_errors_are_one_line_with_the_right_exit_status(guichet, billing_server, seeded_references) -> None:
    r = guichet("pay", "999999999999", "--method", "cash")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "999999999999: not found" in r.stderr
    r = guichet("pay", seeded_references[0], seeded_references[1], "--amount", "10")
    assert r.returncode == 2 and "--amount" in r.stderr
    r = guichet("queue", "show", "nope")
    assert r.returncode == 1 and "nope: not in the journal" in r.stderr
    r = guichet("pay", seeded_references[0], "--method", "bitcoin")
    assert r.returncode == 2


def test_offline_pay_then_sync(guichet, billing_server, seeded_references) -> None:
    assert guichet("sync", "--once").returncode == 0  # fills the bill cache
    billing_server.stop()
    r = guichet("pay", seeded_references[3], "--method", "cash", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["state"] == "approved" and out["captured_offline"] is True
    listed = json.loads(guichet("queue", "list", "--json").stdout)
    assert [p["payment_id"] for p in listed] == [out["payment_id"]]
    failed = guichet("sync", "--once")
    assert failed.returncode == 1 and "1 left" in failed.stderr
    billing_server.start()
    assert guichet("sync", "--once").returncode == 0
    assert recorded_ids(billing_server) == [out["payment_id"]]


def test_only_one_uploader_at_a_time(guichet, billing_config) -> None:
    with UploadLock(billing_config.state.dir):
        r = guichet("sync", "--once")
    assert r.returncode == 1 and "another uploader" in r.stderr
    assert guichet("sync", "--once").returncode == 0


def test_bill_cache_on_demand_drops_paid_bills_and_tells_its_age(guichet, billing_server, seeded_references):
    r = guichet("sync", "--bills")
    assert r.returncode == 0, r.stderr
    cached = int(r.stdout.split(", ")[1].split()[0])
    assert cached >= len(seeded_references)  # unpaid and partially paid bills
    billing_server.put_bill(reference=seeded_references[0], amount_due=0, status="paid")
    r = guichet("sync", "--bills")
    assert r.stdout.strip() == f"bill cache: 1 bills changed, {cached - 1} payable bills cached"
    status = json.loads(guichet("queue", "status", "--json").stdout)
    assert status["bill_cache"]["bills"] == cached - 1
    assert 0 <= status["bill_cache"]["age_seconds"] < 600
    billing_server.stop()
    r = guichet("sync", "--bills")
    assert r.returncode == 1 and re.search(r"last refreshed \d+ (s|min) ago", r.stderr)


def test_queue_show_tells_what_the_billing_server_recorded(guichet, billing_server, seeded_references) -> None:
    """The customer says "your system shows my bill unpaid": the counter asks the server what it holds."""
    out = json.loads(guichet("pay", seeded_references[0], "--method", "cash", "--json").stdout)
    shown = json.loads(guichet("queue", "show", out["receipt_number"], "--json").stdout)
    assert shown["server"]["status"] == "recorded" and shown["server"]["differences"] == []
    assert shown["server"]["record"]["amount"] == out["amount"]
    text = guichet("queue", "show", out["receipt_number"]).stdout
    assert "billing server: recorded" in text
    billing_server.stop()
    down = json.loads(guichet("queue", "show", out["receipt_number"], "--json").stdout)
    assert down["server"]["status"] == "unreachable"
    assert json.loads(guichet("queue", "show", out["receipt_number"], "--json", "--no-server").stdout)["server"] is None


def test_pay_refuses_a_cashier_id_that_is_not_one(guichet, billing_server, seeded_references) -> None:
    """--cashier goes into the journal and on every screen: the accounts' id rule, one usage line, nothing paid."""
    for bad in ("[/]", "[@click=app.quit]x", "\x1b[31m", "two\nlines", "", "x" * 33):
        r = guichet("pay", seeded_references[0], "--method", "cash", "--cashier", bad)
        assert r.returncode == 2, (bad, r.stderr)
        assert r.stderr.strip().count("\n") == 0 and "--cashier" in r.stderr and "\x1b" not in r.stderr, r.stderr
    assert json.loads(guichet("queue", "list", "--json").stdout) == []
    assert recorded_ids(billing_server) == []
    ok = guichet("pay", seeded_references[0], "--method", "cash", "--cashier", "c0042.b-1", "--json")
    assert ok.returncode == 0, ok.stderr
