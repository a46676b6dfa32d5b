"""Concert V3 / Caisse-AP messages: ``TAG LLL VALUE`` records (two-character tag, three-digit decimal length,
ASCII value), the request of the cash register and the answer of the terminal. Pure functions and frozen
records, shared by the driver (``drivers.concert.v3_link``) and the simulator (``sandbox.tpe.v3_sim``).

>>> req = build_request(123450, "DZD", pos_number="01")
>>> req.encode()
b'CZ0040300CJ012012345678901CA00201CB006123450CD0010CE003012BA0010BF0010'
>>> parse(b"CZ0040300AE00210")
[('CZ', '0300'), ('AE', '10')]
>>> parse(b"CZ0040300AE0x210")
Traceback (most recent call last):
...
drivers.concert.v3_codec.TlvError: byte 11 (tag AE): length '0x2' is not three digits

There is no total length and no end marker: over TCP a message ends where its last record ends. A reader
that has a whole number of records and the status tag (``AE``) has an answer; ``drivers.concert.v3_link`` then
waits a short quiet time for more records, or for the terminal to close the connection.

Sources (the association's specification is not public): akretion/caisse-ap-ip (client and simulator tested
against an Ingenico Desk/5000 with CONCERT V3), OCA l10n_fr_pos_caisse_ap_ip (the Odoo client), PayXpert's
"Concert V3" tag dictionary. See docs/tpe.md for the tags and the choices made where they differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from drivers.concert.fields import ConcertError, currency_numeric
from drivers.concert.fields import check_amount as check_field_amount
from drivers.pan import digits_hold_pan, mask_reported_pan, run_holds_pan

AMOUNT_DIGITS = 12  # CB: variable, 2..12 digits
MAX_AMOUNT = 10**AMOUNT_DIGITS - 1
MAX_VALUE = 999  # the length field has three digits
MAX_MESSAGE = 16384  # bytes: far beyond any real message (a ticket is < 1000); a longer run is not ours

DEFAULT_VERSION = "0300"  # CZ: akretion/Odoo send 0300; PayXpert documents 0320
DEFAULT_PROTOCOL_ID = "012345678901"  # CJ: the "IPC" the association issues; akretion/Odoo send this one
DEFAULT_PORT = 8888

ACTION_DEBIT, ACTION_CREDIT = "0", "1"  # CD
ANSWER_AT_END, ANSWER_IMMEDIATE = "0", "1"  # BA
PARTIAL_REFUSED = "0"  # BF

STATUS_DONE, STATUS_NOT_DONE, STATUS_TAKEN = "10", "01", "11"  # AE
# AF, the reason that goes with AE=01 (labels from the Odoo client, which has them from the specification).
REASONS = {
    "00": "unknown",
    "01": "transaction authorised",
    "02": "call the issuer (voice authorisation)",
    "03": "forced",
    "04": "refused",
    "05": "forbidden",
    "06": "abandoned",
    "07": "not completed",
    "08": "input time-out",
    "09": "message format error",
    "10": "selection error",
    "11": "cancelled by the operator",
    "12": "unknown action type",
    "13": "currency not supported",
}
REASON_FORMAT_ERROR = "09"

MANDATORY_REQUEST = ("CZ", "CJ", "CA", "CB", "CD", "CE")

# What an answer's free fields may hold once read (PayXpert's dictionary: AC at most 10; CF is ours to bound).
AUTH_CODE = re.compile(r"[0-9A-Za-z]{1,10}")
MAX_PRIVATE = 32

_TAG = re.compile(rb"[A-Z0-9]{2}")


class TlvError(ConcertError):
    """Bytes that are not ``TAG LLL VALUE`` records; names the byte offset and the tag at fault."""

    def __init__(self, offset: int, tag: str | None, reason: str) -> None:
        self.offset = offset
        self.tag = tag
        where = f"byte {offset}" + (f" (tag {tag})" if tag else "")
        super().__init__(f"{where}: {reason}")


def parse_prefix(data: bytes) -> tuple[list[tuple[str, str]], int]:
    """The complete records at the start of ``data`` and the offset where they end.

    Strict about what is there (TlvError on a bad tag, length or value byte, or a repeated tag); a record cut
    short at the end is not an error here: more bytes may come (``parse`` refuses it).

    >>> parse_prefix(b"CZ0040300AE0021")
    ([('CZ', '0300')], 9)
    """
    records: list[tuple[str, str]] = []
    seen: set[str] = set()
    i = 0
    n = len(data)
    while i < n:
        if n - i < 2:
            return records, i
        raw_tag = data[i : i + 2]
        if not _TAG.fullmatch(raw_tag):
            raise TlvError(i, None, f"tag {raw_tag!r} is not two capital letters or digits")
        tag = raw_tag.decode("ascii")
        if n - i < 5:
            part = data[i + 2 : n]
            if part and not part.isdigit():
                raise TlvError(i + 2, tag, f"length {part.decode('latin-1')!r} is not three digits")
            return records, i
        raw_len = data[i + 2 : i + 5]
        if not raw_len.isdigit():
            raise TlvError(i + 2, tag, f"length {raw_len.decode('latin-1')!r} is not three digits")
        length = int(raw_len)
        if length == 0:
            raise TlvError(i + 2, tag, "length 000: a value has at least one character")
        value = data[i + 5 : i + 5 + length]
        for j, b in enumerate(value):
            if not 0x20 <= b <= 0x7E:
                raise TlvError(i + 5 + j, tag, f"value byte is 0x{b:02x}; values are printable ASCII")
        if len(value) < length:
            return records, i
        if tag in seen:
            raise TlvError(i, tag, "tag repeated")
        seen.add(tag)
        records.append((tag, value.decode("ascii")))
        i += 5 + length
    return records, i


def parse(data: bytes) -> list[tuple[str, str]]:
    """Every record of ``data``, in order; TlvError names the offset and tag if it is not exactly records."""
    records, end = parse_prefix(data)
    if end != len(data):
        tag = data[end : end + 2].decode("latin-1")
        have = len(data) - end - 5
        raise TlvError(end, tag, f"truncated: {len(data) - end} bytes left, the record needs more"
                       + (f" (length {data[end + 2:end + 5].decode('ascii')}, {max(have, 0)} value bytes)"
                          if len(data) - end >= 5 else ""))
    return records


def encode(records: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    """``TAG LLL VALUE`` records, ``CZ`` first when present (the other tags keep their order).

    >>> encode({"CA": "01", "CZ": "0300"})
    b'CZ0040300CA00201'
    """
    items = list(records.items() if isinstance(records, Mapping) else records)
    items.sort(key=lambda kv: kv[0] != "CZ")  # stable: only moves CZ to the front
    out = bytearray()
    seen: set[str] = set()
    for tag, value in items:
        raw_tag = tag.encode("ascii", "replace")
        if not _TAG.fullmatch(raw_tag):
            raise TlvError(len(out), None, f"tag {tag!r} is not two capital letters or digits")
        if tag in seen:
            raise TlvError(len(out), tag, "tag repeated")
        seen.add(tag)
        if not 1 <= len(value) <= MAX_VALUE:
            raise TlvError(len(out), tag, f"value of {len(value)} characters; 1..{MAX_VALUE} fit the length field")
        if not (value.isascii() and value.isprintable()):
            raise TlvError(len(out), tag, "value is not printable ASCII")
        raw = value.encode("ascii")
        out += raw_tag + b"%03d" % len(raw) + raw
    return bytes(out)


def check_amount(amount: object) -> int:
    """The amount as it will go in ``CB``, or AmountError saying why it cannot (before anything is sent)."""
    return check_field_amount(amount, AMOUNT_DIGITS, "the Caisse-AP amount field (CB)")


def _need(tags: Mapping[str, str], tag: str, pattern: str, what: str) -> str:
    value = tags.get(tag)
    if value is None:
        raise TlvError(0, tag, f"missing ({what})")
    if not re.fullmatch(pattern, value):
        raise TlvError(0, tag, f"{value!r} is not {what}")
    return value


def _amount(tags: Mapping[str, str]) -> int:
    return int(_need(tags, "CB", r"\d{1,12}", "1 to 12 digits of minor units"))


@dataclass(frozen=True)
class V3Request:
    """The cash register's request: a debit of ``amount`` minor units, answer at the end of the transaction."""

    pos_number: str
    amount: int
    currency_numeric: str
    action: str = ACTION_DEBIT
    version: str = DEFAULT_VERSION
    protocol_id: str = DEFAULT_PROTOCOL_ID
    answer_delay: str = ANSWER_AT_END
    partial: str = PARTIAL_REFUSED

    def tags(self) -> dict[str, str]:
        check_amount(self.amount)
        for value, pattern, what in (
            (self.pos_number, r"\d{2}", "pos_number: two digits"),
            (self.currency_numeric, r"\d{3}", "currency: three digits"),
            (self.version, r"\d{4}", "version (CZ): four digits"),
            (self.protocol_id, r"[ -~]{12}", "protocol id (CJ): twelve characters"),
        ):
            if not re.fullmatch(pattern, value):
                raise ConcertError(f"{what}, got {value!r}")
        return {
            "CZ": self.version,
            "CJ": self.protocol_id,
            "CA": self.pos_number,
            "CB": f"{self.amount:02d}",
            "CD": self.action,
            "CE": self.currency_numeric,
            "BA": self.answer_delay,
            "BF": self.partial,
        }

    def encode(self) -> bytes:
        return encode(self.tags())

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> V3Request:
        """The terminal's reading of a request (the simulator): the mandatory tags, strictly."""
        return cls(
            version=_need(tags, "CZ", r"\d{4}", "four digits"),
            protocol_id=_need(tags, "CJ", r".{12}", "twelve characters"),
            pos_number=_need(tags, "CA", r"\d{2}", "two digits"),
            amount=_amount(tags),
            action=_need(tags, "CD", r"[0-9A-Z]", "one character"),
            currency_numeric=_need(tags, "CE", r"\d{3}", "three digits"),
            answer_delay=tags.get("BA", ANSWER_AT_END),
            partial=tags.get("BF", PARTIAL_REFUSED),
        )

    @classmethod
    def decode(cls, data: bytes) -> V3Request:
        return cls.from_tags(dict(parse(data)))


def build_request(
    amount: int,
    currency_code: str,
    *,
    pos_number: str = "01",
    version: str = DEFAULT_VERSION,
    protocol_id: str = DEFAULT_PROTOCOL_ID,
) -> V3Request:
    """A debit request, checked completely (AmountError/ConcertError) before anything is sent."""
    req = V3Request(
        pos_number=pos_number,
        amount=check_amount(amount),
        currency_numeric=currency_numeric(currency_code),
        version=version,
        protocol_id=protocol_id,
    )
    req.encode()
    return req


AID = re.compile(r"[AD][0-9A-F]{9,31}")  # 5 to 16 bytes; a registered RID starts with A (or D, national)


def check_fields(tags: Mapping[str, str]) -> tuple[dict[str, str], tuple[str, ...], tuple[str, ...]]:
    """The answer's free fields as they may be kept, what was wrong with the others (one line each, naming the
    tag, never its value) and the tags dropped. A field that fails is dropped whole, never kept in part.

    A card number hides in any separators or across two fields: ``AC``, ``CF`` and the two together are judged
    by their digits alone (``drivers.pan.digits_hold_pan``). ``AF`` keeps its first two characters (the reason)
    when they are digits: terminals may follow them with a label. ``AI`` must look like an AID.

    >>> check_fields({"AC": "A1B2C3", "CF": "ref 0000000001", "AF": "04 refused"})
    ({'AC': 'A1B2C3', 'CF': 'ref 0000000001', 'AF': '04', 'CD': '', 'AI': ''}, (), ())
    >>> check_fields({"AC": "4111111111111111"})[1]
    ('authorisation code (AC): 16 characters, expected 1 to 10 letters or digits',)
    >>> check_fields({"CF": "4761.7390.0101.0010"})[1:]
    (('private data (CF): holds a card number',), ('CF',))
    """
    kept: dict[str, str] = {}
    problems: list[str] = []
    dropped: list[str] = []

    def drop(tag: str, problem: str) -> None:
        problems.append(problem)
        dropped.append(tag)
        kept[tag] = ""

    kept["AC"] = code = tags.get("AC", "").strip()
    if code and not AUTH_CODE.fullmatch(code):
        drop("AC", f"authorisation code (AC): {len(code)} characters, expected 1 to 10 letters or digits")
    kept["CF"] = private = tags.get("CF", "").strip()
    if len(private) > MAX_PRIVATE:
        drop("CF", f"private data (CF): {len(private)} characters, at most {MAX_PRIVATE}")
    elif digits_hold_pan(private):
        drop("CF", "private data (CF): holds a card number")
    if kept["AC"] and kept["CF"] and (digits_hold_pan(kept["AC"] + kept["CF"])
                                      or digits_hold_pan(kept["CF"] + kept["AC"])):
        drop("AC", "authorisation code and private data (AC+CF): together they hold a card number")
        dropped.append("CF")
        kept["CF"] = ""
    reason = tags.get("AF", "")
    kept["AF"] = reason[:2]
    if reason and not re.fullmatch(r"\d{2}", reason[:2]):
        drop("AF", f"reason (AF): {len(reason)} characters, does not start with two digits")
    kept["CD"] = action = tags.get("CD", "")
    if action and not re.fullmatch(r"[0-9A-Z]", action):
        drop("CD", f"action (CD): {len(action)} characters, expected one letter or digit")
    kept["AI"] = aid = tags.get("AI", "")
    if aid and not AID.fullmatch(aid):
        drop("AI", f"application id (AI): {len(aid)} characters, expected 10 to 32 hex digits starting A or D")
    elif aid and run_holds_pan(aid):
        drop("AI", "application id (AI): holds a card number")
    if "AA" in tags and mask_reported_pan(tags["AA"]) is None:
        problems.append(f"card number (AA): {len(tags['AA'])} characters, not a masked card number")
        dropped.append("AA")
    return kept, tuple(problems), tuple(dropped)


@dataclass(frozen=True)
class V3Response:
    """The terminal's answer. ``AA`` is masked inside ``decode`` and the raw value never kept; ``AB`` (expiry)
    and ticket data are not kept either. Attribute names follow the E+ ``Response`` where they mean the same.

    Free fields (``AC``, ``CF``, ``AF``, ``CD``) are checked and scrubbed by :func:`check_fields`: what fails is
    dropped and named in ``problems``; the link makes an approval with problems unknown (money may have moved
    and the record would be incomplete), and keeps any other outcome without the dropped fields."""

    version: str
    pos_number: str
    status: str  # AE: 10 done, 01 not done, 11 taken (immediate answer)
    currency_numeric: str
    amount: int | None = None
    reason: str = ""  # AF
    action: str = ""
    private: str = ""  # CF
    auth_code: str = ""  # AC
    pan_masked: str | None = None
    aid: str | None = None
    extended: bool = True  # E+ compatibility: a V3 answer always says whether a card was read
    problems: tuple[str, ...] = ()  # fields dropped by check_fields, one line each (no values)
    dropped: tuple[str, ...] = ()  # the tags of those fields

    @property
    def approved(self) -> bool:
        return self.status == STATUS_DONE

    @property
    def card_presented(self) -> bool:
        return self.pan_masked is not None

    @property
    def reason_label(self) -> str:
        return REASONS.get(self.reason, f"reason {self.reason}" if self.reason else "no reason given")

    @classmethod
    def from_records(cls, records: list[tuple[str, str]]) -> V3Response:
        if not records or records[0][0] != "CZ":
            raise TlvError(0, records[0][0] if records else None, "an answer starts with CZ (the version)")
        tags = dict(records)
        amount = _amount(tags) if "CB" in tags else None
        kept, problems, dropped = check_fields(tags)
        return cls(
            version=_need(tags, "CZ", r"\d{4}", "four digits"),
            pos_number=_need(tags, "CA", r"\d{2}", "two digits"),
            status=_need(tags, "AE", r"\d{2}", "two digits (status of the action)"),
            currency_numeric=_need(tags, "CE", r"\d{3}", "three digits"),
            amount=amount,
            reason=kept["AF"],
            action=kept["CD"],
            private=kept["CF"],
            auth_code=kept["AC"],
            pan_masked=mask_reported_pan(tags["AA"]) if "AA" in tags else None,
            aid=kept["AI"] or None,
            problems=problems,
            dropped=dropped,
        )

    @classmethod
    def decode(cls, data: bytes) -> V3Response:
        return cls.from_records(parse(data))


def encode_response(
    request: V3Request, *, status: str, reason: str = "", extra: Mapping[str, str] | None = None
) -> bytes:
    """An answer to ``request`` (the simulator's side): the request's tags echoed, ``AE``/``AF``, ``extra``."""
    tags: dict[str, str] = {
        "CZ": request.version,
        "CA": request.pos_number,
        "CB": f"{request.amount:02d}",
        "CD": request.action,
        "CE": request.currency_numeric,
        "AE": status,
    }
    if reason:
        tags["AF"] = reason
    tags.update(extra or {})
    return encode(tags)
