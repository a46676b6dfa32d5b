"""The receipt screen through Pilot, on the real journal, sandbox server and virtual printer (tcp://127.0.0.1):
it prints by itself after a cash payment, says when the printer makes the receipt wait (paper out), R reprints a
DUPLICATA, and the customer's e-mail or mobile is checked and journaled for sending."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.outbox import Outbox
from agent.printing import PrintQueue
from sandbox.printer import VirtualPrinter
from tests.core.conftest import with_changes
from tests.ui.conftest import login, screen_name, text_of, type_into, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def vprinter(tmp_path: Path) -> Iterator[VirtualPrinter]:
    with VirtualPrinter(tmp_path / "paper") as vp:
        vp.listen("127.0.0.1", 0)
        yield vp


def _cfg(ui_config: Any, url: str = "none", language: str = "en") -> Any:
    return with_changes(ui_config, printer={"url": url, "timeout": 1.0, "languages": ["fr"], "text": True},
                        receipts={"signing_key": "test-signing-key-0123456789abcdef"}, ui={"language": language})


async def _pay(pilot: Any, ref: str) -> None:
    app = pilot.app
    await login(pilot)
    await type_into(pilot, "#reference", ref)
    await wait_for(pilot, lambda: app.screen.basket, "the bill in the basket")
    await pilot.press("f5")
    await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")


async def test_prints_after_payment_and_reprints_a_duplicata(
    ui_app: Any, ui_config: Any, vprinter: VirtualPrinter, seeded_references: list[str]
) -> None:
    app = ui_app(_cfg(ui_config, vprinter.url), run_sync=False)
    async with app.run_test(size=(140, 50)) as pilot:
        await _pay(pilot, seeded_references[0])
        await wait_for(pilot, lambda: "Receipt printed" in text_of(pilot, "#print-status"), "printed")
        [p] = app.backend.journal.list()
        [first] = vprinter.wait_jobs(1)
        assert p.receipt_number in "\n".join(first.job.text) and "DUPLICATA" not in "\n".join(first.job.text)
        await pilot.press("r")
        await wait_for(pilot, lambda: len(vprinter.jobs) == 2, "the reprint")
        assert "DUPLICATA" in "\n".join(vprinter.jobs[1].job.text)
        await wait_for(pilot, lambda: "Receipt printed" in text_of(pilot, "#print-status"), "printed again")


async def test_paper_out_says_so_and_the_payment_stands(
    ui_app: Any, ui_config: Any, vprinter: VirtualPrinter, seeded_references: list[str]
) -> None:
    vprinter.behaviour = "paper_out"
    cfg = _cfg(ui_config, vprinter.url)
    app = ui_app(cfg, run_sync=False)
    async with app.run_test(size=(140, 50)) as pilot:
        await _pay(pilot, seeded_references[0])
        await wait_for(pilot, lambda: "Waiting for the printer: paper out" in text_of(pilot, "#print-status"),
                       "the printer's problem")
        [p] = app.backend.journal.list()
        assert p.state == "approved"
        queue = PrintQueue.open(cfg.state.dir)
        assert queue.numbers() == [p.receipt_number]
        # paper loaded: R reprints (DUPLICATA) and the queued copy goes
        vprinter.behaviour = "ok"
        await pilot.press("r")
        await wait_for(pilot, lambda: "Receipt printed" in text_of(pilot, "#print-status"), "printed")
        assert queue.numbers() == []
        assert "DUPLICATA" in "\n".join(vprinter.wait_jobs(1)[0].job.text)
        queue.close()


async def test_email_and_mobile_are_checked_then_journaled(
    ui_app: Any, ui_config: Any, seeded_references: list[str]
) -> None:
    cfg = _cfg(ui_config)
    app = ui_app(cfg, run_sync=False)
    async with app.run_test(size=(140, 50)) as pilot:
        await _pay(pilot, seeded_references[0])
        assert "No printer configured" in text_of(pilot, "#print-status")
        from textual.widgets import Button, Input

        assert not isinstance(app.focused, Button | Input)  # so Enter closes, as it always has
        [p] = app.backend.journal.list()
        await pilot.press("m")
        assert app.focused is app.screen.query_one("#address")
        await type_into(pilot, "#address", "0450 12 34 56")
        await wait_for(pilot, lambda: "Not sent: not a mobile number" in text_of(pilot, "#send-status"), "refusal")
        assert screen_name(pilot) == "ReceiptScreen"  # Enter in the field sends, it does not close
        await type_into(pilot, "#address", "client@example")
        await wait_for(pilot, lambda: "not an e-mail address" in text_of(pilot, "#send-status"), "refusal")
        await type_into(pilot, "#address", "0661 23 45 67")
        await wait_for(pilot, lambda: "will be sent" in text_of(pilot, "#send-status"), "journaled")
        assert "+213*******67" in text_of(pilot, "#send-status")
        assert app.screen.query_one("#address").value == ""
        box = Outbox.open(cfg.state.dir)
        [req] = box.requests(p.receipt_number)
        assert (req.channel, req.address, req.language, req.state) == ("sms", "+213661234567", "en", "waiting")
        box.close()
        app.screen.query_one("#print").focus()
        await pilot.press("enter")  # on a button: presses it (P: the text written to the state dir)
        await wait_for(pilot, lambda: list((Path(cfg.state.dir) / "receipts").glob("*.txt")), "the text written")
        assert screen_name(pilot) == "ReceiptScreen"
        app.screen.set_focus(None)
        await pilot.press("enter")  # elsewhere: Enter closes
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "back to payment")
        # opened again from the history: the request is there, as a hint
        from ui.screens.receipt import ReceiptScreen

        app.push_screen(ReceiptScreen(app.backend.journal.list(), reprint=True))
        await wait_for(pilot, lambda: "SMS to +213*******67: waiting" in text_of(pilot, "#send-status"),
                       "the earlier request")


async def test_arabic_screen(ui_app: Any, ui_config: Any, vprinter: VirtualPrinter,
                             seeded_references: list[str]) -> None:
    vprinter.behaviour = "cover_open"
    app = ui_app(_cfg(ui_config, vprinter.url, language="ar"), run_sync=False)
    async with app.run_test(size=(140, 50)) as pilot:
        await _pay(pilot, seeded_references[0])
        from ui.i18n import t

        cover = t("cover open")
        assert cover != "cover open"
        await wait_for(pilot, lambda: cover in app.screen.print_text, "the problem in Arabic")


async def test_from_the_screen_to_the_customers_mailbox_through_the_uis_scheduler(
    ui_app: Any, ui_config: Any, billing_server: Any, tmp_path: Path, seeded_references: list[str]
) -> None:
    """The jobs of guichet/cli/run.py (JOBS) in the UI's one scheduler: the payment is uploaded, the
    request sent, and the sandbox server e-mails the receipt to the SMTP sink."""
    from guichet.cli.run import JOBS
    from sandbox.billing.sender import ReceiptSender
    from sandbox.smtp_sink import SmtpSink, body_text

    with SmtpSink(tmp_path / "mail") as sink:
        billing_server.app.state.receipt_sender = ReceiptSender(smtp=sink.address)
        cfg = _cfg(ui_config)
        app = ui_app(cfg, jobs=JOBS)
        async with app.run_test(size=(140, 50)) as pilot:
            await _pay(pilot, seeded_references[0])
            [p] = app.backend.journal.list()
            await pilot.press("m")
            await type_into(pilot, "#address", "client@example.dz")
            await wait_for(pilot, lambda: "will be sent" in text_of(pilot, "#send-status"), "journaled")
            await wait_for(pilot, lambda: sink.messages, "the e-mail in the sink", rounds=600)
        [mail] = sink.messages
        assert mail["To"] == "client@example.dz" and p.receipt_number in body_text(mail)
        box = Outbox.open(cfg.state.dir)
        assert [(r.state, r.address) for r in box.requests(p.receipt_number)] == [("sent", None)]
        box.close()


async def test_r_pressed_while_the_paper_is_out_queues_one_copy(
    ui_app: Any, ui_config: Any, vprinter: VirtualPrinter, seeded_references: list[str]
) -> None:
    """Review 8, finding 6: every R while the paper is out replaces the waiting copy, one DUPLICATA in all."""
    vprinter.behaviour = "paper_out"
    cfg = _cfg(ui_config, vprinter.url)
    app = ui_app(cfg, run_sync=False)
    async with app.run_test(size=(140, 50)) as pilot:
        await _pay(pilot, seeded_references[0])
        await wait_for(pilot, lambda: "paper out" in text_of(pilot, "#print-status"), "the printer's problem")
        for _ in range(3):
            app.screen.query_one("#print-status").update("")
            await pilot.press("r")
            await wait_for(pilot, lambda: "paper out" in text_of(pilot, "#print-status"), "queued again")
        queue = PrintQueue.open(cfg.state.dir)
        [p] = app.backend.journal.list()
        assert queue.numbers() == [p.receipt_number]
        [row] = queue.waiting()
        assert row.duplicate
        queue.close()


async def test_a_short_number_of_the_other_country_says_which_prefix(
    ui_app: Any, ui_config: Any, seeded_references: list[str]
) -> None:
    """Review 8, finding 10: at an Algerian counter 8 digits are not guessed Tunisian; with +216 they are sent."""
    cfg = _cfg(ui_config, language="fr")
    app = ui_app(cfg, run_sync=False)
    async with app.run_test(size=(140, 50)) as pilot:
        await _pay(pilot, seeded_references[0])
        await pilot.press("m")
        await type_into(pilot, "#address", "55 123 456")
        await wait_for(pilot, lambda: "numéro tunisien demande +216" in text_of(pilot, "#send-status"), "the rule")
        app.screen.query_one("#address").value = "+216 55 123 456"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "+216******56" in text_of(pilot, "#send-status"), "journaled")
        [p] = app.backend.journal.list()
        box = Outbox.open(cfg.state.dir)
        assert [r.address for r in box.requests(p.receipt_number)] == ["+21655123456"]
        box.close()
