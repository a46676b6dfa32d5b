"""`guichet demo [--headless --script FILE]`: the whole counter, simulated.

Starts, on this machine only (127.0.0.1 and a pty):
- the sandbox billing server with seeded bills (sandbox.billing.server.SandboxServer),
- the Concert TPE simulator on a pty (sandbox.tpe.TpeSimulator), the default payment method,
- the virtual card reader: demo cards (CIB, Edahabia, Visa) served to pcscd's vpcd reader
  (sandbox.cards), when vpcd listens on 127.0.0.1:35963 and --reader is on,
- the cashier UI, logged in as the demo cashier "demo" (PIN 1234; supervisor "super", PIN 123456),
  with a demo panel: unpaid bills to scan (a click, or F11 for the next: typed as a barcode scanner does),
  insert CIB / Edahabia / Visa, pull the card (also Ctrl+B, Ctrl+E, Ctrl+T, Ctrl+X).

With --headless --script FILE the UI runs without a terminal and plays the script, then prints a JSON
outcome and exits 0 if every `expect` held (1 otherwise); --script FILE alone plays it in the UI on this
terminal (the kiosk test's pictures), then prints the same outcome. Script lines (# starts a comment):

    type {bill0}            type text; {bill0}, {bill1}... are the seeded unpaid references
    press enter f5          key presses (Textual key names)
    card insert cib         cib | edahabia | visa | visa_tap (a contactless Visa);   card remove
    tpe refuse              the TPE's next exchange: approve | refuse | cancel | no_answer | silent ...
    tpe-delay 5             seconds the TPE takes before it answers (the customer, the PIN)
    screenshot FILE.png     the kiosk's screen (grim; WAYLAND_DISPLAY must be set)
    link down | link up     stop / restart the billing server
    method card_reader      choose the payment method (card_terminal | card_reader | cash)
    wait ReceiptScreen      until that screen is shown (bounded: 60 s)
    wait-text {scan0}       until that text is on the screen (bounded: 60 s); {scan0}... the demo panel's bills
    sleep 0.5
    expect approved         the last payment's outcome, once it has one (approved [or uploaded] | declined |
                            cancelled | unknown); `expect uploaded` also waits for the upload (bounded)

An offline tap: `link down`, `card insert visa_tap`, `method card_reader`, pay, `expect approved` (the card's TC
with fDDA, Y1), `link up`, `expect uploaded` (the sandbox verifies the TC).
    expect-text DUPLICATA   text on the current screen
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import click

from guichet.cli.common import fail

DEMO_CASHIER = ("demo", "1234")
DEMO_SUPERVISOR = ("super", "123456")
DEMO_TOKEN = "demo-token"  # noqa: S105 (a sandbox credential on 127.0.0.1)
DEMO_TERMINAL = "ORAN-07-G1"
DEMO_RECEIPT_KEY = "demo-receipts-signing-key-0123456789abcdef"  # noqa: S105 (the demo's own, on 127.0.0.1)
DEMO_AGENCY = "ORAN-07"
VPCD = ("127.0.0.1", 35963)

# Demo card -> (sandbox/cards profile for the reader, TPE simulator test card).
# Each a whole EMV transaction on the reader (docs/emv.md): CIB (DDA), Edahabia (SDA), Visa CVN 18 (DDA).
CARDS = {"cib": ("cib", "CIB"), "edahabia": ("edahabia", "EDAHABIA"), "visa": ("emv_visa18", "VISA"),
         "visa_tap": ("visa_tap", "VISA")}  # a tap; with `link down` the card approves it offline (fDDA)
DEMO_CL_FLOOR_LIMIT = 5_000_000  # the demo's Visa taps may be approved offline below 50,000.00 DZD (demo figure)
WAIT_ROUNDS = 1200  # x 0.05 s: a bound against a hang, not a speed target (a loaded CI machine is slow)
SLOT_WAIT = 60.0  # seconds to wait for the vpcd slot before running without the reader
COUNTERS_FILE = "card-counters.json"  # the demo cards' counters, in the state dir


class DemoDevices:
    """The simulated outside world of one demo run. `insert`/`remove` block briefly: call from workers."""

    def __init__(self, state_dir: Path, *, reader: bool, language: str, seed_bills: int = 60) -> None:
        from sandbox.billing.server import SandboxServer
        from sandbox.smtp_sink import start_receipt_devices
        from sandbox.tpe import TpeSimulator

        self.state_dir = state_dir
        # First (a damaged file stops the demo before anything starts): the demo cards keep their counters (ATC, PIN
        # tries...) across insertions and runs like real cards, as the sandbox acquirer declines an ATC it has seen
        # (strict ATC) and a --state-dir keeps its database too.
        from sandbox.cards.counters import FileCounterStore

        self.counters = FileCounterStore(state_dir / COUNTERS_FILE)
        # Receipts come out of a virtual printer (PNGs) and e-mails land in a local SMTP sink (docs/receipts.md).
        self.receipts = start_receipt_devices(state_dir / "receipts")
        self.server = SandboxServer(
            state_dir / "billing-server.db", token=DEMO_TOKEN, agency=DEMO_AGENCY, seed_bills=seed_bills,
            smtp=self.receipts.smtp,
        ).start()
        self.tpe = TpeSimulator.on_pty(baud=9600, framing="7E1", behaviour="approve", pin_delay=1.0).start()
        from sandbox.cards.vpcd import slot, vpcd_listening

        self._slot: Any = None
        self.reader = reader and vpcd_listening(*VPCD)
        if self.reader:  # the one vpcd slot is shared with the test suite and other demos: hold it throughout
            self._slot = slot(timeout=SLOT_WAIT)
            if not self._slot.__enter__():
                self._slot.__exit__(None, None, None)
                self._slot, self.reader = None, False
                click.echo("the virtual card reader is in use by another process; the demo runs without it", err=True)
        self.language = language
        self.scanned = -1  # the demo panel's last scanned bill (F11 scans the next)
        self._link: Any = None
        self._lock = threading.Lock()

    def config(self) -> Any:
        import config
        from sandbox.cards.profiles import sandbox_cards_config, sandbox_emv_config

        cards = sandbox_cards_config()
        # The TPE simulator's cards carry real-looking BINs; name their schemes too.
        extra_bins = {"CIB": "603620", "EDAHABIA": "628058"}
        for rule in cards["schemes"]:
            if rule["name"] in extra_bins:
                rule["bins"] = [*rule["bins"], extra_bins[rule["name"]]]
            if rule["name"] == "VISA":
                rule["cl_floor_limit"] = DEMO_CL_FLOOR_LIMIT
        methods = ["card_terminal", "card_reader", "cash"] if self.reader else ["card_terminal", "cash"]
        return config.validate(
            {
                "terminal": {"id": DEMO_TERMINAL, "agency_id": DEMO_AGENCY, "currency": "DZD"},
                "server": {"url": self.server.url, "token": DEMO_TOKEN, "timeout": 3},
                "state": {"dir": str(self.state_dir / "state")},
                "sync": {"interval": 2, "batch_size": 100},
                "cards": cards,
                "emv": sandbox_emv_config(),  # the test CA: offline data authentication of the demo cards
                "tpe": {"port": self.tpe.path, "baud": 9600, "framing": "7E1", "answer_timeout": 20},
                "payments": {"default_method": "card_terminal", "methods": methods},
                "ui": {"language": self.language, "bidi": "app"},
                "printer": {"url": self.receipts.printer_url},
                "receipts": {"signing_key": DEMO_RECEIPT_KEY},
            },
            source="demo",
        )

    def references(self) -> list[str]:
        return list(self.server.references(status="unpaid"))

    def scan_bills(self, count: int = 5) -> list[Any]:
        """Unpaid bills the demo panel offers to scan: first one customer's several bills (F9 adds the
        others to the basket), then bills of other customers."""
        from ui.widgets.demo_panel import DemoBill

        try:
            _customer, refs = self.server.customer_with_bills(2)
        except LookupError:
            refs = []
        refs = [*refs, *(r for r in self.references() if r not in refs)][: max(count, 0)]
        out = []
        for ref in refs:
            b = self.server.bill(ref)
            out.append(DemoBill(ref, str(b["customer_name"]), str(b["service"]), int(b["amount_due"]),
                                str(b["currency"])))
        return out

    def insert(self, profile: str) -> None:
        if profile not in CARDS:
            raise ValueError(f"card: {profile!r} is not one of {', '.join(CARDS)}")
        reader_profile, tpe_card = CARDS[profile]
        with self._lock:
            self._pull()
            self.tpe.card = tpe_card  # the card the customer uses on the TPE
            if self.reader:
                from sandbox.cards.card import VirtualCard
                from sandbox.cards.profiles import PROFILES
                from sandbox.cards.vpcd import VpcdLink

                card = VirtualCard(PROFILES[reader_profile], counters=self.counters)
                self._link = VpcdLink(card, *VPCD).start()

    def remove(self) -> None:
        with self._lock:
            self._pull()

    def _pull(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.remove()

    def close(self) -> None:
        try:
            self.remove()
            self.tpe.stop()
            self.server.close()
            self.receipts.close()
        finally:
            slot_, self._slot = self._slot, None
            if slot_ is not None:
                slot_.__exit__(None, None, None)


def demo_app() -> Any:
    """The cashier app with the demo's keys (F11 scans the next demo bill)."""
    import ui.app
    from ui.app import GuichetApp
    from ui.widgets.demo_panel import DEMO_BINDINGS, DemoScanBinding

    class DemoApp(DemoScanBinding, GuichetApp):
        BINDINGS = DEMO_BINDINGS
        CSS_PATH = str(Path(ui.app.__file__).with_name(str(GuichetApp.CSS_PATH)))  # relative to ui/, not here

    return DemoApp


def _ensure_cashiers(state: Path) -> Any:
    from agent.cashiers import CashierStore

    store = CashierStore.open(state)
    known = {c.cashier_id for c in store.list()}
    if DEMO_CASHIER[0] not in known:
        store.add(DEMO_CASHIER[0], "Démo", DEMO_CASHIER[1])
    if DEMO_SUPERVISOR[0] not in known:
        store.add(DEMO_SUPERVISOR[0], "Superviseur", DEMO_SUPERVISOR[1], role="supervisor")
    return store


@click.command()
@click.option("--headless", is_flag=True, help="No terminal UI: play --script and print the outcome as JSON.")
@click.option("--script", type=click.Path(exists=True, dir_okay=False), help="A scripted session (see above).")
@click.option("--language", type=click.Choice(["fr", "ar", "en"]), default="fr", show_default=True)
@click.option("--reader/--no-reader", default=True, help="Serve the demo cards to pcscd's vpcd reader.")
@click.option("--state-dir", type=click.Path(file_okay=False), help="Keep the demo's files here (default: a temp dir).")
def demo(headless: bool, script: str | None, language: str, reader: bool, state_dir: str | None) -> None:
    """Everything simulated: sandbox server, virtual reader and cards, TPE simulator, cashier UI."""
    if headless and not script:
        fail("--headless needs --script FILE (the session to play)", usage=True)
    steps = parse_script(Path(script).read_text(encoding="utf-8")) if script else []
    tmp = None
    if state_dir:
        base = Path(state_dir)
        base.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="guichet-demo-")
        base = Path(tmp)
    try:
        devices = DemoDevices(base, reader=reader, language=language)
    except BaseException as e:  # e.g. the sandbox extra is missing: leave no temp dir behind
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        # A damaged card-counters.json in --state-dir: one line (by name: the sandbox may be what is missing).
        if type(e).__name__ == "CountersFileError":
            about_key = getattr(e, "path", None) != base / COUNTERS_FILE  # its key file: the message says what to do
            fail(str(e) if about_key else f"{e} (delete it to start the demo cards afresh)")
        raise
    backend = None
    try:
        from ui.backend import Backend

        cfg = devices.config()
        Path(cfg.state.dir).mkdir(parents=True, exist_ok=True)
        backend = Backend.open(cfg, cashiers=_ensure_cashiers(Path(cfg.state.dir)))
        from guichet.cli.run import JOBS

        app = demo_app()(backend, demo=devices, auto_login=DEMO_CASHIER, jobs=JOBS)
        if not headless and not steps:
            app.run()
            return
        outcome = asyncio.run(play(app, devices, steps)) if headless else play_on_screen(app, devices, steps)
        click.echo(json.dumps(outcome, ensure_ascii=False, indent=2))
        if not outcome["ok"]:
            sys.exit(1)
    finally:
        if backend is not None:
            backend.close()
        devices.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


# -- scripted sessions -------------------------------------------------------------------------------------

KNOWN = {"type", "press", "card", "tpe", "tpe-delay", "link", "method", "wait", "wait-text", "sleep", "expect",
         "expect-text", "screenshot"}
SCREENSHOT_TIMEOUT = 30.0


def parse_script(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, command, arguments); a bad line is a usage error naming it."""
    steps = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("type ") else raw.strip()
        if not line:
            continue
        cmd, _, rest = line.partition(" ")
        if cmd not in KNOWN:
            fail(f"script line {n}: unknown command {cmd!r} (one of {', '.join(sorted(KNOWN))})", usage=True)
        args = [rest] if cmd in ("type", "expect-text", "wait-text") else rest.split()
        if cmd in ("press", "card", "tpe", "tpe-delay", "link", "method", "wait", "sleep", "expect", "screenshot") \
                and not args:
            fail(f"script line {n}: {cmd} needs an argument", usage=True)
        steps.append((n, cmd, args))
    return steps


def shown(app: Any) -> str:
    """The current screen's class name once it is composed ("" before): a pushed screen becomes
    `app.screen` at once, its widgets only after its compose has run."""
    screen = app.screen
    return type(screen).__name__ if screen.is_mounted else ""


def screen_text(app: Any) -> str:
    from textual.widgets import Static

    parts = []
    for w in app.screen.query(Static):
        try:
            parts.append(str(w.render()))
        except Exception:  # a widget not yet laid out  # noqa: S112
            continue
    return "\n".join(parts)


async def play(app: Any, devices: DemoDevices, steps: list[tuple[int, str, list[str]]]) -> dict[str, Any]:
    """Run the app headless and play the steps; the outcome says what the journal holds at the end."""
    async with app.run_test(headless=True, size=(140, 44)) as pilot:
        return await play_steps(pilot, devices, steps)


def play_on_screen(app: Any, devices: DemoDevices, steps: list[tuple[int, str, list[str]]]) -> dict[str, Any]:
    """Play the steps in the UI on this terminal (the kiosk's pictures); the app quits at the end."""
    box: dict[str, Any] = {}

    async def autopilot(pilot: Any) -> None:
        try:
            box["outcome"] = await play_steps(pilot, devices, steps)
        finally:
            app.exit()

    app.run(auto_pilot=autopilot)
    return box.get("outcome") or {"ok": False, "failures": ["the UI ended before the script"], "outcome": None,
                                  "payment": None, "receipt": ""}


async def screenshot(path: str) -> str | None:
    """The Wayland screen (the kiosk: cage) to a PNG with grim; the failure's line, or None."""
    import os

    if not os.environ.get("WAYLAND_DISPLAY"):
        return "screenshot needs the kiosk (WAYLAND_DISPLAY unset)"
    try:
        proc = await asyncio.create_subprocess_exec("grim", path, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        _out, err = await asyncio.wait_for(proc.communicate(), SCREENSHOT_TIMEOUT)
    except (OSError, TimeoutError) as e:
        return f"grim: {e}"
    return None if proc.returncode == 0 else f"grim: {err.decode(errors='replace').strip()[:200]}"


async def play_steps(pilot: Any, devices: DemoDevices, steps: list[tuple[int, str, list[str]]]) -> dict[str, Any]:
    """Play the steps through a Textual pilot; the outcome says what the journal holds at the end."""
    app = pilot.app
    refs = devices.references()
    subst = {f"bill{i}": r for i, r in enumerate(refs[:20])}
    subst.update({f"scan{i}": b.reference for i, b in enumerate(devices.scan_bills())})
    failures: list[str] = []

    async def until(cond: Any, what: str) -> bool:
        for _ in range(WAIT_ROUNDS):
            if cond():
                return True
            await pilot.pause(0.05)
        stack = " > ".join(type(sc).__name__ for sc in app.screen_stack)
        failures.append(f"timed out waiting for {what} (screens: {stack}; on screen: {screen_text(app)[:300]!r})")
        return False

    await until(lambda: shown(app) in ("PaymentScreen", "UnknownScreen"), "the demo login")
    for n, cmd, args in steps:
        if failures:
            break
        if cmd == "type":
            text = args[0].format(**subst)
            await pilot.press(*list(text))
        elif cmd == "press":
            await pilot.press(*args)
        elif cmd == "card":
            from ui.widgets.demo_panel import card_event

            profile = None if args[0] == "remove" else (args[1] if args[0] == "insert" and len(args) > 1 else "")
            if profile == "":
                failures.append(f"line {n}: card insert PROFILE | card remove")
                break
            msg = await asyncio.to_thread(card_event, devices, profile)
            app.post_message(msg)
        elif cmd == "method":
            from textual.widgets import RadioButton

            buttons = [b for b in app.screen.query(RadioButton) if b.name == args[0]]
            if not buttons:
                failures.append(f"line {n}: method {args[0]!r} is not offered on this counter")
                break
            buttons[0].value = True
        elif cmd == "tpe":
            devices.tpe.script(*args)
        elif cmd == "tpe-delay":  # seconds the terminal "thinks" (the customer, the PIN) before answering
            devices.tpe.think = min(max(float(args[0]), 0.0), 60.0)
        elif cmd == "screenshot":
            from textual.widgets import Input

            for field in app.screen.query(Input):  # a steady cursor: the same picture at every run
                field.cursor_blink = False
            await pilot.pause(0.5)  # let the terminal draw the last frame
            await asyncio.sleep(1.0)
            problem = await screenshot(args[0])
            if problem:
                failures.append(f"line {n}: {problem}")
        elif cmd == "link":
            await asyncio.to_thread(devices.server.stop if args[0] == "down" else devices.server.start)
        elif cmd == "wait":
            name = args[0]
            await until(lambda name=name: shown(app) == name, f"line {n}: screen {name}")
        elif cmd == "wait-text":
            want = args[0].format(**subst)
            await until(lambda want=want: want in screen_text(app), f"line {n}: text {want!r}")
        elif cmd == "sleep":
            await pilot.pause(float(args[0]))
        elif cmd == "expect":
            state = None
            for _ in range(WAIT_ROUNDS):  # until the payment has an outcome (bounded)
                last = _last_payment(app)
                state = last.state if last else None
                # `expect uploaded` also waits out "approved" (the upload follows the link coming back)
                pending = {None, "created", "authorizing"} | ({"approved"} if args[0] == "uploaded" else set())
                if _matches(args[0], state) or state not in pending:
                    break
                await pilot.pause(0.05)
            if not _matches(args[0], state):
                failures.append(f"line {n}: expected the last payment {args[0]}, it is {state}")
        elif cmd == "expect-text":
            want = args[0].format(**subst)
            if want not in screen_text(app):
                failures.append(f"line {n}: {want!r} is not on the screen")
        await pilot.pause()
    last = _last_payment(app)
    receipt = ""
    if type(app.screen).__name__ == "ReceiptScreen":
        receipt = app.screen.text()
    return {
    "ok": not failures,
    "failures": failures,
    "outcome": last.state if last else None,
    "payment": last.summary() if last else None,
    "receipt": receipt,
    }


def _matches(expected: str, state: str | None) -> bool:
    # "approved" holds once the payment is also uploaded: the money was taken either way.
    return state == expected or (expected == "approved" and state == "uploaded")


def _last_payment(app: Any) -> Any:
    rows = app.backend.journal.list(limit=1)
    return rows[0] if rows else None
