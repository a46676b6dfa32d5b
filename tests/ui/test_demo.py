"""`guichet demo`: scripted headless sessions through the real CLI, and a tmux run read off the screen."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.billing.seed import first_reference

GUICHET = [str(Path(sys.executable).with_name("guichet"))]


def demo(tmp_path: Path, script: str, *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "session.txt"
    path.write_text(script, encoding="utf-8")
    return subprocess.run(
        [*GUICHET, "demo", "--headless", "--script", str(path), "--no-reader", *extra],
        capture_output=True, text=True, timeout=120,
    )


def test_scripted_terminal_payment(tmp_path: Path) -> None:
    r = demo(tmp_path, "card insert cib\ntype {bill0}\npress enter f5\nwait ReceiptScreen\n"
                       "expect approved\nexpect-text 603620\n")
    assert r.returncode == 0, r.stderr + r.stdout
    out = json.loads(r.stdout)
    assert out["ok"] and out["payment"]["method"] == "card_terminal"
    assert "603620******" in out["receipt"] and out["payment"]["receipt_number"] in out["receipt"]
    assert "6036200" not in out["receipt"].replace("603620******", "")  # never more than the masked PAN


def test_scripted_decline_and_a_failed_expectation_exits_1(tmp_path: Path) -> None:
    r = demo(tmp_path, "tpe refuse\ntype {bill0}\npress enter f5\nexpect approved\n")
    assert r.returncode == 1, r.stderr + r.stdout
    out = json.loads(r.stdout)
    assert out["outcome"] == "declined"  # the terminal refused: the script's expectation fails, naming its line
    assert not out["ok"] and "line 4" in out["failures"][0] and "declined" in out["failures"][0]


def test_a_bad_script_line_is_a_usage_error(tmp_path: Path) -> None:
    r = demo(tmp_path, "type 123\nfly away\n")
    assert r.returncode == 2 and "line 2" in r.stderr and "fly" in r.stderr


class TmuxDemo:
    """`guichet demo` in a detached 150x45 tmux window, read as the cashier sees it; killed at the end."""

    def __init__(self, sock: str, state_dir: Path) -> None:
        self.tmux = ["tmux", "-L", sock]
        env = {**os.environ, "TERM": "xterm-256color", "LANG": "C.UTF-8"}
        cmd = " ".join([*GUICHET, "demo", "--no-reader", "--state-dir", str(state_dir)])
        subprocess.run([*self.tmux, "new-session", "-d", "-x", "150", "-y", "45", "-s", "demo", cmd], check=True,
                       env=env)

    def __enter__(self) -> TmuxDemo:
        return self

    def __exit__(self, *_exc: object) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "demo", *keys], check=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", "demo"], capture_output=True,
                              text=True).stdout

    def wait_text(self, text: str) -> str:
        for _ in range(300):  # bounded: ~30 s
            s = self.screen()
            if text in s:
                return s
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}")

    def has_session(self) -> bool:
        return subprocess.run([*self.tmux, "has-session", "-t", "demo"], capture_output=True).returncode == 0


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux is not installed")
def test_tmux_demo_pay_and_read_the_receipt(tmp_path: Path) -> None:
    ref = first_reference("ORAN-07")
    with TmuxDemo(f"guichet-test-{os.getpid()}", tmp_path / "demo") as demo:
        demo.wait_text("Référence de la facture")
        demo.keys("C-b")  # insert the demo CIB card
        demo.keys(ref, "Enter")
        demo.wait_text(f"Facture {ref} ajoutée")
        demo.keys("F5")
        demo.wait_text("REÇU DE PAIEMENT")
        receipt = demo.wait_text("Code d'autorisation")
        assert ref in receipt and "603620******" in receipt
        assert "ORAN-07-G1-000001" in receipt
        demo.keys("Enter", "C-q")
        for _ in range(100):
            if not demo.has_session():
                break
            time.sleep(0.1)


def _need_vpcd() -> None:
    """Skip without pcscd's vpcd reader, but fail in CI, where `./dev` starts it."""
    from sandbox.cards.vpcd import vpcd_listening

    if not vpcd_listening():
        if os.environ.get("CI"):
            pytest.fail("pcscd/vpcd is not listening on 127.0.0.1:35963 (required in CI)")
        pytest.skip("pcscd with the vpcd virtual reader is not running")


@pytest.mark.pcsc
def test_scripted_reader_payment_with_a_virtual_card(tmp_path: Path) -> None:
    _need_vpcd()
    path = tmp_path / "session.txt"
    # `expect uploaded`: the next run's {bill1} is the second bill the server lists unpaid, so this payment must
    # have reached it. A run that ended on "approved" left it queued: the next run got the same {bill1}, uploaded
    # the payment at start, and found its bill already paid (1 run in 2 on a loaded machine).
    path.write_text("card insert edahabia\nmethod card_reader\ntype {bill1}\npress enter f5\n"
                    "wait ReceiptScreen\nexpect approved\ncard remove\nexpect uploaded\n", encoding="utf-8")
    # The demo takes the vpcd slot's lock itself (the card tests take turns with it), so not here.
    # Twice on one state dir: the billing server's database and the card's counters (card-counters.json) both
    # survive the restart, so the card's next ARQC has a higher ATC and the strict sandbox issuer approves it.
    state = tmp_path / "state"
    for _run in range(2):
        r = subprocess.run([*GUICHET, "demo", "--headless", "--script", str(path), "--state-dir", str(state)],
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr + r.stdout
        out = json.loads(r.stdout)
        assert out["payment"]["method"] == "card_reader"
        assert "EDAHABIA 999201******" in out["receipt"]
    kept = json.loads((state / "card-counters.json").read_text())
    assert [c["pan_masked"] for c in kept["cards"].values()] == ["999201******7800"]


def test_a_damaged_card_counters_file_stops_the_demo_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "card-counters.json").write_text("{")
    r = demo(tmp_path, "sleep 0\n", "--state-dir", str(tmp_path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"guichet: {tmp_path / 'card-counters.json'}: not JSON at line 1 column 2 (delete it to start the demo "
        "cards afresh)"]


# -- a newcomer's first payment: the demo panel offers bills to scan -------------------------------------


async def _newcomer_session(tmp_path: Path, check, size: tuple[int, int] = (140, 44),
                            language: str = "fr") -> None:
    from guichet.cli.demo import DEMO_CASHIER, DemoDevices, _ensure_cashiers, demo_app, shown
    from ui.backend import Backend

    devices = DemoDevices(tmp_path, reader=False, language=language)
    backend = None
    try:
        cfg = devices.config()
        Path(cfg.state.dir).mkdir(parents=True, exist_ok=True)
        backend = Backend.open(cfg, cashiers=_ensure_cashiers(Path(cfg.state.dir)))
        app = demo_app()(backend, demo=devices, auto_login=DEMO_CASHIER)
        async with app.run_test(headless=True, size=size) as pilot:
            for _ in range(400):
                if shown(app) == "PaymentScreen":
                    break
                await pilot.pause(0.05)
            await check(app, pilot, devices)
    finally:
        if backend is not None:
            backend.close()
        devices.close()


async def _until(pilot, cond, what: str) -> None:
    for _ in range(600):  # bounded: ~30 s
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_newcomer_pays_with_keys_alone_from_the_demo_panel(tmp_path: Path) -> None:
    """F11 types a real unpaid bill as a scanner would; F9 adds the customer's others; F5 pays on the TPE."""
    import asyncio

    from textual.widgets import Input, Static

    async def check(app, pilot, devices) -> None:
        from ui.widgets.demo_panel import DemoPanel

        panel = app.screen.query_one(DemoPanel)
        bills = panel.bills
        assert len(bills) >= 3
        unpaid = set(devices.references())
        assert {b.reference for b in bills} <= unpaid  # every offered bill can be paid
        # One customer with several bills comes first.
        assert bills[0].customer == bills[1].customer
        # The reference field's example is one of them, not a bill the demo does not have.
        assert app.screen.query_one("#reference", Input).placeholder == bills[0].reference
        hint = str(app.screen.query_one("#demo-next", Static).render())
        assert "F11" in hint and "F5" in hint
        await pilot.press("f11")
        await _until(pilot, lambda: len(app.screen.basket) == 1, "the scanned bill in the basket")
        assert app.screen.basket[0].reference == bills[0].reference
        await pilot.press("f9")  # the customer's other bills
        assert len(app.screen.basket) >= 2
        await pilot.press("f5")
        await _until(pilot, lambda: type(app.screen).__name__ == "ReceiptScreen", "the receipt")
        receipt = app.screen.text()
        assert bills[0].reference in receipt and bills[1].reference in receipt
        states = {p.bill_reference: p.state for p in app.backend.journal.list(limit=10)}
        assert states[bills[0].reference] in ("approved", "uploaded")  # the money was taken

    asyncio.run(_newcomer_session(tmp_path, check))


def test_clicking_a_demo_bill_types_it_like_a_scanner(tmp_path: Path) -> None:
    import asyncio

    async def check(app, pilot, devices) -> None:
        from ui.widgets.demo_panel import DemoPanel

        bills = app.screen.query_one(DemoPanel).bills
        await pilot.click("#demo-bill-3")  # another customer's bill
        await _until(pilot, lambda: len(app.screen.basket) == 1, "the clicked bill in the basket")
        assert app.screen.basket[0].reference == bills[3].reference
        await pilot.press("f11")  # the next one after the clicked bill wraps to the first
        await _until(pilot, lambda: len(app.screen.basket) == 2, "the next bill")
        assert app.screen.basket[1].reference == bills[0].reference

    asyncio.run(_newcomer_session(tmp_path, check))


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux is not installed")
def test_tmux_a_newcomer_pays_by_keys_alone(tmp_path: Path) -> None:
    """From a fresh start, without reading anything: the panel says F11, F9, F5; the receipt shows."""
    with TmuxDemo(f"guichet-newcomer-{os.getpid()}", tmp_path / "demo") as demo:
        first = demo.wait_text("Essayez : F11 scanne")  # the one line that says what to try
        ref = next(word for line in first.splitlines() for word in line.split() if len(word) == 12
                   and word.isdigit())  # the first bill the panel offers (also the field's example)
        demo.keys("F11")
        demo.wait_text(f"Facture {ref} ajoutée")
        demo.keys("F9")
        demo.keys("F5")
        receipt = demo.wait_text("Code d'autorisation")
        assert "REÇU DE PAIEMENT" in receipt and ref in receipt
        demo.keys("Enter", "C-q")


KIOSK_SIZE = (116, 30)  # foot's cells in the kiosk (DejaVu Sans Mono 14 on 1280 x 720)


@pytest.mark.parametrize("language", ["fr", "ar"])
def test_at_the_kiosks_size_nothing_is_cut(tmp_path: Path, language: str) -> None:
    """At 116 x 30 with the demo panel (review 6, finding 5): the basket's five columns fit (the 12-digit
    reference and the amount whole), every method's label fits, every key of the legend keeps its label,
    and the panel scrolls to its last bill, the cards and the keys hint."""
    import asyncio

    from textual.widgets import Button, DataTable, RadioButton, Static

    async def check(app, pilot, devices) -> None:
        from ui.widgets.demo_panel import DemoPanel

        await pilot.press("f11")
        await _until(pilot, lambda: len(app.screen.basket) == 1, "the scanned bill")
        await pilot.press("f9")
        await _until(pilot, lambda: len(app.screen.basket) >= 3, "the customer's other bills")
        await pilot.pause(0.3)
        table = app.screen.query_one("#basket", DataTable)
        assert table.virtual_size.width <= table.scrollable_content_region.width, "the basket is cut"
        for button in app.screen.query(RadioButton):
            assert button.size.width >= button.get_content_width(button.size, button.size), str(button.label)
        keys = app.screen.query_one(".keys", Static)
        legend = str(keys.render())
        assert keys.size.height * keys.scrollable_content_region.width >= len(legend), "the legend is cut"
        panel = app.screen.query_one(DemoPanel)
        last = [*panel.query(Button)][-1]
        panel.scroll_to_widget(last, animate=False)
        await pilot.pause(0.2)
        assert panel.scrollable_content_region.contains_region(last.region) or \
            last.region.intersection(panel.region) == last.region, "the panel's last button is out of reach"

    asyncio.run(_newcomer_session(tmp_path, check, size=KIOSK_SIZE, language=language))


def test_a_scanner_left_in_us_mode_on_an_azerty_counter_still_finds_the_bill(tmp_path: Path) -> None:
    """The scanner types the AZERTY digit row (& é " ' ( - è _ ç à): the field reads digits (review 6,
    finding 11), so the bill is found as if the scanner were set right."""
    import asyncio

    from textual.widgets import Input

    from ui.widgets.scan_input import AZERTY_DIGIT_ROW

    async def check(app, pilot, devices) -> None:
        from ui.widgets.demo_panel import DemoPanel

        ref = app.screen.query_one(DemoPanel).bills[0].reference
        typed = ref.translate(str.maketrans("1234567890", AZERTY_DIGIT_ROW))
        assert not any(ch.isdigit() for ch in typed)
        field = app.screen.query_one("#reference", Input)
        field.focus()
        await pilot.press(*list(typed))
        assert field.value == ref
        await pilot.press("enter")
        await _until(pilot, lambda: [b.reference for b in app.screen.basket] == [ref], "the scanned bill")

    asyncio.run(_newcomer_session(tmp_path, check))


def test_arabic_that_wraps_reads_its_first_words_on_its_first_line(tmp_path: Path) -> None:
    """At the kiosk's 116 x 30 the Arabic total wraps: its label is on the first line, the bills' count on
    the last (review 6, finding 6), not the other way round as when Textual wraps the visual text."""
    import asyncio

    from textual.widgets import Static

    from ui import i18n

    async def check(app, pilot, devices) -> None:
        await pilot.press("f11")
        await _until(pilot, lambda: len(app.screen.basket) == 1, "the scanned bill")
        await pilot.press("f9")
        await _until(pilot, lambda: len(app.screen.basket) >= 3, "the customer's other bills")
        await pilot.pause(0.3)
        total = app.screen.query_one("#total", Static)
        lines = [line.strip() for line in str(total.render()).splitlines() if line.strip()]
        assert len(lines) >= 2, lines  # it does wrap at this width
        label = i18n.shape(i18n._("Total: {total} ({n} bills)").split("{")[0].strip())
        assert label in lines[0] and label not in lines[-1], lines

    try:
        asyncio.run(_newcomer_session(tmp_path, check, size=KIOSK_SIZE, language="ar"))
    finally:
        i18n.set_language("fr")


def test_ctrl_n_scans_too_and_ctrl_v_is_left_to_paste(tmp_path: Path) -> None:
    """A terminal may keep F11 (full screen): Ctrl+N scans the next bill as well; Ctrl+V no longer inserts
    a card (review 6, finding 12), Ctrl+T does."""
    import asyncio

    from ui.app import GuichetApp

    async def check(app, pilot, devices) -> None:
        await pilot.press("ctrl+n")
        await _until(pilot, lambda: len(app.screen.basket) == 1, "the bill scanned with Ctrl+N")
        keys = {b.key: b.action for b in GuichetApp.BINDINGS if not isinstance(b, tuple)}
        assert "ctrl+v" not in keys and keys["ctrl+t"] == "demo_card('visa')"

    asyncio.run(_newcomer_session(tmp_path, check))


@pytest.mark.pcsc
def test_an_offline_tap_in_the_demo_is_approved_by_the_card_then_uploaded(tmp_path: Path) -> None:
    """The demo's contactless Visa with the link down: the TTQ lets the card approve offline, it signs with fDDA
    (Y1), the payment waits in the queue and goes up when the link returns, and the sandbox verifies its TC."""
    _need_vpcd()
    path = tmp_path / "session.txt"
    path.write_text("link down\ncard insert visa_tap\nmethod card_reader\ntype {bill1}\npress enter f5\n"
                    "wait ReceiptScreen\nexpect approved\ncard remove\nlink up\nexpect uploaded\n", encoding="utf-8")
    r = subprocess.run([*GUICHET, "demo", "--headless", "--script", str(path), "--state-dir", str(tmp_path / "s")],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr + r.stdout
    out = json.loads(r.stdout)
    pay = out["payment"]
    assert pay["method"] == "card_reader" and pay["state"] == "uploaded" and pay["captured_offline"], pay
    assert "VISA 400000******" in out["receipt"] and "Y1" in out["receipt"]  # the card's own approval code
