"""Messages the workers post to the UI thread: the only way work reaches the screen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from textual.message import Message


@dataclass
class LinkInfo:
    """What the status bar shows about the billing server link."""

    online: bool | None  # None: not known yet
    since: datetime | None = None
    retry_in: float | None = None
    last_error: str | None = None


@dataclass
class QueueInfo:
    count: int = 0
    total: dict[str, int] | None = None
    oldest_captured_at: datetime | None = None
    needs_attention: int = 0
    unknown: int = 0


class StatusUpdate(Message):
    """Link and queue state, posted about once a second by the status worker."""

    def __init__(self, link: LinkInfo, queue: QueueInfo) -> None:
        super().__init__()
        self.link = link
        self.queue = queue


class DeviceUpdate(Message):
    """A device changed state. ``kind``: reader | tpe | printer (agent.devices); ``state``: the registry's
    (ready, card_present, busy, unresponsive, absent, unavailable, error) or a demo panel label
    ("card present", "no card"); ``detail``: the registry's one line on it."""

    def __init__(self, kind: str, state: str, detail: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.state = state
        self.detail = detail


class LoginResult(Message):
    def __init__(self, cashier: Any = None, shift: Any = None, error: BaseException | None = None) -> None:
        super().__init__()
        self.cashier = cashier
        self.shift = shift
        self.error = error


class LookupResult(Message):
    def __init__(
        self, reference: str, lookup: Any = None, others: list[Any] | None = None, error: BaseException | None = None
    ) -> None:
        super().__init__()
        self.reference = reference
        self.lookup = lookup
        self.others = others or []
        self.error = error


class PayStatus(Message):
    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key


class PayFinished(Message):
    def __init__(self, result: Any = None, error: BaseException | None = None) -> None:
        super().__init__()
        self.result = result
        self.error = error


class Loaded(Message):
    """Generic: a worker loaded `data` for `what` (history rows, unknown payments, a report...)."""

    def __init__(self, what: str, data: Any = None, error: BaseException | None = None) -> None:
        super().__init__()
        self.what = what
        self.data = data
        self.error = error
