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
import hmac
import logging
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from config.money import CURRENCIES
from drivers.emv import tlv as T
from drivers.emv.tags import SECRET_TAGS
from drivers.pan import luhn_valid, mask_pan, masked_pan_fault
from sandbox.issuer import (
    CardKeys,
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
# Cardholder data that never travels in DE55 nor is stored (PAN, track data, name, PIN data): the one set.
FORBIDDEN = SECRET_TAGS
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


def cardholder_tag(emv: str) -> str | None:
    """The first cardholder-data tag (5A, 57, 9F6B, 99...) anywhere in the hex TLV `emv`, templates included;
    None when there is none, or when `emv` is no TLV at all (kept as sent: the contract allows any hex).

    >>> cardholder_tag("9F2701405A084761739001010010"), cardholder_tag("7003570100"), cardholder_tag("9F2708AA")
    ('5A', '57', None)
    """
    try:
        stack = list(T.decode(bytes.fromhex(emv)))
    except (ValueError, T.TLVError):
        return None
    while stack:
        item = stack.pop()
        if item.tag in FORBIDDEN:
            return T.tag_name(item.tag)
        stack.extend(item.children)
    return None


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
    ``strict_atc`` (on by default): an ARQC must carry an ATC above the card's last, as a real card's counter
    only grows (the virtual cards keep theirs between insertions: sandbox.cards.counters); off: only a lower
    ATC is declined, and an ARQC seen before.
    ``bad_script_mac``: the issuer scripts' MACs have their last byte flipped (the card must refuse them).
    ``require_chip_data``: a chip or contactless authorization without `emv` is declined (on by default: the
    agent sends the first GENERATE AC's DE55; off for a contract 1.0 client).
    ``scheme_cvns``: scheme -> CVN, None = the CVN 9F10 names. To follow a config's scheme rules:
    ``IssuerBehaviour(scheme_cvns=scheme_cvns_from_rules(cfg.cards.schemes))``.
    """

    bad_arpc: bool = False
    scripts: bool = False
    strict_atc: bool = True
    require_chip_data: bool = True
    bad_script_mac: bool = False
    scheme_cvns: dict[str, int | None] = field(default_factory=lambda: dict(DEFAULT_SCHEME_CVNS))

    def status(self) -> dict[str, Any]:
        return {"bad_arpc": self.bad_arpc, "scripts": self.scripts, "strict_atc": self.strict_atc,
                "require_chip_data": self.require_chip_data, "bad_script_mac": self.bad_script_mac,
                "scheme_cvns": dict(self.scheme_cvns)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: IssuerBehaviour | None = None) -> IssuerBehaviour:
        """Validated settings; omitted keys keep `base`'s. ValueError names the field."""
        out = replace(base or cls(), scheme_cvns=dict((base or cls()).scheme_cvns))
        for key, value in data.items():
            if key in ("bad_arpc", "scripts", "strict_atc", "require_chip_data", "bad_script_mac"):
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


# The issuer's card book, in the billing server's database so an offline TC still verifies after a restart.
# Never the PAN: a card is an HMAC of PAN and PAN sequence number under this database's own secret, its mask,
# and its ICC master keys (test IMKs: derived once, when the card is learnt).
ISSUER_SCHEMA = """
CREATE TABLE IF NOT EXISTS issuer_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS issuer_cards (
    card_id TEXT PRIMARY KEY,
    pan_masked TEXT NOT NULL,
    psn INTEGER NOT NULL,
    keys TEXT NOT NULL,                  -- hex AC || SMI || SMC master keys (test IMKs only)
    last_atc INTEGER                     -- the highest ATC of a verified ARQC
);
CREATE INDEX IF NOT EXISTS issuer_cards_mask ON issuer_cards (pan_masked, psn);
CREATE TABLE IF NOT EXISTS issuer_cryptograms (
    card_id TEXT NOT NULL,
    cryptogram TEXT NOT NULL,            -- 9F26 of a verified ARQC or TC: each is used once
    kind TEXT NOT NULL,
    used_by TEXT NOT NULL,               -- the authorization's payment_id, or the TC's transaction_id
    PRIMARY KEY (card_id, cryptogram)
);
"""
MASK_CHARS = str.maketrans("Xx#", "***")


class CardBook(Protocol):
    """What the acquirer needs of the billing store (sandbox.billing.store.Store): its connection and lock (the
    card book's tables live there, and a batch's TC uses join the batch's transaction), and two look-ups."""

    db: sqlite3.Connection
    lock: Any

    def approved_authorization(self, key: str) -> Mapping[str, Any] | None: ...

    def transaction_total(self, transaction_id: str) -> int: ...


class _MemoryBook:
    """A card book of its own, in memory (an Acquirer built without a store: doctests, tools)."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.lock = threading.RLock()

    def approved_authorization(self, key: str) -> Mapping[str, Any] | None:
        return None

    def transaction_total(self, transaction_id: str) -> int:
        return 0


class Acquirer:
    """The sandbox issuer host. Thread-safe: the server's event loop and the store's batch both call it.

    It learns a card only from an ARQC that verifies (or the virtual cards, or the `pans` given), and keeps its
    keys, not its PAN, in the store's database: an offline payment carries pan_masked, which must show the
    first 6 and last 4 digits and name exactly one known card.
    """

    def __init__(self, behaviour: IssuerBehaviour | None = None, pans: Iterable[str] = (),
                 load_test_cards: bool = True, store: CardBook | None = None) -> None:
        self.behaviour = behaviour or IssuerBehaviour()
        self.book: CardBook = store if store is not None else _MemoryBook()
        with self.book.lock:
            self.book.db.executescript(ISSUER_SCHEMA)
            row = self.book.db.execute("SELECT value FROM issuer_meta WHERE name = 'card_secret'").fetchone()
            if row is None:
                self.book.db.execute("INSERT INTO issuer_meta VALUES ('card_secret', ?)", (secrets.token_hex(32),))
                row = self.book.db.execute("SELECT value FROM issuer_meta WHERE name = 'card_secret'").fetchone()
        self._secret = bytes.fromhex(row[0])
        self._given = [p for p in pans if isinstance(p, str) and p.isdigit()]
        self._load_test_cards = load_test_cards
        self._loaded = False

    # -- cards ---------------------------------------------------------------------------------------

    def card_id(self, pan: str, psn: int = 0) -> str:
        """The card's name in the card book and in the replay check: HMAC(PAN, PSN), never the PAN."""
        return hmac.new(self._secret, f"{pan}:{psn}".encode(), hashlib.sha256).hexdigest()

    def learn(self, pan: str, psn: int = 0) -> str:
        """Keep the card (its keys, mask and id) so its offline TCs verify later; its id."""
        card = self.card_id(pan, psn)
        keys = card_keys(pan, psn)
        with self.book.lock:
            self.book.db.execute(
                "INSERT OR IGNORE INTO issuer_cards (card_id, pan_masked, psn, keys) VALUES (?,?,?,?)",
                (card, mask_pan(pan), psn, (keys.ac + keys.smi + keys.smc).hex()),
            )
        return card

    def _known_cards(self) -> None:
        """The `pans` given (PAN sequence 0 and 1) and the virtual cards, learnt on the first offline payment."""
        if self._loaded:
            return
        self._loaded = True
        found: set[tuple[str, int]] = {(p, s) for p in self._given for s in (0, 1)}
        if self._load_test_cards:
            try:  # the virtual cards' module: present in the sandbox
                from sandbox.cards.profiles import PROFILES
            except Exception as e:  # noqa: BLE001  (a broken card module must not stop the billing server)
                log.warning("acquirer: virtual cards not loaded (%s): offline TCs verify only for known cards",
                            type(e).__name__)
            else:
                found |= {(app.pan, app.psn) for prof in PROFILES.values() for app in prof.apps
                          if isinstance(app.pan, str) and app.pan.isdigit()}  # fmt: skip
        for pan, psn in sorted(found):
            try:
                self.learn(pan, psn)
            except IssuerError:
                continue

    def cards_matching(self, pan_masked: str, psn: int) -> list[tuple[str, CardKeys]]:
        """The known cards that show exactly as `pan_masked` (first 6 and last 4) with this PAN sequence."""
        self._known_cards()
        with self.book.lock:
            rows = self.book.db.execute(
                "SELECT card_id, keys FROM issuer_cards WHERE pan_masked = ? AND psn = ? LIMIT 2",
                (pan_masked.translate(MASK_CHARS), psn),
            ).fetchall()
        out = []
        for card, hexkeys in rows:
            raw = bytes.fromhex(hexkeys)
            out.append((str(card), CardKeys(raw[:16], raw[16:32], raw[32:48])))
        return out

    # -- cryptograms -----------------------------------------------------------------------------------

    def cvn_for(self, scheme: str | None, chip: ChipData) -> int | None:
        rule = self.behaviour.scheme_cvns.get((scheme or "").upper())
        return rule if rule is not None else cvn_of(chip.tags[0x9F10])

    def verify(self, pan: str, scheme: str | None, chip: ChipData, psn: int | None = None) -> Verification:
        """Recompute the cryptogram (9F26) of `chip` for the card `pan` and compare."""
        sequence = chip.pan_sequence if chip.pan_sequence is not None else (psn or 0)
        try:
            keys = card_keys(pan, sequence)
        except IssuerError as e:
            return Verification(False, self.cvn_for(scheme, chip), str(e))
        return self._verify_keys(keys, scheme, chip)

    def _verify_keys(self, keys: CardKeys, scheme: str | None, chip: ChipData) -> Verification:
        kind = chip.cryptogram_type
        cvn = self.cvn_for(scheme, chip)
        if cvn is None:
            return Verification(False, None, f"9F10: no known cryptogram version (scheme {scheme or 'unknown'})")
        try:
            expected = cryptogram(cvn, keys, chip.tags)
        except IssuerError as e:
            return Verification(False, cvn, str(e))
        if not hmac.compare_digest(expected, chip.tags[0x9F26]):
            return Verification(False, cvn, f"9F26: the {kind} does not verify under the issuer keys (CVN {cvn})")
        return Verification(True, cvn)

    def authorize_arqc(self, pan: str, scheme: str | None, chip: ChipData, psn: int | None,
                       payment_id: str) -> Verification:
        """An authorization's ARQC: verified, then used once. An ARQC already seen, or an ATC lower than the
        card's last (equal too, with ``IssuerBehaviour.strict_atc``), is a replay; only a verified ARQC
        teaches the issuer the card."""
        found = self.verify(pan, scheme, chip, psn)
        if not found.ok:
            return found
        sequence = chip.pan_sequence if chip.pan_sequence is not None else (psn or 0)
        card = self.learn(pan, sequence)
        atc = int.from_bytes(chip.tags[0x9F36], "big")
        with self.book.lock:
            db = self.book.db
            row = db.execute("SELECT last_atc FROM issuer_cards WHERE card_id = ?", (card,)).fetchone()
            last = None if row is None else row[0]
            if last is not None and (atc < last or (atc == last and self.behaviour.strict_atc)):
                return Verification(False, found.cvn, f"9F36: ATC {atc:04X} is not above the card's last {last:04X}")
            used = db.execute("INSERT OR IGNORE INTO issuer_cryptograms VALUES (?,?,?,?)",
                              (card, chip.tags[0x9F26].hex(), "ARQC", payment_id))  # fmt: skip
            if not used.rowcount:
                return Verification(False, found.cvn, "9F26: this ARQC was already used")
            db.execute("UPDATE issuer_cards SET last_atc = MAX(COALESCE(last_atc, 0), ?) WHERE card_id = ?",
                       (atc, card))  # fmt: skip
        return found

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
            items += self._scripts(cvn, keys, chip, self.behaviour.bad_script_mac)
        return T.encode(items).hex().upper()

    @staticmethod
    def _scripts(cvn: int, keys: Any, chip: ChipData, bad_mac: bool = False) -> list[T.TLV]:
        """71: PUT DATA of the lower consecutive offline limit (9F14 = 05) before the second GENERATE AC;
        72: APPLICATION UNBLOCK after it. Each command MACed for the card (sandbox.issuer.script_command);
        with `bad_mac` each MAC's last byte is flipped (the card answers 6988 and executes nothing)."""
        atc, arqc = chip.tags[0x9F36], chip.tags[0x9F26]
        put_data = script_command(cvn, keys, atc, arqc, bytes.fromhex("04DA9F14"), b"\x05")
        unblock = script_command(cvn, keys, atc, arqc, bytes.fromhex("84180000"))
        if bad_mac:
            put_data, unblock = (c[:-1] + bytes([c[-1] ^ 0xFF]) for c in (put_data, unblock))
        return [
            T.tlv(0x71, [T.tlv(0x9F18, bytes.fromhex("00000071")), T.tlv(0x86, put_data)]),
            T.tlv(0x72, [T.tlv(0x9F18, bytes.fromhex("00000072")), T.tlv(0x86, unblock)]),
        ]

    # -- upload ------------------------------------------------------------------------------------------

    def check_payment(self, p: Mapping[str, Any]) -> tuple[str, str] | None:
        """For the batch upload, once the payment is well formed and its bill known: None, or (code, message)
        when it must be rejected. Called inside the batch's transaction (a TC's use is recorded there).

        A ``card_reader`` payment not settled by a person is credited only on the issuer's word:
        - approved online: an approved, non-reversed authorization under its transaction_id (the agent's
          Idempotency-Key), of this terminal, currency and card, whose amount covers the payments of the
          transaction and whose code is the payment's, else ``authorization_not_found``;
        - else with a TC in `emv` (the card approved it offline): the TC verifies for exactly one known card
          (pan_masked shows its first 6 and last 4), 5F2A is the currency, 9F02 covers the payments sharing
          its transaction_id, and the TC serves that one transaction; else ``cryptogram_invalid``.
        """
        if p.get("method") != "card_reader" or p.get("settlement"):
            return None
        emv = p.get("emv")
        chip: ChipData | None = None
        fault = None
        if emv is not None:
            try:
                chip = parse_chip_data(emv, required=())
            except ChipDataError as e:
                fault = str(e)
        auth = self._authorization(p)
        if auth is not None:  # approved online; `emv` (the final cryptogram's data) is recorded as sent
            return self._check_online(p, auth)
        if chip is not None and 0x9F27 in chip.tags and chip.cryptogram_type == "TC":
            return self._check_tc(p, chip)
        if p.get("captured_offline") is True:
            if fault is not None:
                return "cryptogram_invalid", fault
            if chip is None:
                return "cryptogram_invalid", "emv: an offline card_reader payment must carry its TC"
            if 0x9F27 not in chip.tags:
                return "cryptogram_invalid", "emv: tag 9F27 is missing"
            return "cryptogram_invalid", f"emv: tag 9F27 is {chip.cid:02X}, an {chip.cryptogram_type}, not a TC"
        tid = str(p.get("transaction_id"))
        return "authorization_not_found", f"transaction_id {tid[:64]}: no approved authorization on record"

    def _authorization(self, p: Mapping[str, Any]) -> Mapping[str, Any] | None:
        key = p.get("transaction_id")
        return self.book.approved_authorization(key) if isinstance(key, str) else None

    def _check_online(self, p: Mapping[str, Any], auth: Mapping[str, Any]) -> tuple[str, str] | None:
        tid = str(p.get("transaction_id"))
        card = p.get("card") or {}
        masked = card.get("pan_masked")
        given = p.get("authorization") or {}
        if auth.get("terminal_id") not in (None, p.get("terminal_id")):
            return "authorization_not_found", f"transaction_id {tid[:64]}: authorized for another terminal"
        if auth["currency"] != p.get("currency"):
            return "authorization_not_found", f"currency: the authorization is in {auth['currency']}"
        if not isinstance(masked, str) or masked.translate(MASK_CHARS) != auth["pan_masked"]:
            return "authorization_not_found", "card.pan_masked: not the authorized card"
        if given.get("code") != auth.get("code"):
            return "authorization_not_found", "authorization.code: not the code the acquirer gave"
        total = self.book.transaction_total(tid) + int(p["amount"])
        if total > auth["amount"]:
            return "authorization_not_found", (f"amount: the payments of transaction {tid[:64]} add up to {total}, "
                                               f"{auth['amount']} was authorized")  # fmt: skip
        return None

    def _check_tc(self, p: Mapping[str, Any], chip: ChipData) -> tuple[str, str] | None:
        try:
            for tag in CRYPTOGRAM_TAGS:
                if tag not in chip.tags:
                    raise ChipDataError(f"tag {T.tag_name(tag)} is missing")
            currency = str(p.get("currency"))
            if currency not in CURRENCIES or chip.currency_numeric != CURRENCIES[currency].numeric:
                raise ChipDataError(f"tag 5F2A says {chip.currency_numeric}, the payment's currency is {currency}")
        except ChipDataError as e:
            return "cryptogram_invalid", str(e)
        tid = str(p.get("transaction_id"))
        total = self.book.transaction_total(tid) + int(p["amount"])
        if total > chip.amount:
            return "cryptogram_invalid", (f"emv: tag 9F02 says {chip.amount}, the payments of transaction "
                                          f"{tid[:64]} add up to {total}")  # fmt: skip
        card = p.get("card") or {}
        masked, scheme = card.get("pan_masked"), card.get("scheme")
        if not isinstance(masked, str) or masked_pan_fault(masked) or not (masked[:6] + masked[-4:]).isdigit():
            return "cryptogram_invalid", "card.pan_masked: must show the first 6 and last 4 digits of the card"
        candidates = self.cards_matching(masked, chip.pan_sequence or 0)
        if not candidates:
            return "cryptogram_invalid", "card.pan_masked: no card of the sandbox issuer matches it"
        if len(candidates) > 1:
            return "cryptogram_invalid", "card.pan_masked: matches more than one card of the sandbox issuer"
        [(card_id, keys)] = candidates
        found = self._verify_keys(keys, scheme if isinstance(scheme, str) else None, chip)
        if not found.ok:
            return "cryptogram_invalid", found.reason
        with self.book.lock:
            db = self.book.db
            db.execute("INSERT OR IGNORE INTO issuer_cryptograms VALUES (?,?,?,?)",
                       (card_id, chip.tags[0x9F26].hex(), "TC", tid))  # fmt: skip
            row = db.execute("SELECT kind, used_by FROM issuer_cryptograms WHERE card_id = ? AND cryptogram = ?",
                             (card_id, chip.tags[0x9F26].hex())).fetchone()  # fmt: skip
        if tuple(row) != ("TC", tid):
            return "cryptogram_invalid", "9F26: this TC was already used by another transaction"
        return None


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
