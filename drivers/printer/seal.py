"""The receipt's seal: the text of its QR code, signed with the agency's key (`[receipts] signing_key`).

One home for the format: the renderer writes it, `guichet receipt verify` reads it. It carries the receipt
number, the terminal, the amount (minor units + ISO 4217 code), the time (UTC) and an HMAC-SHA256 of those,
truncated to 128 bits, so a receipt made up or altered on a PC does not verify without the key.

    >>> s = Seal("ORAN-07-G2-000042", "ORAN-07-G2", 1127300, "DZD", "20261130T2104Z")
    >>> text = s.sign(b"k" * 32)
    >>> text
    'GQ1;R=ORAN-07-G2-000042;T=ORAN-07-G2;A=1127300;C=DZD;D=20261130T2104Z;S=...'
    >>> verify(text, b"k" * 32) == s
    True
    >>> verify(text.replace("A=1127300", "A=9127300"), b"k" * 32)
    Traceback (most recent call last):
    ...
    drivers.printer.seal.SealError: S: the signature does not match: not a genuine receipt (or another key)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

PREFIX = "GQ1"
MAX_TEXT = 512
_FIELD = {
    "R": re.compile(r"[A-Za-z0-9._-]{1,64}"),
    "T": re.compile(r"[A-Za-z0-9._-]{1,32}"),
    "A": re.compile(r"[0-9]{1,15}"),
    "C": re.compile(r"[A-Z]{3}"),
    "D": re.compile(r"[0-9]{8}T[0-9]{4}Z"),
    "S": re.compile(r"[A-Za-z0-9_-]{22}"),
}
ORDER = ("R", "T", "A", "C", "D")


class SealError(ValueError):
    """A QR text that is not a genuine receipt seal; the message names the field at fault."""


def seal_time(when: datetime) -> str:
    """A time as the seal writes it: UTC, to the minute ('20261130T2104Z')."""
    return when.astimezone(UTC).strftime("%Y%m%dT%H%MZ")


@dataclass(frozen=True)
class Seal:
    receipt_number: str
    terminal_id: str
    amount: int
    currency: str
    time: str  # seal_time()

    def _body(self) -> str:
        values = (self.receipt_number, self.terminal_id, str(self.amount), self.currency, self.time)
        for name, value in zip(ORDER, values, strict=True):
            if not _FIELD[name].fullmatch(value):
                raise SealError(f"{name}: {value!r} cannot be sealed")
        return PREFIX + "".join(f";{n}={v}" for n, v in zip(ORDER, values, strict=True))

    def sign(self, key: bytes) -> str:
        """The QR text."""
        if not key:
            raise SealError("key: [receipts] signing_key is empty: receipts cannot be sealed")
        body = self._body()
        return f"{body};S={_mac(key, body)}"


def _mac(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def parse(text: str) -> tuple[Seal, str, str]:
    """(seal, signed body, signature) of a QR text, every field validated; no key needed."""
    if len(text) > MAX_TEXT:
        raise SealError(f"text: {len(text)} characters, a seal has at most {MAX_TEXT}")
    text = text.strip()
    parts = text.split(";")
    if parts[0] != PREFIX:
        raise SealError(f"prefix: {parts[0][:16]!r} is not {PREFIX}: not a guichet receipt")
    fields: dict[str, str] = {}
    for part in parts[1:]:
        name, eq, value = part.partition("=")
        if not eq or name not in _FIELD:
            raise SealError(f"field: {part[:20]!r} is not one of {', '.join(_FIELD)}")
        if name in fields:
            raise SealError(f"{name}: given twice")
        if not _FIELD[name].fullmatch(value):
            raise SealError(f"{name}: {value[:40]!r} is malformed")
        fields[name] = value
    for name in (*ORDER, "S"):
        if name not in fields:
            raise SealError(f"{name}: missing")
    seal = Seal(fields["R"], fields["T"], int(fields["A"]), fields["C"], fields["D"])
    return seal, text.rsplit(";S=", 1)[0], fields["S"]


def verify(text: str, key: bytes) -> Seal:
    """The seal of a genuine receipt; a SealError naming the field otherwise."""
    seal, body, sig = parse(text)
    if body != seal._body():
        raise SealError("order: the fields are not in the order a seal writes them")
    if not key:
        raise SealError("key: [receipts] signing_key is empty: nothing to verify with")
    if not hmac.compare_digest(sig, _mac(key, body)):
        raise SealError("S: the signature does not match: not a genuine receipt (or another key)")
    return seal
