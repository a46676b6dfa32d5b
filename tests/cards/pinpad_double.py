"""A PC/SC part 10 control interface test double: a reader with (or without) a PIN pad, in front of the real
connection (pcscd + vpcd cannot emulate a PIN pad).

Like a real reader (CCID ``PC_to_RDR_Secure``), on FEATURE_VERIFY_PIN_DIRECT it reads the PIN_VERIFY_STRUCTURE,
takes the digits "typed" by the customer, writes them into the APDU template at the positions the structure
gives (BCD from ``bmFormatString``, the length nibble per ``bmPINLengthFormat``) and sends the result to the card
over the real connection; it answers the card's response. The PIN never passes through the code under test.

    double = PinPadReader(conn, entries=["0000", "1234"])       # a wrong PIN, then the right one
    PinPad.detect(double)                                     # the feature list says VERIFY_PIN_DIRECT
    PinPadReader(conn, feature=False)                         # a reader without a PIN pad
    PinPadReader(conn, entries=[None])                        # the customer presses Cancel: 6401
"""

from __future__ import annotations

import struct
from typing import Any

from drivers.emv.pinpad import CM_IOCTL_GET_FEATURE_REQUEST, FEATURE_VERIFY_PIN_DIRECT

VERIFY_CODE = 0x42330006  # what a reader's driver would announce for the feature


class PinPadReader:
    def __init__(self, conn: Any, entries: list[str | None] | None = None, *, feature: bool = True) -> None:
        self.conn = conn
        self.entries = list(entries or [])
        self.feature = feature
        self.verifies = 0
        self.structures: list[bytes] = []

    def control(self, code: int, data: bytes) -> bytes:
        if code == CM_IOCTL_GET_FEATURE_REQUEST:
            if not self.feature:
                return b""  # a reader with no part 10 features
            return bytes([FEATURE_VERIFY_PIN_DIRECT, 4]) + VERIFY_CODE.to_bytes(4, "big")
        if code != VERIFY_CODE or not self.feature:
            raise OSError(f"SCardControl({code:#x}): not supported")
        self.structures.append(bytes(data))
        self.verifies += 1
        pin = self.entries.pop(0) if self.entries else None
        if pin is None:
            return b"\x64\x01"  # cancelled on the pad
        return self._send(data, pin)

    def _send(self, s: bytes, pin: str) -> bytes:
        fmt, block, length_fmt = s[2], s[3], s[4]
        (size,) = struct.unpack("<I", s[15:19])
        apdu = bytearray(s[19 : 19 + size])
        assert fmt & 0x80 and fmt & 0x03 == 0x01, "the double only implements byte units, BCD"
        pos = 5 + ((fmt >> 3) & 0x0F)  # after CLA INS P1 P2 Lc
        digits = pin + "F" * ((block & 0x0F) * 2 - len(pin))
        packed = bytes.fromhex(digits)
        apdu[pos : pos + len(packed) - 1] = packed[: len(apdu) - pos]
        bit = length_fmt & 0x0F  # the length nibble, in bits from the start of the data
        byte = 5 + bit // 8
        if bit % 8 == 4:
            apdu[byte] = (apdu[byte] & 0xF0) | len(pin)
        else:
            apdu[byte] = (apdu[byte] & 0x0F) | (len(pin) << 4)
        data, sw = self.conn.transmit(bytes(apdu))
        return data + sw.to_bytes(2, "big")
