"""The reader's own PIN pad, PC/SC part 10 ``FEATURE_VERIFY_PIN_DIRECT``: the customer types the PIN on the
reader, the reader builds the VERIFY command from our template and sends it to the card. The PIN never passes
through this process (EMV Book 3 10.5.1, offline plaintext PIN; PIN block format 2).

    pad = PinPad.detect(PcscControl(conn))     # None: the reader has no PIN pad (or says so)
    sw = pad.verify(timeout=30)                # the card's answer: 9000, 63Cx, 6983 ...; 6400 timeout, 6401 cancel

A transport for this module has ``control(code, data) -> bytes`` (SCardControl); the tests drive a double that
behaves like a reader with (and without) the feature, since vpcd emulates no PIN pad.

>>> s = verify_structure(timeout=30)
>>> s[:5].hex(), s[-13:].hex()
('1e1e894704', '002000800820ffffffffffffff')
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

CM_IOCTL_GET_FEATURE_REQUEST = 0x42000000 + 3400  # SCARD_CTL_CODE(3400) on pcsc-lite
FEATURE_VERIFY_PIN_DIRECT = 0x06
# VERIFY, P2 80 (plaintext PIN), 8 bytes: PIN block format 2 = 2L PPPP... FF padding (Book 3 6.5.12)
VERIFY_TEMPLATE = bytes.fromhex("0020008008" "20FFFFFFFFFFFFFF")
SW_TIMEOUT = 0x6400
SW_CANCELLED = 0x6401


class PinPadError(Exception):
    """The PIN pad could not be used (control call failed, malformed feature list)."""


class ControlTransport(Protocol):
    def control(self, code: int, data: bytes) -> bytes: ...


def parse_features(raw: bytes) -> dict[int, int]:
    """The GET_FEATURE_REQUEST answer: TLVs of tag (1), length 4, control code (big-endian)."""
    out: dict[int, int] = {}
    pos = 0
    while pos + 2 <= len(raw):
        tag, length = raw[pos], raw[pos + 1]
        value = raw[pos + 2 : pos + 2 + length]
        if length != 4 or len(value) != 4:
            raise PinPadError(f"the reader's feature list is malformed at byte {pos}")
        out[tag] = int.from_bytes(value, "big")
        pos += 2 + length
    if pos != len(raw):
        raise PinPadError(f"the reader's feature list is malformed at byte {pos}")
    return out


def verify_structure(timeout: int) -> bytes:
    """PIN_VERIFY_STRUCTURE (PC/SC part 10 2.5.2) for an EMV plaintext PIN, format 2 block, 4 to 12 digits."""
    t = max(1, min(timeout, 255))
    return (
        bytes([t, t])
        + bytes([0x89])  # bmFormatString: byte units, PIN at data byte 1, right after the control nibble; BCD
        + bytes([0x47])  # bmPINBlockString: PIN length in 4 bits, an 8-byte block
        + bytes([0x04])  # bmPINLengthFormat: the length nibble 4 bits into the data
        + struct.pack("<H", 0x040C)  # wPINMaxExtraDigit: 4 to 12 digits
        + bytes([0x02])  # bEntryValidationCondition: the OK key
        + bytes([0x01])  # bNumberMessage
        + struct.pack("<H", 0x0409)  # wLangId
        + bytes([0x00])  # bMsgIndex
        + bytes(3)  # bTeoPrologue
        + struct.pack("<I", len(VERIFY_TEMPLATE))
        + VERIFY_TEMPLATE
    )


class PinPad:
    def __init__(self, transport: ControlTransport, code: int) -> None:
        self.transport = transport
        self.code = code

    @classmethod
    def detect(cls, transport: ControlTransport | None) -> PinPad | None:
        """The reader's PIN pad, or None when the reader lists no FEATURE_VERIFY_PIN_DIRECT (or cannot say)."""
        if transport is None:
            return None
        try:
            feats = parse_features(transport.control(CM_IOCTL_GET_FEATURE_REQUEST, b""))
        except Exception:  # noqa: BLE001 - a reader that cannot list its features has no PIN pad we can use
            return None
        code = feats.get(FEATURE_VERIFY_PIN_DIRECT)
        return cls(transport, code) if code is not None else None

    def verify(self, timeout: int = 30) -> int:
        """The card's status word to the VERIFY the reader built (6400 timeout, 6401 cancelled on the pad)."""
        try:
            answer = self.transport.control(self.code, verify_structure(timeout))
        except Exception as e:  # noqa: BLE001 - any failure of the pad is one typed error
            raise PinPadError(f"the reader's PIN pad failed: {type(e).__name__}: {e}") from None
        if len(answer) < 2:
            raise PinPadError(f"the reader's PIN pad answered {len(answer)} byte(s)")
        return (answer[-2] << 8) | answer[-1]


class PcscControl:
    """``control()`` over a ``drivers.pcsc.Connection`` (SCardControl on its card handle)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def control(self, code: int, data: bytes) -> bytes:
        own = getattr(self.conn, "control", None)
        if callable(own):
            return bytes(own(code, data))
        from smartcard.scard import SCARD_S_SUCCESS, SCardControl  # pyscard: only with a real reader

        hcard = self.conn._card  # noqa: SLF001 - drivers.pcsc.Connection has no control() yet (asked for)
        hr, resp = SCardControl(hcard, code, list(data))
        if hr != SCARD_S_SUCCESS:
            raise PinPadError(f"SCardControl({code:#x}) failed ({hr:#x})")
        return bytes(resp)
