"""What a card read yields: :class:`CardData` (safe to show and store) and the full PAN, kept apart.

The full PAN is held in a :class:`SecretPan` (a bytearray overwritten on :meth:`wipe`), attached to the
``CardData`` but not one of its dataclass fields: it never appears in ``repr``, ``str``,
``dataclasses.asdict``, ``to_dict()`` or JSON, and cannot be pickled or copied.

    card = reader.read()
    card.to_dict()              # scheme, pan_masked, pan_token, expiry, aid, label, ... : no PAN
    with card.pan_in_memory() as pan:      # the one place the full PAN is handed out
        client.authorize({"card": {"pan": pan, "expiry": card.expiry, ...}}, idempotency_key=...)
    # leaving the block wipes it; card.pan_in_memory() again raises PanWiped
    pan = card.take_pan()       # or: once, then wiped

Tokens: ``pan_token`` is HMAC-SHA256 of the PAN under ``cards.hmac_key`` (``drivers.pan.pan_token``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn


class PanWiped(RuntimeError):
    """The PAN was already handed out or wiped (the transaction is over)."""


class SecretPan:
    """A PAN in a wipeable buffer. ``str()``/``repr()`` never show it."""

    __slots__ = ("_buf",)

    def __init__(self, digits: str | bytes | bytearray) -> None:
        raw = digits.encode("ascii") if isinstance(digits, str) else bytes(digits)
        self._buf = bytearray(raw)

    @property
    def wiped(self) -> bool:
        return not self._buf

    def reveal(self) -> str:
        if not self._buf:
            raise PanWiped("the card number was already used or wiped; read the card again")
        return self._buf.decode("ascii")

    def wipe(self) -> None:
        for i in range(len(self._buf)):
            self._buf[i] = 0
        self._buf = bytearray()

    def __repr__(self) -> str:
        return "<SecretPan wiped>" if self.wiped else "<SecretPan>"

    __str__ = __repr__

    def _refuse(self, *args: Any) -> NoReturn:
        raise TypeError("a card number cannot be copied, pickled or serialised")

    __copy__ = _refuse
    __deepcopy__ = _refuse
    __reduce__ = _refuse
    __reduce_ex__ = _refuse
    __getstate__ = _refuse


@dataclass(frozen=True)
class CardData:
    """A card as read over PC/SC. Every field is safe to show, log and store."""

    scheme: str
    pan_masked: str
    pan_token: str
    expiry: str  # YYYY-MM
    aid: str  # hex, upper case
    label: str = ""  # application label (50)
    preferred_name: str = ""  # application preferred name (9F12)
    language: str = ""  # language preference (5F2D), e.g. "frar"
    interface: str = "contact"  # contact | contactless
    pan_sequence: str | None = None  # 5F34, two digits
    issuer_country: str | None = None  # 5F28, ISO 3166 numeric
    app_currency: str | None = None  # 9F42, ISO 4217 numeric
    apdu_count: int = 0
    reader: str = ""
    atr: str = ""
    elapsed_ms: float = 0.0
    candidates: tuple[str, ...] = field(default=(), repr=False)  # AIDs the card offered, in priority order

    # The PAN is attached with attach_pan(), outside the dataclass fields on purpose.
    def attach_pan(self, pan: SecretPan) -> CardData:
        object.__setattr__(self, "_pan", pan)
        return self

    @property
    def display_label(self) -> str:
        """What the cashier sees: the preferred name, else the label, else the scheme."""
        return self.preferred_name or self.label or self.scheme

    @property
    def expired(self) -> bool:
        return self.expired_on(_dt.date.today())

    def expired_on(self, day: _dt.date) -> bool:
        """A card is valid through the last day of its expiry month."""
        year, month = (int(x) for x in self.expiry.split("-"))
        return (day.year, day.month) > (year, month)

    def _secret(self) -> SecretPan:
        pan: SecretPan | None = getattr(self, "_pan", None)
        if pan is None:
            raise PanWiped("this card data carries no card number")
        return pan

    @contextmanager
    def pan_in_memory(self) -> Iterator[str]:
        """The full PAN for the duration of the block, then wiped: for ``POST /v1/authorizations`` only."""
        secret = self._secret()
        try:
            yield secret.reveal()
        finally:
            secret.wipe()

    def pan_for_check(self) -> str:
        """The full PAN, kept in the card data: for the kernel's checks that name it (ODA certificates) only."""
        return self._secret().reveal()

    def take_pan(self) -> str:
        """The full PAN, once; the buffer is wiped before returning."""
        secret = self._secret()
        pan = secret.reveal()
        secret.wipe()
        return pan

    def wipe(self) -> None:
        """Forget the PAN (end of transaction). Safe to call many times."""
        pan: SecretPan | None = getattr(self, "_pan", None)
        if pan is not None:
            pan.wipe()

    @property
    def has_pan(self) -> bool:
        pan: SecretPan | None = getattr(self, "_pan", None)
        return pan is not None and not pan.wiped

    def payment_card(self) -> dict[str, str]:
        """The journal's / contract's ``card`` object: scheme, pan_masked, pan_token, expiry, aid."""
        return {
            "scheme": self.scheme,
            "pan_masked": self.pan_masked,
            "pan_token": self.pan_token,
            "expiry": self.expiry,
            "aid": self.aid,
        }

    def to_dict(self) -> dict[str, Any]:
        """Every safe field (no PAN), JSON-ready."""
        return {
            "reader": self.reader,
            "atr": self.atr,
            "interface": self.interface,
            "aid": self.aid,
            "label": self.display_label,
            "scheme": self.scheme,
            "pan_masked": self.pan_masked,
            "pan_token": self.pan_token,
            "expiry": self.expiry,
            "pan_sequence": self.pan_sequence,
            "language": self.language,
            "issuer_country": self.issuer_country,
            "apdu_count": self.apdu_count,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }

    def __getstate__(self) -> NoReturn:
        raise TypeError("CardData holds a card number: use to_dict() or payment_card()")
