"""The demo panel (guichet demo only): insert a virtual CIB, Edahabia or Visa card, or pull it."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Button, Static

from ui.i18n import t
from ui.messages import DeviceUpdate

CARDS = (("cib", "CIB"), ("edahabia", "Edahabia"), ("visa", "Visa"))


class DemoPanel(Vertical):
    """Buttons drive `demo.insert(profile)` / `demo.remove()` in a worker (the card is another process)."""

    def __init__(self, demo: Any) -> None:
        super().__init__(id="demo-panel")
        self.demo = demo

    def compose(self) -> ComposeResult:
        yield Static(t("Demo"), classes="big")
        for profile, label in CARDS:
            yield Button(t("Insert {card}", card=label), id=f"demo-{profile}")
        yield Button(t("Pull the card"), id="demo-pull", variant="warning")
        yield Static(t("Keys: Ctrl+B CIB · Ctrl+E Edahabia · Ctrl+V Visa · Ctrl+X pull"), classes="hint")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id or ""
        if bid == "demo-pull":
            self.card(None)
        elif bid.startswith("demo-"):
            self.card(bid[5:])

    @work(thread=True, exit_on_error=False, group="demo-card", exclusive=True)
    def card(self, profile: str | None) -> None:
        self.app.post_message(card_event(self.demo, profile))


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
