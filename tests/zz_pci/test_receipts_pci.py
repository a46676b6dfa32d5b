"""PCI DSS for receipts: after a real card payment (the CLI, a virtual card in vpcd), its receipt goes through
every place a receipt is kept or drawn: the print queue (printq.db, the printer away), the virtual printer's
job (the text it drew and the rows the bitmap is drawn from, in fr and ar), the outbox (outbox.db) and the
e-mail the sandbox server builds. No test PAN in any of them; the state dir scan covers both stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.journal import Journal
from agent.outbox import Outbox
from agent.printing import PrintQueue
from drivers.pan import find_pans
from sandbox.billing.sender import message_for, transaction_payments
from sandbox.printer import VirtualPrinter
from tests.core.conftest import with_changes
from tests.zz_pci.test_no_pan_stored import ALL_PANS, card_payment_state, scan  # noqa: F401  (fixture)
from ui.receipt import print_payment, request_send
from ui.receipts import Receipt, rows


def _no_pan(text: str, where: str) -> None:
    assert not [p for p in ALL_PANS if p in text], f"a test PAN in {where}"
    assert find_pans(text) == [], f"a card number in {where}: {text!r}"


def test_no_pan_in_the_print_queue_the_printed_receipt_or_the_outbox(
    card_payment_state: Path, billing_config: Any, billing_server: Any, tmp_path: Path  # noqa: F811
) -> None:
    state = Path(billing_config.state.dir)
    journal = Journal.open(state, terminal_id=billing_config.terminal.id, agency_id=billing_config.terminal.agency_id)
    try:
        [card] = [p for p in journal.list() if p.method == "card_reader"]
        payments = journal.transaction(card.transaction_id)
    finally:
        journal.close()
    assert card.card and card.card.get("pan_masked")

    with VirtualPrinter(tmp_path / "paper", behaviour="paper_out") as vp:
        vp.listen("127.0.0.1", 0)
        cfg = with_changes(billing_config, printer={"url": vp.url, "timeout": 1.0, "languages": ["fr"],
                                                    "text": True},
                           receipts={"signing_key": "test-signing-key-0123456789abcdef"})
        assert print_payment(cfg, payments).state == "queued"
        queue = PrintQueue.open(state)
        [queued] = queue.waiting()
        _no_pan(str(queued.payload), "the print queue's payload")
        queue.close()
        vp.behaviour = "ok"
        assert print_payment(cfg, payments, duplicate=True).state == "printed"
        [job] = vp.wait_jobs(1)
        _no_pan("\n".join(job.job.text), "the printed receipt's text")
        assert card.card["pan_masked"] in "\n".join(job.job.text)
    receipt = Receipt.from_payments(payments)
    for lang in ("fr", "ar"):  # what the bitmap is drawn from
        _no_pan("\n".join(f"{r.left} {r.right}" for r in rows(receipt, lang)), f"the {lang} receipt's rows")

    request_send(cfg, card.receipt_number, "client@example.dz", language="fr")
    box = Outbox.open(state)
    _no_pan(repr(box.waiting()), "the outbox")
    box.close()
    recorded = transaction_payments(billing_server.store, card.receipt_number, card.terminal_id)
    assert recorded
    mail = message_for(card.receipt_number, "email", "client@example.dz", "fr", recorded)
    _no_pan(mail.text + mail.subject, "the e-mail")

    assert (state / "printq.db").exists() and (state / "outbox.db").exists()
    assert scan(state) == []
    assert scan(tmp_path / "paper") == []
