"""What the journal holds and hands out: a payment, a payment to create, the upload queue's figures.

    p = journal.get(payment_id)          # a Payment: frozen, never a full PAN
    p.summary()                          # the `guichet pay --json` fields
    p.to_api()                           # the contract's Payment, as uploaded
    NewPayment(bill, 345600)             # what Journal.create takes
    NewPayment(bill, 345600, stamp_duty=4000, seen_seq=read_seq)   # cash with its duty; the bill read then
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from agent import clock
from drivers.emv import tlv as emv_tlv
from drivers.emv.tags import SECRET_TAGS

MAX_CHIP = 8192  # bytes of a payment's chip JSON: a DE55 is a few hundred, the summary about as much
# PCI DSS (drivers.emv.tags.SECRET_TAGS, the one home): PAN, track data, cardholder name, PIN data (99)
NEVER_STORED_TAGS = SECRET_TAGS


def uuid7() -> str:
    """A time-ordered UUID (RFC 9562 version 7): new payments' keys sort last, so the journal's B-trees
    grow at their right edge instead of splitting pages at random; still 74 random bits, unique."""
    value = (int(time.time() * 1000) & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10), "big") & (2**80 - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


@dataclass(frozen=True)
class Payment:
    """One bill's payment as the journal holds it. Never holds a full PAN."""

    payment_id: str
    transaction_id: str
    bill_reference: str
    amount: int
    currency: str
    method: str
    state: str
    card: dict[str, Any] | None
    authorization: dict[str, Any] | None
    agency_id: str
    terminal_id: str
    cashier_id: str
    receipt_number: str
    captured_at: str
    captured_offline: bool
    bill: dict[str, Any] | None = None
    notice: str | None = None
    error: str | None = None
    created_at: str = ""
    updated_at: str = ""
    uploaded_at: str | None = None
    seq: int = 0  # the receipt sequence: the number in receipt_number
    # {"by", "from": "terminal_ticket" | "server", "at"} when a person settled an unknown outcome (contract 1.1);
    # kept in that event's detail JSON, so no migration
    settlement: dict[str, Any] | None = None
    # Contract 1.1: stamp duty collected on top of `amount` (cash only), minor units; None when none.
    stamp_duty: int | None = None
    # The captured_at text uploaded by a version before the UTC convention (journal migration 5), else None.
    captured_at_sent: str | None = None
    # card_reader (migration 8): the chip data, {"entry_mode", "tvr", "tsi", "cryptograms", ..., "de55"}; de55 is
    # the final cryptogram's DE55 (hex TLV) uploaded as `emv`. Never a card number, track data or PIN data.
    chip: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Payment:
        data = {k: row[k] for k in _FIELDS}
        for key in ("card", "authorization", "bill", "chip"):
            data[key] = orjson.loads(data[key]) if data[key] else None
        data["captured_offline"] = bool(data["captured_offline"])
        return cls(**data)

    def _evolve(self, changes: dict[str, Any]) -> Payment:
        """A copy with `changes` applied: what dataclasses.replace does, without re-running __init__ over
        twenty fields on the capture path (the fields were checked when this copy was built)."""
        new = object.__new__(Payment)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def summary(self) -> dict[str, Any]:
        """The `guichet pay --json` fields (DESIGN.md)."""
        return {
            "payment_id": self.payment_id,
            "state": self.state,
            "bill_reference": self.bill_reference,
            "amount": self.amount,
            "currency": self.currency,
            "method": self.method,
            "receipt_number": self.receipt_number,
            "captured_offline": self.captured_offline,
        }

    def to_api(self) -> dict[str, Any]:
        """The contract's Payment, as uploaded. Its content never changes once approved (idempotency)."""
        card = None
        if self.card is not None and self.method != "cash":  # the contract: null for cash
            if self.settlement is not None:
                # Settled by a person: the card holds only what a ticket shows, the token when known (1.1).
                card = {k: self.card.get(k) for k in SETTLED_CARD_KEYS}
            else:
                card = {k: self.card.get(k) for k in CARD_KEYS}
        auth = None
        if self.authorization is not None and self.method != "cash":  # the contract: null for cash
            auth = {k: self.authorization.get(k) for k in ("code", "reference", "approved_at")}
        body: dict[str, Any] = {
            "payment_id": self.payment_id,
            "transaction_id": self.transaction_id,
            "bill_reference": self.bill_reference,
            "amount": self.amount,
            "currency": self.currency,
            "method": self.method,
            "card": card,
            "authorization": auth,
            "agency_id": self.agency_id,
            "terminal_id": self.terminal_id,
            "cashier_id": self.cashier_id,
            "receipt_number": self.receipt_number,
            "captured_at": self.captured_at_sent or self.captured_at,
            "captured_offline": self.captured_offline,
        }
        if self.chip is not None and self.method == "card_reader":
            # 1.1: the final cryptogram's chip data (an offline TC is verified from it) and how the card was
            # read; only for payments recorded with their chip data, so an older payment's replay is unchanged.
            body["emv"] = self.chip.get("de55") or None
            if card is not None and self.card is not None and self.card.get("entry_mode"):
                card["entry_mode"] = self.card["entry_mode"]
        if self.stamp_duty is not None:  # 1.1, optional: left out when none, as a 1.0 server expects
            body["stamp_duty"] = self.stamp_duty
        # Only for a card payment a person settled: a 1.0 server refuses the field even when null, and the
        # contract's cash shape has none (who settled a cash payment stays in the journal's audit trail).
        if self.settlement is not None and card is not None:
            body["settlement"] = {k: self.settlement.get(k) for k in ("by", "from", "at")}
        return body


def chip_fault(chip: object) -> str | None:
    """Why `chip` may not be stored (one line naming the field or tag), or None. The journal's edge for chip
    data: a JSON object of at most MAX_CHIP bytes whose `de55` is hex BER-TLV holding none of the kernel's
    secret tags (drivers.emv.tags.SECRET_TAGS: PAN, track data, PIN data (99)), at any depth.

    >>> chip_fault({"tvr": "0000008000", "de55": "9F2701409F36020011"})
    >>> chip_fault({"de55": "5A0862805800000012349F270140"})
    'chip.de55: tag 5A (card number, track or PIN data) is never stored'
    >>> chip_fault({"de55": "9F27"})
    'chip.de55: not BER-TLV (TLV: length of tag 9F27 is missing at byte 2)'
    """
    if not isinstance(chip, dict):
        return f"chip: a JSON object, not {type(chip).__name__}"
    try:
        size = len(orjson.dumps(chip))
    except TypeError as e:
        return f"chip: not JSON ({e})"
    if size > MAX_CHIP:
        return f"chip: {size} bytes, at most {MAX_CHIP}"
    de55 = chip.get("de55", "")
    if not isinstance(de55, str):
        return f"chip.de55: hex text, not {type(de55).__name__}"
    try:
        items = emv_tlv.decode(bytes.fromhex(de55))
    except ValueError as e:  # not hex, or TLVError (a ValueError naming the byte)
        return f"chip.de55: not BER-TLV ({e})"
    for item in emv_tlv.walk(items):
        if item.tag in NEVER_STORED_TAGS:
            return f"chip.de55: tag {item.tag:X} (card number, track or PIN data) is never stored"
    return None


_FIELDS = tuple(f.name for f in dataclasses.fields(Payment))
CARD_KEYS = ("scheme", "pan_masked", "pan_token", "expiry", "aid")
SETTLED_CARD_KEYS = ("scheme", "pan_masked", "pan_token")


@dataclass(frozen=True)
class NewPayment:
    """What the flow asks the journal to create: a bill (its contract fields) and the amount paid on it."""

    bill: dict[str, Any]
    amount: int
    # Cash only: the stamp duty collected on top of `amount` (minor units, same currency), None when none.
    stamp_duty: int | None = None
    # When the amount due this payment relies on was read (an RFC 3339 time with its offset, or an aware
    # datetime): a payment created on the bill since then makes the journal refuse this one (BillBlocked).
    # None: not checked. A wall clock: seen_seq is the sure test.
    seen_at: str | datetime | None = None
    # The journal's receipt counter read with the amount due (Journal.read_bill, one read transaction): a
    # payment taken on the bill with a higher receipt sequence, i.e. committed after that read, makes the
    # journal refuse this one. Commit order, whatever the clocks say. 0: every payment ever taken here counts.
    seen_seq: int | None = None


@dataclass
class QueueStats:
    count: int = 0
    total: dict[str, int] = field(default_factory=dict)
    oldest_captured_at: datetime | None = None
    needs_attention: int = 0
    unknown: int = 0
    # authorizing or unknown: the card may have been charged; offline limits count them too
    in_doubt_count: int = 0
    in_doubt_total: dict[str, int] = field(default_factory=dict)

    def oldest_age(self, now: datetime | None = None) -> float | None:
        if self.oldest_captured_at is None:
            return None
        return ((now or clock.utc_now()) - self.oldest_captured_at).total_seconds()
