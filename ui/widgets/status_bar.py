"""The status bar, always at the bottom: link, unsent payments, reader, terminal, cashier, clock.

It never reads anything itself: the app hands it the latest `StatusUpdate`/`DeviceUpdate` figures and
it repaints from them (and ticks the clock once a second).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from ui import i18n
from ui.formatting import number, time_text
from ui.i18n import N_, t
from ui.messages import LinkInfo, QueueInfo
from ui.plain import plain
from ui.text import DEVICE_LABELS, age_text, local_hm, money

# The device registry's states (agent.devices.STATES), as the cashier reads them; other states (the demo
# panel's "no card", "error: ...") go through ui.text.DEVICE_LABELS.
REGISTRY_LABELS = {
    "card_present": N_("card present"),
    "present": N_("connected"),
    "unavailable": N_("PC/SC service down"),
    "unresponsive": N_("not answering"),
    "busy": N_("busy"),
    "error": N_("device error"),
    "unknown": N_("checking…"),
}
# The kinds the bar shows, in order, with their labels (agent.devices kinds; "terminal" was the TPE's old key).
DEVICE_KINDS = (("reader", N_("Reader")), ("tpe", N_("TPE")), ("printer", N_("Printer")))

PARTS = ("sb-link", "sb-queue", "sb-devices", "sb-spacer", "sb-cashier", "sb-clock")


class StatusBar(Horizontal):
    """One line: each part is a Static with an id so tests can read it."""

    DEFAULT_CSS = """
    StatusBar { dock: bottom; height: 1; background: $panel; }
    StatusBar > Static { width: auto; padding: 0 1; }
    StatusBar > #sb-link.-offline { background: $error; color: $text; }
    StatusBar > #sb-link.-online { color: $success; }
    StatusBar > #sb-queue.-late { background: $error; color: $text; text-style: bold; }
    StatusBar > #sb-spacer { width: 1fr; }
    """

    def __init__(self, clock: Callable[[], datetime] | None = None, warn_after: float = 14_400) -> None:
        super().__init__()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.warn_after = warn_after
        self.link = LinkInfo(online=None)
        self.queue = QueueInfo()
        self.devices: dict[str, str] = {}
        self.cashier: str = ""

    def compose(self) -> ComposeResult:
        parts = [Static(id=name) for name in PARTS]
        # Right-to-left: the line reads from the right, so the link state sits at the right edge.
        yield from reversed(parts) if i18n.is_rtl() else parts

    def on_mount(self) -> None:
        self.repaint()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        parts = self._parts()
        if parts:
            parts["sb-clock"].update(time_text(self.clock(), seconds=True))
            self._paint_queue(parts["sb-queue"])

    def update_status(self, link: LinkInfo, queue: QueueInfo) -> None:
        self.link = link
        self.queue = queue
        self.repaint()

    def update_device(self, kind: str, state: str) -> None:
        """``state``: one of agent.devices.STATES, or a label of ui.text.DEVICE_LABELS."""
        self.devices[kind] = state
        self.repaint()

    def set_cashier(self, name: str) -> None:
        self.cashier = name
        self.repaint()

    def _parts(self) -> dict[str, Static] | None:
        """The bar's parts, or None while they are not all there.

        A bar can be in a screen's DOM without its parts: before compose has mounted them, and while it is
        being removed (a language switch recomposes every screen; quitting prunes each screen's children
        before the screen leaves the stack). Status updates arrive from a worker at any of those moments:
        then the figures are only kept, and `on_mount` paints them.
        """
        parts = {w.id: w for w in self.query_children(Static) if w.id}
        return parts if len(parts) == len(PARTS) else None

    def link_text(self) -> str:
        link = self.link
        if link.online is None:
            return t("Link: …")
        if link.online:
            return t("Online")
        text = t("Offline since {hm}", hm=local_hm(link.since)) if link.since else t("Offline")
        if link.retry_in is not None:
            text += " · " + t("retrying in {n} s", n=int(max(0, link.retry_in)))
        return text

    def queue_text(self) -> str:
        q = self.queue
        if not q.count:
            text = t("Unsent: 0")
        else:
            amounts = sorted((q.total or {}).items())
            totals = ", ".join(money(v, c) for c, v in amounts)
            count = number(q.count, amounts[0][0] if amounts else None)  # grouped as its amounts are
            text = t("Unsent: {count} ({total})", count=count, total=totals)
            if q.oldest_captured_at:
                text += " · " + t("oldest {age}", age=age_text(self.oldest_age() or 0))
        if q.unknown:
            text += " · " + t("{n} unknown", n=q.unknown)
        if q.needs_attention:
            text += " · " + t("{n} need attention", n=q.needs_attention)
        return text

    def oldest_age(self) -> float | None:
        oldest = self.queue.oldest_captured_at
        if oldest is None or not self.queue.count:
            return None
        return (self.clock() - oldest).total_seconds()

    def is_late(self) -> bool:
        age = self.oldest_age()
        return age is not None and age > self.warn_after

    def repaint(self) -> None:
        parts = self._parts()
        if parts is None:
            return
        link = parts["sb-link"]
        link.update(self.link_text())
        link.set_class(self.link.online is False, "-offline")
        link.set_class(self.link.online is True, "-online")
        self._paint_queue(parts["sb-queue"])
        devs = []
        for kind, label in DEVICE_KINDS:
            if kind in self.devices:
                state = self.devices[kind]
                text = REGISTRY_LABELS.get(state) or DEVICE_LABELS.get(state, state)
                devs.append(f"{t(label)}: {i18n.shape(i18n._(text))}")
        parts["sb-devices"].update(plain(" · ".join(devs)))  # a driver's error text: never markup
        parts["sb-cashier"].update(plain(i18n.shape(self.cashier)))  # a cashier's name is free text
        parts["sb-clock"].update(time_text(self.clock(), seconds=True))

    def _paint_queue(self, queue: Static) -> None:
        queue.update(self.queue_text())
        queue.set_class(self.is_late(), "-late")
