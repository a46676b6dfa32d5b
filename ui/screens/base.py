"""What every screen of the counter shares: a title line, the status bar, right-to-left when Arabic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from ui import i18n
from ui.i18n import t

if TYPE_CHECKING:
    from ui.app import GuichetApp


class CounterScreen(Screen[Any]):
    """A full screen with a title and the status bar. Subclasses write `body()` and keep their state in
    attributes so a language switch can compose them again (`refresh(recompose=True)`)."""

    TITLE_TEXT = "guichet"

    @property
    def gapp(self) -> GuichetApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        self.set_class(i18n.is_rtl(), "-rtl")
        cfg = self.gapp.config
        yield Static(
            f"{t(self.TITLE_TEXT)} · {cfg.terminal.id}", id="title", classes="title"
        )
        yield from self.body()
        yield Static(self.keys_help(), id="keys", classes="keys")
        yield self.gapp.make_status_bar()

    def body(self) -> ComposeResult:
        yield from ()

    async def recompose(self) -> None:
        await super().recompose()
        self.refill()

    def refill(self) -> None:
        """After a language switch composed the screen again: fill what compose() leaves empty (tables
        are filled from the screen's state by code, not by compose)."""

    def keys_help(self) -> str:
        if self.gapp.cashier is None:
            return t("F8 language · Ctrl+Q quit")
        return t(
            "F2 payment · F3 history · F4 attention · F6 unknown · F7 Z report · F8 language · F10 log out"
            " · F12 cashiers"
        )


class CounterModal(ModalScreen[Any]):

    @property
    def gapp(self) -> GuichetApp:
        return self.app  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.set_class(i18n.is_rtl(), "-rtl")
