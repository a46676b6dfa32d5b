"""The demo panel (guichet demo only): bills to "scan", and a virtual CIB, Edahabia or Visa card.

A newcomer pays without reading anything: the panel lists a few unpaid bills of the demo's billing server
(the first customer holds several), F11 (or a click on a bill) types the next one into the reference field
as a USB barcode scanner would (digits, then Enter), and one line says what to try next.

    demo.scan_bills()   -> [DemoBill("410726095518", "Benali Karim", "water", 345600, "DZD"), ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Button, Input, Static

from ui.i18n import _, shape, t, tw
from ui.messages import DeviceUpdate
from ui.plain import plain
from ui.text import SERVICE_LABELS, money

CARDS = (("cib", "CIB"), ("edahabia", "Edahabia"), ("visa", "Visa"))
SCAN_KEY = "f11"
# A terminal may keep F11 for itself (full screen): the same action on a key no terminal takes.
SCAN_KEY_2 = "Ctrl+N"
MAX_BILLS = 4  # what fits beside the payment screen
TEXT_WIDTH = 22  # the panel's width (26 in guichet.tcss) less its border, left padding and scrollbar


@dataclass(frozen=True)
class DemoBill:
    """One bill the panel offers to scan (from the demo's billing server)."""

    reference: str
    customer: str
    service: str
    amount: int  # minor units
    currency: str


class DemoPanel(VerticalScroll):
    """Buttons drive `demo.insert(profile)` / `demo.remove()` in a worker (the card is another process);
    bill buttons (and F11, bound by `DemoScanBinding`) type a bill's reference as a scanner would."""

    def __init__(self, demo: Any) -> None:
        super().__init__(id="demo-panel")
        self.demo = demo
        bills = getattr(demo, "scan_bills", None)
        self.bills: list[DemoBill] = list(bills()[:MAX_BILLS]) if callable(bills) else []

    def compose(self) -> ComposeResult:
        yield Static(t("Demo"), classes="big")
        yield Static(self.next_step(), id="demo-next", classes="hint")
        if self.bills:
            yield Static(tw("Bills to scan ({key}: the next one)", TEXT_WIDTH, key=f"F11/{SCAN_KEY_2}"),
                         classes="hint")
            for i, bill in enumerate(self.bills):
                service = _(SERVICE_LABELS.get(bill.service, bill.service))
                amount = money(bill.amount, bill.currency)
                label = shape(f"{bill.reference}\n{bill.customer[:12]} · {service}\n{amount}")
                yield Button(plain(label), id=f"demo-bill-{i}", classes="demo-bill")  # the server's bill: never markup
        for profile, label in CARDS:
            yield Button(t("Insert {card}", card=label), id=f"demo-{profile}")
        yield Button(t("Pull the card"), id="demo-pull", variant="warning")
        yield Static(tw("Keys: Ctrl+B CIB · Ctrl+E Edahabia · Ctrl+T Visa · Ctrl+X pull", TEXT_WIDTH), classes="hint")

    def next_step(self) -> str:
        """The one line that says what to try next."""
        if not self.bills:
            return tw("Type a bill reference, Enter, then F5 to pay", TEXT_WIDTH)
        return tw("Try: {key} scans a bill, F9 adds the customer's other bills, F5 pays on the TPE", TEXT_WIDTH,
                  key="F11")

    def on_mount(self) -> None:
        # The reference field's example must be a bill this demo has.
        if self.bills:
            for field in self.screen.query("#reference").results(Input):
                field.placeholder = self.bills[0].reference

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id or ""
        event.stop()
        if bid.startswith("demo-bill-"):
            self.scan(int(bid.removeprefix("demo-bill-")))
        elif bid == "demo-pull":
            self.card(None)
        elif bid.startswith("demo-"):
            self.card(bid[5:])

    def scan(self, index: int | None = None) -> str | None:
        """Type a bill's reference and Enter into the app, key by key, as a USB scanner does.

        index None: the next bill after the last one scanned (F11). Returns the reference typed.
        """
        if not self.bills:
            return None
        last = getattr(self.demo, "scanned", -1)  # kept by the demo: a language switch makes a new panel
        i = (last + 1) % len(self.bills) if index is None else index % len(self.bills)
        self.demo.scanned = i
        for field in self.screen.query("#reference").results(Input):
            field.focus()
        reference = self.bills[i].reference
        for ch in reference:
            self.app.post_message(events.Key(ch, ch))
        self.app.post_message(events.Key("enter", "\r"))
        return reference

    @work(thread=True, exit_on_error=False, group="demo-card", exclusive=True)
    def card(self, profile: str | None) -> None:
        self.app.post_message(card_event(self.demo, profile))


# The demo app's own keys (a class's BINDINGS count for Textual only on DOM classes: the app lists these).
DEMO_BINDINGS: list[BindingType] = [Binding(SCAN_KEY, "demo_scan", "Scan a demo bill", priority=True),
                                     Binding(SCAN_KEY_2.lower(), "demo_scan", "Scan a demo bill", priority=True,
                                             show=False)]


class DemoScanBinding:
    """Mixed into the demo's App (with DEMO_BINDINGS): F11 scans the next demo bill wherever the focus is."""

    def action_demo_scan(self) -> None:
        for panel in self.screen.query(DemoPanel):  # type: ignore[attr-defined]
            panel.scan()
            return


def card_event(demo: Any, profile: str | None) -> DeviceUpdate:
    """Insert (or pull, for None) the demo card; the reader state to show. Blocking: call from a worker."""
    try:
        if profile is None:
            demo.remove()
            state = "no card"
        else:
            demo.insert(profile)
            state = "card present"
    except Exception as e:
        state = f"error: {e}"
    return DeviceUpdate("reader", state)
