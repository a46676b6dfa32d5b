"""Terminal Verification Results (95) and Transaction Status Information (9B): EMV Book 3 annex C5/C6, one home;
and the contactless qualifier bits (Visa CL kernel 3): the TTQ the terminal sends (9F66, :func:`ttq`, the one home
of its rule: ``drivers.emv.reader.Terminal`` and the kernel both take it from here) and the CTQ a card answers (9F6C).

>>> tvr = Tvr()
>>> tvr.set(ODA_NOT_PERFORMED); tvr.set(EXCEEDS_FLOOR_LIMIT)
>>> tvr.hex()
'8000008000'
>>> tvr.has(EXCEEDS_FLOOR_LIMIT), tvr.names()
(True, ['offline data authentication not performed', 'transaction exceeds floor limit'])
>>> tsi = Tsi(); tsi.set(TSI_ODA); tsi.hex()
'8000'
"""

from __future__ import annotations

from typing import NamedTuple


class Bit(NamedTuple):
    byte: int  # 0-based
    mask: int
    name: str


# TVR byte 1: offline data authentication
ODA_NOT_PERFORMED = Bit(0, 0x80, "offline data authentication not performed")
SDA_FAILED = Bit(0, 0x40, "SDA failed")
ICC_DATA_MISSING = Bit(0, 0x20, "ICC data missing")
CARD_ON_EXCEPTION_FILE = Bit(0, 0x10, "card appears on terminal exception file")
DDA_FAILED = Bit(0, 0x08, "DDA failed")
CDA_FAILED = Bit(0, 0x04, "CDA failed")
# byte 2: processing restrictions
VERSIONS_DIFFER = Bit(1, 0x80, "ICC and terminal have different application versions")
EXPIRED = Bit(1, 0x40, "expired application")
NOT_YET_EFFECTIVE = Bit(1, 0x20, "application not yet effective")
SERVICE_NOT_ALLOWED = Bit(1, 0x10, "requested service not allowed for card product")
NEW_CARD = Bit(1, 0x08, "new card")
# byte 3: cardholder verification
CVM_FAILED = Bit(2, 0x80, "cardholder verification was not successful")
UNRECOGNISED_CVM = Bit(2, 0x40, "unrecognised CVM")
PIN_TRY_LIMIT_EXCEEDED = Bit(2, 0x20, "PIN try limit exceeded")
PIN_PAD_MISSING = Bit(2, 0x10, "PIN entry required and PIN pad not present or not working")
PIN_NOT_ENTERED = Bit(2, 0x08, "PIN entry required, PIN pad present, but PIN was not entered")
ONLINE_PIN_ENTERED = Bit(2, 0x04, "online PIN entered")
# byte 4: terminal risk management
EXCEEDS_FLOOR_LIMIT = Bit(3, 0x80, "transaction exceeds floor limit")
LCOL_EXCEEDED = Bit(3, 0x40, "lower consecutive offline limit exceeded")
UCOL_EXCEEDED = Bit(3, 0x20, "upper consecutive offline limit exceeded")
RANDOMLY_SELECTED = Bit(3, 0x10, "transaction selected randomly for online processing")
MERCHANT_FORCED_ONLINE = Bit(3, 0x08, "merchant forced transaction online")
# byte 5: completion
DEFAULT_TDOL_USED = Bit(4, 0x80, "default TDOL used")
ISSUER_AUTH_FAILED = Bit(4, 0x40, "issuer authentication failed")
SCRIPT_FAILED_BEFORE = Bit(4, 0x20, "script processing failed before final GENERATE AC")
SCRIPT_FAILED_AFTER = Bit(4, 0x10, "script processing failed after final GENERATE AC")

TVR_BITS = [v for v in list(globals().values()) if isinstance(v, Bit)]

TSI_ODA = Bit(0, 0x80, "offline data authentication was performed")
TSI_CVM = Bit(0, 0x40, "cardholder verification was performed")
TSI_CARD_RISK = Bit(0, 0x20, "card risk management was performed")
TSI_ISSUER_AUTH = Bit(0, 0x10, "issuer authentication was performed")
TSI_TERMINAL_RISK = Bit(0, 0x08, "terminal risk management was performed")
TSI_SCRIPTS = Bit(0, 0x04, "script processing was performed")
TSI_BITS = [TSI_ODA, TSI_CVM, TSI_CARD_RISK, TSI_ISSUER_AUTH, TSI_TERMINAL_RISK, TSI_SCRIPTS]


class _Bits:
    size = 0
    known: list[Bit] = []

    def __init__(self, raw: bytes | None = None) -> None:
        self.raw = bytearray(raw if raw is not None else bytes(self.size))
        if len(self.raw) != self.size:
            raise ValueError(f"{type(self).__name__} is {self.size} bytes, not {len(self.raw)}")

    def set(self, bit: Bit) -> None:
        self.raw[bit.byte] |= bit.mask

    def has(self, bit: Bit) -> bool:
        return bool(self.raw[bit.byte] & bit.mask)

    def hex(self) -> str:
        return self.raw.hex().upper()

    def __bytes__(self) -> bytes:
        return bytes(self.raw)

    def names(self) -> list[str]:
        return [b.name for b in self.known if self.has(b)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()})"


class Tvr(_Bits):
    size = 5
    known = TVR_BITS


class Tsi(_Bits):
    size = 2
    known = TSI_BITS


# CTQ (9F6C) byte 1: the card asks for online PIN (b8) or a signature (b7); byte 2 b8: the consumer device verified
# the cardholder (CDCVM) (Visa CL kernel 3).
CTQ_ONLINE_PIN = 0x80
CTQ_SIGNATURE = 0x40
CTQ_CDCVM = 0x80
# TTQ (9F66, Visa CL kernel 3): byte 1 qVSDC + contact chip + signature (no online PIN: that is the TPE's);
# byte 2 b8 online cryptogram required, b7 CVM required (set from the CVM limit); byte 3 b7 CDCVM supported.
TTQ_BASE = bytes.fromhex("32804000")
TTQ_ONLINE_CRYPTOGRAM = 0x80
TTQ_CVM_REQUIRED = 0x40


def ttq(amount: int, cvm_limit: int, cl_floor_limit: int = 0, *, offline_ok: bool = False) -> bytes:
    """The TTQ for a tap of `amount` (minor units) under the selected scheme's contactless CVM limit (0: none).

    "Online cryptogram required" (byte 2 b8) is cleared only when the agent would take an offline approval of
    this amount (`offline_ok`: the server not reachable and its [offline] limits take it) and the amount is
    below the scheme's contactless floor limit (0: no offline tap at all); then a qVSDC card may answer a TC with
    fDDA. Everything else demands online, and no TTQ ever claims online PIN.

    >>> ttq(345600, 0).hex().upper(), ttq(345600, 345600).hex().upper()
    ('32804000', '32C04000')
    >>> ttq(5000, 0, 10000, offline_ok=True).hex().upper()     # offline, under the floor limit: a TC is welcome
    '32004000'
    >>> [ttq(a, 0, f, offline_ok=o).hex().upper() for a, f, o in ((10000, 10000, True), (5000, 0, True),
    ...                                                            (5000, 10000, False))]
    ['32804000', '32804000', '32804000']
    """
    out = bytearray(TTQ_BASE)
    if cvm_limit and amount >= cvm_limit:
        out[1] |= TTQ_CVM_REQUIRED
    if offline_ok and cl_floor_limit and amount < cl_floor_limit:
        out[1] &= ~TTQ_ONLINE_CRYPTOGRAM & 0xFF
    return bytes(out)
