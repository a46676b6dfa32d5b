"""The sandbox acquirer's issuer host: it reads the chip data (DE55) of an authorization or of an offline
payment, verifies the ARQC or TC under the test issuer keys (sandbox.issuer, test-keys.md), answers with the
issuer authentication data (91), the authorisation response code (8A) and, when asked, issuer scripts (71/72).

Which CVN: the scheme's entry in ``scheme_cvns`` (CIB and Edahabia CVNs are not public: both default to 18),
else the one 9F10 names (Visa 10/18, Mastercard 16/20). The card keys come from the PAN and 5F34.

>>> from sandbox.issuer import card_keys, cryptogram
>>> tags = example_tags()
>>> tags[0x9F26] = cryptogram(18, card_keys("4761739001010010"), tags)
>>> chip = parse_chip_data(to_hex(tags))
>>> acq = Acquirer()
>>> acq.verify("4761739001010010", "VISA", chip).ok
True
>>> tags[0x9F26] = bytes(8)
>>> acq.verify("4761739001010010", "VISA", parse_chip_data(to_hex(tags))).reason
'9F26: the ARQC does not verify under the issuer keys (CVN 18)'
>>> try:
...     parse_chip_data("9F2608AABB")
... except ChipDataError as e:
...     print(e)
emv: TLV: value of tag 9F26 runs past the end (needs 8 bytes, 2 left) at byte 2
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from config.money import CURRENCIES
from drivers.emv import tlv as T
from drivers.emv.tags import TAGS
from drivers.pan import luhn_valid
from sandbox.issuer import (
    IssuerError,
    card_keys,
    cryptogram,
    cvn_of,
    issuer_authentication_data,
    script_command,
)

log = logging.getLogger(__name__)

MAX_EMV_BYTES = 2048  # the contract's emv is at most 4096 hex digits
MAX_EMV_TAGS = 64
# Cardholder data that never travels in DE55 nor is stored: the tag dictionary's sensitive tags, PIN data (99).
FORBIDDEN = frozenset({t for t, d in TAGS.items() if d.sensitive} | {0x99, 0x9F20})
# Exact lengths (EMV Book 3 annex A) of the DE55 tags we read; others: 1..MAX_VALUE bytes.
LENGTHS: dict[int, tuple[int, int]] = {
    0x9F26: (8, 8), 0x9F27: (1, 1), 0x9F10: (1, 32), 0x9F37: (4, 4), 0x9F36: (2, 2), 0x95: (5, 5), 0x9A: (3, 3),
    0x9C: (1, 1), 0x9F02: (6, 6), 0x9F03: (6, 6), 0x5F2A: (2, 2), 0x82: (2, 2), 0x9F1A: (2, 2), 0x9F34: (3, 3),
    0x9F33: (3, 3), 0x9F35: (1, 1), 0x84: (5, 16), 0x9F09: (2, 2), 0x5F34: (1, 1), 0x9F66: (4, 4),
    0x9F6E: (4, 32), 0x8A: (2, 2), 0x9F41: (2, 4), 0x9F1E: (8, 8),
}  # fmt: skip
BCD = frozenset({0x9F02, 0x9F03, 0x9A, 0x9C, 0x5F2A, 0x9F1A, 0x5F34, 0x9F41})
MAX_VALUE = 252
# What the issuer needs to recompute a cryptogram (every CVN), and what contract 1.1 asks on an authorization.
CRYPTOGRAM_TAGS = (0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x9F03, 0x5F2A, 0x82, 0x9F1A)
AUTHORIZATION_TAGS = (*CRYPTOGRAM_TAGS, 0x9F34, 0x9F33, 0x9F35, 0x84, 0x9F09)
CID_TYPES = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}

# scheme -> CVN, None: from 9F10 (docs/sandbox-server.md). A server option replaces entries.
DEFAULT_SCHEME_CVNS: dict[str, int | None] = {"CIB": 18, "EDAHABIA": 18, "VISA": None, "MASTERCARD": None}

# Amount rules of the sandbox issuer: minor units modulo 100 -> response code (docs/sandbox-server.md).
AMOUNT_CODES = {51: "51", 54: "54", 5: "05", 55: "55", 57: "57", 91: "91"}
AMOUNT_SCRIPTS = 71  # approved, with issuer scripts 71 and 72
AMOUNT_BAD_ARPC = 19  # approved, but the ARPC is wrong (a "bad issuer": the card answers AAC)
CSU_APPROVED = bytes.fromhex("00800000")  # Visa CSU byte 2 bit 8: issuer approves online transaction
CSU_DECLINED = bytes(4)
MAX_KNOWN_CARDS = 10_000


class ChipDataError(ValueError):
    """Malformed, incomplete or forbidden chip data; the message names the tag (``emv: tag 9F36 ...``)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"emv: {message}")


@dataclass(frozen=True)
class ChipData:
    """The DE55 tags of one request, checked: each tag once, lengths per Book 3, no cardholder data."""

    tags: Mapping[int, bytes]

    @property
    def cid(self) -> int:
        return self.tags[0x9F27][0]

    @property
    def cryptogram_type(self) -> str:
        """ARQC, TC or AAC from the CID's top two bits."""
        return CID_TYPES.get(self.cid & 0xC0, "RFU")

    @property
    def pan_sequence(self) -> int | None:
        psn = self.tags.get(0x5F34)
        return None if psn is None else int(psn.hex())

    @property
    def amount(self) -> int:
        return int(self.tags[0x9F02].hex())

    @property
    def currency_numeric(self) -> str:
        return self.tags[0x5F2A].hex()[1:]


def to_hex(tags: Mapping[int, bytes]) -> str:
    """DE55 hex of ``{tag: value}`` (tags in the mapping's order)."""
    return T.encode(T.tlv(t, v) for t, v in tags.items()).hex().upper()


def example_tags() -> dict[int, bytes]:
    """A complete authorization DE55 of a Visa CVN 18 card for 40.00 DZD, without its 9F26 (for examples)."""
    return {
        0x9F27: b"\x80", 0x9F10: bytes.fromhex("06011203A0B800"), 0x9F37: bytes.fromhex("52BF4585"),
        0x9F36: bytes.fromhex("001C"), 0x95: bytes(5), 0x9A: bytes.fromhex("261130"), 0x9C: b"\x00",
        0x9F02: bytes.fromhex("000000004000"), 0x9F03: bytes(6), 0x5F2A: bytes.fromhex("0012"),
        0x82: bytes.fromhex("1800"), 0x9F1A: bytes.fromhex("0012"), 0x9F34: bytes.fromhex("1F0302"),
        0x9F33: bytes.fromhex("E0F8C8"), 0x9F35: b"\x22", 0x84: bytes.fromhex("A0000000031010"),
        0x9F09: bytes.fromhex("008C"), 0x5F34: b"\x00",
    }  # fmt: skip


def _bcd(value: bytes) -> bool:
    return all(b >> 4 <= 9 and b & 0x0F <= 9 for b in value)


def parse_chip_data(text: Any, required: Iterable[int] = AUTHORIZATION_TAGS) -> ChipData:
    """Check the hex DE55 `text` at the edge; :class:`ChipDataError` names the first fault.

    Bounded: at most MAX_EMV_BYTES bytes and MAX_EMV_TAGS tags, each primitive and present once.
    """
    if not isinstance(text, str) or len(text) > 2 * MAX_EMV_BYTES or len(text) % 2:
        raise ChipDataError(f"must be hex TLV of at most {MAX_EMV_BYTES} bytes")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ChipDataError("not hex") from None
    try:
        items = T.decode(raw)
    except T.TLVError as e:
        raise ChipDataError(str(e)) from None
    if len(items) > MAX_EMV_TAGS:
        raise ChipDataError(f"{len(items)} tags, at most {MAX_EMV_TAGS}")
    tags: dict[int, bytes] = {}
    for item in items:
        name = T.tag_name(item.tag)
        if item.tag in FORBIDDEN:
            raise ChipDataError(f"tag {name} is cardholder data and must never be sent")
        if item.constructed:
            raise ChipDataError(f"tag {name} is a template; DE55 holds primitive tags only")
        if item.tag in tags:
            raise ChipDataError(f"tag {name} appears twice")
        low, high = LENGTHS.get(item.tag, (1, MAX_VALUE))
        if not low <= len(item.value) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise ChipDataError(f"tag {name} is {len(item.value)} bytes, expected {want}")
        if item.tag in BCD and not _bcd(item.value):
            raise ChipDataError(f"tag {name} is not numeric (BCD)")
        tags[item.tag] = item.value
    for tag in required:
        if tag not in tags:
            raise ChipDataError(f"tag {T.tag_name(tag)} is missing")
    return ChipData(tags)


def check_against_request(chip: ChipData, amount: int, currency: str) -> None:
    """The cryptogram must cover what is charged: 9F02 is the amount, 5F2A the currency."""
    if chip.amount != amount:
        raise ChipDataError(f"tag 9F02 says {chip.amount}, the request's amount is {amount}")
    expected = CURRENCIES[currency].numeric
    if chip.currency_numeric != expected:
        raise ChipDataError(f"tag 5F2A says {chip.currency_numeric}, the request's currency {currency} is {expected}")


@dataclass(frozen=True)
class Verification:
    """The issuer's check of one cryptogram: ``ok``, the CVN used, and why not (one line) when not."""

    ok: bool
    cvn: int | None
    reason: str = ""

    def record(self, chip: ChipData) -> dict[str, Any]:
        """What the sandbox keeps of it (no key, no PAN)."""
        return {"cvn": self.cvn, "cryptogram_type": chip.cryptogram_type, "atc": chip.tags[0x9F36].hex().upper(),
                "verified": self.ok, "reason": self.reason or None}  # fmt: skip


@dataclass
class IssuerBehaviour:
    """Test switches of the sandbox issuer (``PUT /_sandbox/issuer``, or server options).

    ``bad_arpc``: approvals carry a wrong ARPC (the card answers AAC at its second GENERATE AC).
    ``scripts``: approvals carry issuer scripts 71 (before) and 72 (after the second GENERATE AC).
    ``scheme_cvns``: scheme -> CVN, None = the CVN 9F10 names. To follow a config's scheme rules:
    ``IssuerBehaviour(scheme_cvns=scheme_cvns_from_rules(cfg.cards.schemes))``.
    """

    bad_arpc: bool = False
    scripts: bool = False
    scheme_cvns: dict[str, int | None] = field(default_factory=lambda: dict(DEFAULT_SCHEME_CVNS))

    def status(self) -> dict[str, Any]:
        return {"bad_arpc": self.bad_arpc, "scripts": self.scripts, "scheme_cvns": dict(self.scheme_cvns)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: IssuerBehaviour | None = None) -> IssuerBehaviour:
        """Validated settings; omitted keys keep `base`'s. ValueError names the field."""
        out = replace(base or cls(), scheme_cvns=dict((base or cls()).scheme_cvns))
        for key, value in data.items():
            if key in ("bad_arpc", "scripts"):
                if not isinstance(value, bool):
                    raise ValueError(f"{key}: must be true or false")
                setattr(out, key, value)
            elif key == "scheme_cvns":
                if not isinstance(value, dict) or len(value) > 64:
                    raise ValueError("scheme_cvns: must be an object scheme -> 10, 16, 18, 20 or null")
                for scheme, cvn in value.items():
                    if not (isinstance(scheme, str) and 0 < len(scheme) <= 40) or cvn not in (None, 10, 16, 18, 20):
                        raise ValueError(f"scheme_cvns.{str(scheme)[:40]}: must be 10, 16, 18, 20 or null")
                    out.scheme_cvns[scheme.upper()] = cvn
            else:
                raise ValueError(f"{str(key)[:64]}: unknown field")
        return out


def scheme_cvns_from_rules(rules: Iterable[Any]) -> dict[str, int | None]:
    """The CVN per scheme that the config's scheme rules name (``cards.schemes[].cvn``, 0 = from 9F10), over
    DEFAULT_SCHEME_CVNS: the sandbox then follows the config, as test-keys.md says. Rules are the config's
    models or plain dicts (sandbox.cards.profiles.TEST_SCHEMES).

    >>> scheme_cvns_from_rules([{"name": "EDAHABIA", "cvn": 10}, {"name": "VISA"}, {"name": "CIB", "cvn": 0}])
    {'CIB': None, 'EDAHABIA': 10, 'VISA': None, 'MASTERCARD': None}
    """
    out = dict(DEFAULT_SCHEME_CVNS)
    for rule in rules:
        if isinstance(rule, Mapping):
            name, cvn = rule.get("name"), rule.get("cvn")
        else:
            name, cvn = getattr(rule, "name", None), getattr(rule, "cvn", None)
        if isinstance(name, str) and name and isinstance(cvn, int) and 0 <= cvn <= 255:  # a rule without one: default
            out[name.upper()] = cvn or None
    return out


def parse_scheme_cvn(spec: str) -> tuple[str, int | None]:
    """``"CIB=18"`` -> ("CIB", 18); ``"VISA=iad"`` -> ("VISA", None) (the CLI's --scheme-cvn).

    >>> parse_scheme_cvn("edahabia=10"), parse_scheme_cvn("VISA=iad")
    (('EDAHABIA', 10), ('VISA', None))
    """
    scheme, _, cvn = spec.partition("=")
    if not scheme.strip() or cvn not in ("10", "16", "18", "20", "iad"):
        raise ValueError(f"{spec!r}: expected SCHEME=10|16|18|20|iad")
    return scheme.strip().upper(), None if cvn == "iad" else int(cvn)


def _masked_matches(pan: str, masked: str) -> bool:
    """Whether `pan` shows as `masked` (same length, every shown digit equal)."""
    return len(pan) == len(masked) and all(not m.isdigit() or m == p for p, m in zip(pan, masked, strict=True))


class Acquirer:
    """The sandbox issuer host. Thread-safe: the server's event loop and the store's batch both call it.

    It knows the full PAN of a card only in memory, to find the card keys of an offline payment, which carries
    pan_masked and never the PAN: the virtual cards' PANs (sandbox.cards.profiles), the `pans` given, and
    every PAN an authorization brought (at most MAX_KNOWN_CARDS).
    """

    def __init__(self, behaviour: IssuerBehaviour | None = None, pans: Iterable[str] = (),
                 load_test_cards: bool = True) -> None:
        self.behaviour = behaviour or IssuerBehaviour()
        self._lock = threading.Lock()
        self._pans: dict[str, None] = dict.fromkeys(p for p in pans if p.isdigit())
        self._load_test_cards = load_test_cards

    # -- cards ---------------------------------------------------------------------------------------

    def learn(self, pan: str) -> None:
        with self._lock:
            if pan not in self._pans and len(self._pans) < MAX_KNOWN_CARDS:
                self._pans[pan] = None

    def _test_cards(self) -> None:
        if not self._load_test_cards:
            return
        self._load_test_cards = False
        try:  # the virtual cards' module: present in the sandbox, loaded on the first offline payment
            from sandbox.cards.profiles import TEST_PANS
        except Exception as e:  # noqa: BLE001  (a broken card module must not stop the billing server)
            log.warning("acquirer: virtual cards not loaded (%s): offline TCs verify only for known PANs",
                        type(e).__name__)
            return
        for pan in TEST_PANS:
            self.learn(pan)

    def cards_matching(self, pan_masked: str) -> list[str]:
        """The known PANs that `pan_masked` can stand for."""
        self._test_cards()
        with self._lock:
            return [p for p in self._pans if _masked_matches(p, pan_masked)]

    # -- cryptograms -----------------------------------------------------------------------------------

    def cvn_for(self, scheme: str | None, chip: ChipData) -> int | None:
        rule = self.behaviour.scheme_cvns.get((scheme or "").upper())
        return rule if rule is not None else cvn_of(chip.tags[0x9F10])

    def verify(self, pan: str, scheme: str | None, chip: ChipData, psn: int | None = None) -> Verification:
        """Recompute the cryptogram (9F26) of `chip` for the card `pan` and compare."""
        kind = chip.cryptogram_type
        cvn = self.cvn_for(scheme, chip)
        if cvn is None:
            return Verification(False, None, f"9F10: no known cryptogram version (scheme {scheme or 'unknown'})")
        sequence = chip.pan_sequence if chip.pan_sequence is not None else (psn or 0)
        try:
            expected = cryptogram(cvn, card_keys(pan, sequence), chip.tags)
        except IssuerError as e:
            return Verification(False, cvn, str(e))
        if expected != chip.tags[0x9F26]:
            return Verification(False, cvn, f"9F26: the {kind} does not verify under the issuer keys (CVN {cvn})")
        return Verification(True, cvn)

    def response_emv(self, pan: str, chip: ChipData, verification: Verification, code: str,
                     amount: int, psn: int | None = None) -> str:
        """The issuer data of the answer: 91 (ARPC + ARC or CSU) and 8A for a verified ARQC, plus 71/72
        when asked; 8A alone when the cryptogram failed (the card cannot be answered authentically)."""
        arc = code.encode("ascii")
        items = [T.tlv(0x8A, arc)]
        cvn = verification.cvn
        if not verification.ok or cvn is None:
            return T.encode(items).hex().upper()
        keys = card_keys(pan, chip.pan_sequence if chip.pan_sequence is not None else (psn or 0))
        arqc, approved = chip.tags[0x9F26], code == "00"
        csu = CSU_APPROVED if approved else CSU_DECLINED
        iad = issuer_authentication_data(cvn, keys, chip.tags, arqc, arc, csu)
        if approved and (self.behaviour.bad_arpc or amount % 100 == AMOUNT_BAD_ARPC):
            iad = bytes([iad[0] ^ 0xFF]) + iad[1:]  # a "bad issuer": the ARPC does not verify on the card
        items.insert(0, T.tlv(0x91, iad))
        if approved and (self.behaviour.scripts or amount % 100 == AMOUNT_SCRIPTS):
            items += self._scripts(cvn, keys, chip)
        return T.encode(items).hex().upper()

    @staticmethod
    def _scripts(cvn: int, keys: Any, chip: ChipData) -> list[T.TLV]:
        """71: PUT DATA of the lower consecutive offline limit (9F14 = 05) before the second GENERATE AC;
        72: APPLICATION UNBLOCK after it. Each command MACed for the card (sandbox.issuer.script_command)."""
        atc, arqc = chip.tags[0x9F36], chip.tags[0x9F26]
        put_data = script_command(cvn, keys, atc, arqc, bytes.fromhex("04DA9F14"), b"\x05")
        unblock = script_command(cvn, keys, atc, arqc, bytes.fromhex("84180000"))
        return [
            T.tlv(0x71, [T.tlv(0x9F18, bytes.fromhex("00000071")), T.tlv(0x86, put_data)]),
            T.tlv(0x72, [T.tlv(0x9F18, bytes.fromhex("00000072")), T.tlv(0x86, unblock)]),
        ]

    # -- upload ------------------------------------------------------------------------------------------

    def check_payment(self, p: Mapping[str, Any]) -> tuple[str, str] | None:
        """For the batch upload: None, or (code, message) when the payment must be rejected.

        A ``card_reader`` payment captured offline (and not settled by a person) is the card's offline
        approval: its `emv` must be well-formed chip data holding a TC that verifies for a card the issuer
        knows, else ``cryptogram_invalid`` naming the tag. Any other payment's `emv` is recorded as sent: its
        money was taken after an online approval, and contract/billing-api.yaml allows any hex there, so
        refusing its shape would leave it never credited (issue 12).
        """
        if p.get("method") != "card_reader" or p.get("captured_offline") is not True or p.get("settlement"):
            return None
        emv = p.get("emv")
        if emv is None:
            return "cryptogram_invalid", "emv: an offline card_reader payment must carry its TC"
        try:
            chip = parse_chip_data(emv, required=CRYPTOGRAM_TAGS)
        except ChipDataError as e:
            return "cryptogram_invalid", str(e)
        if chip.cryptogram_type != "TC":
            return "cryptogram_invalid", f"emv: tag 9F27 is {chip.cid:02X}, an {chip.cryptogram_type}, not a TC"
        card = p.get("card") or {}
        masked, scheme = card.get("pan_masked"), card.get("scheme")
        candidates = self.cards_matching(masked) if isinstance(masked, str) else []
        if not candidates:
            return "cryptogram_invalid", "card.pan_masked: no card of the sandbox issuer matches it"
        failures = [self.verify(pan, scheme if isinstance(scheme, str) else None, chip) for pan in candidates]
        if any(v.ok for v in failures):
            return None
        return "cryptogram_invalid", failures[0].reason


def decide(payment_id: str, amount: int, pan: str, expiry: str | None,
           declining: frozenset[str] | set[str]) -> dict[str, Any]:
    """The sandbox issuer's deterministic answer (docs/sandbox-server.md), before any chip data.

    >>> decide("p1", 345600, "6280580000001239", "2030-01", set())["response_code"]
    '00'
    >>> [decide("p1", 3456_00 + e, "6280580000001239", "2030-01", set())["response_code"] for e in (51, 5, 91)]
    ['51', '05', '91']
    """
    digest = hashlib.sha256(payment_id.encode()).hexdigest()
    reference = "SBX" + digest[:12].upper()
    if not luhn_valid(pan):
        code = "14"  # invalid card number
    elif expiry is not None and expiry < datetime.now(UTC).strftime("%Y-%m"):
        code = "54"  # expired card
    elif pan in declining:
        code = "51"  # insufficient funds
    else:
        code = AMOUNT_CODES.get(amount % 100, "00")
    if code == "00":
        auth_code = str(int(digest[12:24], 16) % 1_000_000).rjust(6, "0")
        # without chip data (a 1.0 client): 8A = ASCII "00", 91 = 8 fixed bytes
        return {"approved": True, "response_code": "00", "code": auth_code, "reference": reference,
                "emv": "8A023030" + "9108" + digest[24:40].upper()}  # fmt: skip
    return declined(payment_id, code)


def declined(payment_id: str, code: str) -> dict[str, Any]:
    """A decline answer with `code` (8A only: no approval to authenticate)."""
    reference = "SBX" + hashlib.sha256(payment_id.encode()).hexdigest()[:12].upper()
    return {"approved": False, "response_code": code, "code": None, "reference": reference,
            "emv": "8A02" + code.encode("ascii").hex().upper()}  # fmt: skip
