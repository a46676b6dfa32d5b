"""The `[printer]` and `[receipts]` sections: where receipts print, how they are laid out, how they are signed.

    [printer]
    url = "tcp://127.0.0.1:9100"   # usb://VID:PID | serial:///dev/ttyUSB0?baud=19200 | tcp://host:9100
                                   # | file:///dev/usb/lp0 | none
    paper = 80                     # mm (58 or 80), or the head's width in dots (384, 512, 576, ...)
    languages = ["fr", "ar"]       # the receipt's languages, in order
    layout = "stack"               # stack: one language after the other; side: side by side
    text = false                   # true: the printer's own font may print Latin-only receipts (faster)
    drawer = false                 # a cash drawer on the printer's kick connector, opened on cash payments
    logo = ""                      # an image file printed at the top (scaled to the paper)
    timeout = 5.0                  # seconds for any one exchange with the printer
    raster = "auto"                # full | compact (half the bytes: for serial lines) | auto (compact on serial)

    >>> PrinterConfig(paper=58).dots
    384
    >>> PrinterConfig(paper=576).dots
    576
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from config.section import Section

RECEIPT_LANGUAGES = ("fr", "ar", "en")
# Thermal heads print 8 dots/mm; the printable width of a 58 mm roll is 48 mm, of an 80 mm roll 72 mm.
PAPER_DOTS = {58: 384, 80: 576}


class PrinterConfig(Section):
    url: str = "none"
    paper: int = Field(80, ge=58, le=1024)
    languages: list[str] = Field(default_factory=lambda: ["fr", "ar"], min_length=1, max_length=2)
    layout: Literal["stack", "side"] = "stack"
    text: bool = False
    drawer: bool = False
    logo: str = ""
    timeout: float = Field(5.0, gt=0, le=30)
    raster: Literal["auto", "full", "compact"] = "auto"

    @field_validator("paper")
    @classmethod
    def _paper(cls, v: int) -> int:
        if v in PAPER_DOTS or (v >= 256 and v % 8 == 0):
            return v
        raise ValueError("paper: 58 or 80 (mm), or a width in dots, a multiple of 8 from 256")

    @field_validator("languages")
    @classmethod
    def _languages(cls, v: list[str]) -> list[str]:
        for lang in v:
            if lang not in RECEIPT_LANGUAGES:
                raise ValueError(f"languages: {lang!r} is not one of {', '.join(RECEIPT_LANGUAGES)}")
        if len(set(v)) != len(v):
            raise ValueError("languages: a language is listed twice")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        scheme = v.partition("://")[0]
        if v != "none" and scheme not in ("usb", "serial", "tcp", "file"):
            raise ValueError("url: none, usb://VID:PID, serial:///dev/tty..., tcp://host:port or file:///dev/...")
        return v

    @property
    def compact(self) -> bool:
        """Whether receipts go in compact raster: on a serial line the wire, not the head, is the limit."""
        return self.raster == "compact" or (self.raster == "auto" and self.url.startswith("serial:"))

    @property
    def dots(self) -> int:
        """The printable width in dots."""
        return PAPER_DOTS.get(self.paper, self.paper)


MIN_SIGNING_KEY = 32  # bytes: a seal's HMAC key that no one guesses (`guichet config init` writes 32 random bytes, hex)


class ReceiptsConfig(Section):
    """``signing_key``: the receipts' QR seal key; empty = not set (receipts print without a seal), else at
    least MIN_SIGNING_KEY bytes.

    >>> from pydantic import ValidationError
    >>> try:
    ...     ReceiptsConfig(signing_key="short")
    ... except ValidationError as e:
    ...     print(e.errors()[0]["msg"])
    Value error, at least 32 bytes (5 given): `guichet config init` writes a random one
    """

    signing_key: SecretStr = SecretStr("")

    @field_validator("signing_key")
    @classmethod
    def _signing_key(cls, v: SecretStr) -> SecretStr:
        size = len(v.get_secret_value().encode())
        if 0 < size < MIN_SIGNING_KEY:
            raise ValueError(f"at least {MIN_SIGNING_KEY} bytes ({size} given): "
                             "`guichet config init` writes a random one")
        return v
