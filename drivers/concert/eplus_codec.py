"""Concert E+ framing: control bytes, LRC, ``STX payload ETX LRC`` frames, request and response records.

Pure functions and frozen records, shared by the driver (``drivers.concert.eplus_link``) and the E+ simulator
(``sandbox.tpe.eplus_sim``).

>>> req = build_request(123450, "DZD", pos_number="01")
>>> frame = encode_frame(req.encode())
>>> frame[:1] == bytes([STX]) and frame[-2] == ETX
True
>>> Request.decode(decode_frame(frame)).amount
123450
>>> build_request(100_000_000, "DZD")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
drivers.concert.fields.AmountError: amount: 100000000 has 9 digits; the Concert amount field holds 8 ...

Amounts are integers in minor units; the currency goes as its ISO 4217 numeric code (DZD 012, TND 788), so
12.345 TND is sent as ``00012345`` + ``788``, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import xor

from drivers.concert.fields import ConcertError, currency_numeric
from drivers.concert.fields import check_amount as check_field_amount
from drivers.pan import digits_hold_pan, mask_reported_pan

STX, ETX, EOT, ENQ, ACK, NAK = 0x02, 0x03, 0x04, 0x05, 0x06, 0x15

AMOUNT_DIGITS = 8
MAX_AMOUNT = 10**AMOUNT_DIGITS - 1
REQUEST_LENGTH = 34  # payload bytes, without STX/ETX/LRC
RESPONSE_LENGTH = 25  # short answer
RESPONSE_EXTENDED_LENGTH = 80  # with the 55-character report
REPORT_LENGTH = 55

ANSWER_SHORT, ANSWER_EXTENDED = "0", "1"
MODE_CARD = "1"
TYPE_DEBIT, TYPE_CREDIT, TYPE_REFUND = "0", "1", "2"
DELAY_END_OF_TRANSACTION, DELAY_IMMEDIATE = "A010", "A011"
AUTH_NORMAL, AUTH_FORCED = "B010", "B011"
STATUS_APPROVED, STATUS_REFUSED = "0", "7"


class FrameError(ConcertError):
    """A frame that is not ``STX payload ETX LRC`` or whose payload does not parse."""


class LrcError(FrameError):
    """A frame whose LRC does not match: answered with NAK."""


def lrc(data: bytes) -> int:
    """XOR of ``data``: pass the bytes after STX up to and including ETX.

    >>> hex(lrc(b"01" + bytes([ETX])))
    '0x2'
    """
    return reduce(xor, data, 0)


def _check_payload(payload: bytes) -> None:
    for i, b in enumerate(payload):
        if not 0x20 <= b <= 0x7E:
            raise FrameError(f"payload byte {i} is 0x{b:02x}; a Concert payload is printable ASCII")


def encode_frame(payload: bytes) -> bytes:
    """``STX payload ETX LRC``; the payload must be printable ASCII (it cannot hold a control byte)."""
    _check_payload(payload)
    body = payload + bytes([ETX])
    return bytes([STX]) + body + bytes([lrc(body)])


def decode_frame(frame: bytes) -> bytes:
    """The payload of ``STX payload ETX LRC``; FrameError/LrcError name the byte at fault."""
    if len(frame) < 3:
        raise FrameError(f"frame of {len(frame)} bytes is too short (STX, ETX and LRC at least)")
    if frame[0] != STX:
        raise FrameError(f"frame byte 0 is 0x{frame[0]:02x}, expected STX (0x02)")
    if frame[-2] != ETX:
        raise FrameError(f"frame byte {len(frame) - 2} is 0x{frame[-2]:02x}, expected ETX (0x03)")
    expected = lrc(frame[1:-1])
    if frame[-1] != expected:
        raise LrcError(f"LRC byte is 0x{frame[-1]:02x}, computed 0x{expected:02x}")
    payload = frame[1:-2]
    _check_payload(payload)
    return payload


def check_amount(amount: object) -> int:
    """The amount as it will go in the 8-digit field, or AmountError saying why it cannot (before anything is sent)."""
    return check_field_amount(amount, AMOUNT_DIGITS, "the Concert amount field")


def _digits(value: str, width: int, name: str) -> str:
    if len(value) != width or not value.isdigit():
        raise FrameError(f"{name}: {value!r} is not {width} digits")
    return value


@dataclass(frozen=True)
class Request:
    """The cash register's E+ request (34 characters)."""

    pos_number: str
    amount: int
    currency_numeric: str
    answer_flag: str = ANSWER_EXTENDED
    payment_mode: str = MODE_CARD
    transaction_type: str = TYPE_DEBIT
    private: str = " " * 10
    delay: str = DELAY_END_OF_TRANSACTION
    authorization: str = AUTH_NORMAL

    def encode(self) -> bytes:
        check_amount(self.amount)
        _digits(self.pos_number, 2, "pos_number")
        _digits(self.currency_numeric, 3, "currency")
        if len(self.private) != 10:
            raise FrameError(f"private: {self.private!r} is not 10 characters")
        text = (
            f"{self.pos_number}{self.amount:0{AMOUNT_DIGITS}d}{self.answer_flag}{self.payment_mode}"
            f"{self.transaction_type}{self.currency_numeric}{self.private}{self.delay}{self.authorization}"
        )
        if len(text) != REQUEST_LENGTH:
            raise FrameError(f"request is {len(text)} characters, expected {REQUEST_LENGTH}")
        data = text.encode("ascii")
        _check_payload(data)
        return data

    @classmethod
    def decode(cls, payload: bytes) -> Request:
        if len(payload) != REQUEST_LENGTH:
            raise FrameError(f"request payload is {len(payload)} bytes, expected {REQUEST_LENGTH}")
        _check_payload(payload)
        t = payload.decode("ascii")
        return cls(
            pos_number=_digits(t[0:2], 2, "pos_number"),
            amount=int(_digits(t[2:10], 8, "amount")),
            answer_flag=t[10],
            payment_mode=t[11],
            transaction_type=t[12],
            currency_numeric=_digits(t[13:16], 3, "currency"),
            private=t[16:26],
            delay=t[26:30],
            authorization=t[30:34],
        )


def build_request(amount: int, currency_code: str, *, pos_number: str = "01") -> Request:
    """A debit request for ``amount`` minor units, checked completely (AmountError/ConcertError) before use."""
    req = Request(pos_number=pos_number, amount=check_amount(amount), currency_numeric=currency_numeric(currency_code))
    req.encode()
    return req


def pan_from_report(report: str) -> str | None:
    """The masked PAN in a 55-character report: real terminals may put the full PAN there, so it is masked
    (``drivers.pan.mask_reported_pan``, shared with V3's ``AA``).

    >>> pan_from_report("6280580000001234 2812" + " " * 34)
    '628058******1234'
    >>> pan_from_report(" " * 55) is None
    True
    """
    token = report.strip().split(" ", 1)[0] if report.strip() else ""
    return mask_reported_pan(token)


@dataclass(frozen=True)
class Response:
    """The terminal's answer. The raw report never leaves ``decode``: only the masked PAN is kept."""

    pos_number: str
    status: str
    amount: int
    payment_mode: str
    currency_numeric: str
    private: str
    extended: bool
    pan_masked: str | None = None
    card_presented: bool = False  # the report named a card (approved/refused) rather than nothing (abandon)

    @property
    def approved(self) -> bool:
        return self.status == STATUS_APPROVED

    @property
    def auth_code(self) -> str:
        """E+ has no authorisation-number field: terminals put it in the private data."""
        return self.private.strip()

    @property
    def reason(self) -> str:
        return ""

    @property
    def problems(self) -> tuple[str, ...]:
        """Fields dropped on reading (V3 has some); an E+ answer is fixed-width printable ASCII: none."""
        return ()

    @property
    def aid(self) -> str | None:
        return None

    @classmethod
    def decode(cls, payload: bytes) -> Response:
        _check_payload(payload)
        t = payload.decode("ascii")
        if len(t) == RESPONSE_EXTENDED_LENGTH:
            report, cur, private = t[12:67], t[67:70], t[70:80]
        elif len(t) == RESPONSE_LENGTH:
            report, cur, private = "", t[12:15], t[15:25]
        else:
            raise FrameError(
                f"answer payload is {len(t)} bytes, expected {RESPONSE_LENGTH} or {RESPONSE_EXTENDED_LENGTH}"
            )
        status = t[2]
        if not status.isdigit():
            raise FrameError(f"status: {status!r} is not a digit")
        return cls(
            pos_number=_digits(t[0:2], 2, "pos_number"),
            status=status,
            amount=int(_digits(t[3:11], 8, "amount")),
            payment_mode=t[11],
            currency_numeric=_digits(cur, 3, "currency"),
            # 10 characters cannot hold a card number; judged by the rule of every terminal free field all the same
            private="" if digits_hold_pan(private) else private,
            extended=len(t) == RESPONSE_EXTENDED_LENGTH,
            pan_masked=pan_from_report(report),
            card_presented=bool(report.strip()),
        )


def encode_response(
    *,
    pos_number: str,
    status: str,
    amount: int,
    currency_numeric: str,
    report: str | None,
    payment_mode: str = MODE_CARD,
    private: str = " " * 10,
) -> bytes:
    """An answer payload (the simulator's side). ``report=None`` gives the short answer."""
    if report is not None and len(report) > REPORT_LENGTH:
        raise FrameError(f"report is {len(report)} characters, at most {REPORT_LENGTH}")
    text = (
        f"{pos_number}{status}{amount:0{AMOUNT_DIGITS}d}{payment_mode}"
        + ("" if report is None else report.ljust(REPORT_LENGTH))
        + f"{currency_numeric}{private.ljust(10)[:10]}"
    )
    data = text.encode("ascii")
    _check_payload(data)
    return data
