"""The payment application of a virtual card: what a real chip does after GET PROCESSING OPTIONS.

GENERATE AC with real cryptograms (``sandbox.issuer``: Visa CVN 10/18, Mastercard CVN 20, under the test IMKs),
CDA signatures, INTERNAL AUTHENTICATE (DDA), VERIFY (plaintext PIN, format 2 block, try counter), GET DATA
(9F36 ATC, 9F13 last online ATC, 9F17 PIN tries), EXTERNAL AUTHENTICATE (checks the ARPC), issuer script
commands, and card risk management (LCOL/UCOL). One :class:`EmvState` per card insertion.

Behaviours (``Emv.behaviour``): ``approve`` (default), ``decline_offline`` (AAC at the first GENERATE AC),
``aac_second`` (AAC at the second even after the issuer approved), ``pull_completion`` (the card leaves the
reader when the second GENERATE AC arrives: see ``card.py``).

Contactless qVSDC (``Emv.one_tap``, Visa CL kernel 3): the cryptogram comes with GET PROCESSING OPTIONS. A card
personalised with ``fdda`` and an ``offline_balance`` (Available Offline Spending Amount, 9F5D) answers a TC with
an fDDA signature (9F4B over 9F37 || 9F02 || 5F2A || 9F69, its CTQ signed inside 9F69) when the TTQ does not
demand an online cryptogram and the amount is within its balance (which then decreases); else an ARQC (an AAC to an
offline-only reader). Its 9F5D is the balance left after the tap, as real Visa qVSDC cards report it. The
balance goes back to ``offline_limit`` only when the issuer approves a contact transaction online (its ARPC
checked at the second GENERATE AC): a one-tap card never hears from its issuer.

    state = EmvState(app.emv, pan, psn)
    state.generate_ac(p1, data)       # -> (template bytes, status)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from drivers.emv import tlv as T
from drivers.emv.dol import parse_dol
from sandbox import issuer

CID = {0x00: 0x00, 0x40: 0x40, 0x80: 0x80}
AAC, TC, ARQC = 0x00, 0x40, 0x80

# The CDOLs every profile card uses: CDOL1 asks the data every supported CVN MACs, and more.
CDOL1 = bytes.fromhex("9F02069F03069F1A0295055F2A029A039C019F37049F35019F3403")
CDOL2_M1 = bytes.fromhex("8A02910A95059F3704")  # ARPC method 1: ARPC (8) || ARC (2)
CDOL2_M2 = bytes.fromhex("8A0291089505" "9F3704")  # ARPC method 2 (CVN 18): ARPC (4) || CSU (4)
DDOL = bytes.fromhex("9F3704")
# TTQ (9F66, Visa CL kernel 3) bits the card reads: byte 1 b4 offline-only reader, byte 2 b8 online cryptogram
# required.
TTQ_OFFLINE_ONLY = 0x08
TTQ_ONLINE_CRYPTOGRAM = 0x80


def _bcd_amount(raw: bytes | None) -> int | None:
    digits = raw.hex() if raw is not None and len(raw) == 6 else ""
    return int(digits) if digits.isdigit() else None


def iad_for(cvn: int) -> bytes:
    """Issuer application data (9F10) naming the CVN as ``sandbox.issuer.cvn_of`` reads it."""
    if cvn in (10, 18):
        return bytes([0x06, 0x01, 0x0A if cvn == 10 else 0x12, 0x03, 0xA0, 0x00, 0x00])
    return bytes([0x01, 0x10 if cvn == 16 else 0x14]) + bytes.fromhex("A00003220000") + bytes(8) + b"\x00\xff"


@dataclass
class Emv:
    """The EMV personalisation of one application (static: the same for every insertion)."""

    cvn: int = 18
    oda: str | None = None  # sda | dda | cda | None
    pin: str = "1234"
    pin_tries: int = 3
    behaviour: str = "approve"
    lcol: int | None = None  # 9F14
    ucol: int | None = None  # 9F23
    atc: int = 0x0010  # the ATC before this insertion's transaction
    last_online_atc: int = 0x000F
    format1: bool = False  # GENERATE AC answered in format 1 (80)
    tamper: bool = False  # the ODA certificate is corrupted (ODA fails)
    one_tap: bool = False  # contactless qVSDC-style: the cryptogram comes with GET PROCESSING OPTIONS
    fdda: bool = False  # qVSDC: may approve a tap offline (TC) with an fDDA signature (needs DDA certificates)
    fdda_tamper: bool = False  # its fDDA signature (9F4B) has one byte flipped: the terminal's fDDA fails
    offline_balance: int | None = None  # 9F5D at personalisation, minor units (None: the card keeps no balance)
    offline_limit: int | None = None  # what an online approval resets the balance to (None: offline_balance)
    ctq: bytes | None = None  # a tap's CTQ (9F6C), sent and signed in 9F69 (None: none sent, 0000 signed)


@dataclass
class EmvState:
    """One insertion of the card: counters move as a real chip's would (sandbox.cards.card seeds them from its
    counters store before GPO and saves them after each command, so they are kept across insertions)."""

    emv: Emv
    pan: str
    psn: int
    aip: bytes
    certs: Any = None  # sandbox.issuer.IccCertificates
    pdol_data: bytes = b""
    atc: int = 0
    pin_tries: int = 0
    pin_ok: bool = False
    first: dict[int, bytes] = field(default_factory=dict)  # tags of the first GENERATE AC
    first_kind: int | None = None
    cdol1_data: bytes = b""
    issuer_auth: bool | None = None
    done: bool = False
    scripts: list[bytes] = field(default_factory=list)
    blocked: bool = False
    offline_balance: int = 0  # Available Offline Spending Amount (9F5D), minor units

    def __post_init__(self) -> None:
        # The personalisation's counters; sandbox.cards.card replaces them with the card's kept ones (counters.py).
        self.atc = self.emv.atc
        self.last_online_atc = self.emv.last_online_atc
        self.pin_tries = self.emv.pin_tries
        self.offline_balance = self.emv.offline_balance or 0
        self.keys = issuer.card_keys(self.pan, self.psn)

    @property
    def cdol2(self) -> bytes:
        return CDOL2_M2 if self.emv.cvn == 18 else CDOL2_M1

    # ------------------------------------------------------------------ commands

    def gpo(self, pdol_data: bytes) -> None:
        self.pdol_data = pdol_data
        self.atc = (self.atc + 1) & 0xFFFF

    def one_tap(self, pdol: bytes) -> list[T.TLV]:
        """qVSDC GPO: the cryptogram over the PDOL's data (TTQ, amount, country, TVR, currency, date, type, UN).

        A TC with its fDDA data (9F69, 9F4B) when the TTQ (9F66 byte 2 b8) does not demand an online cryptogram
        and the card's rules allow it (fDDA personalised, amount <= the offline balance, which then decreases);
        else an ARQC, or an AAC when the TTQ says the reader is offline only (byte 1 b4). 9F5D, when the card
        keeps a balance, is the Available Offline Spending Amount after this tap (a TC's amount already taken
        off, as Visa qVSDC cards return it)."""
        tags = self._tags(pdol, self.pdol_data) or {}
        ttq = tags.get(0x9F66, b"")
        amount = _bcd_amount(tags.get(0x9F02))
        offline = (self.emv.fdda and self.certs is not None and self.emv.offline_balance is not None
                   and len(ttq) == 4 and not ttq[1] & TTQ_ONLINE_CRYPTOGRAM and amount is not None
                   and amount <= self.offline_balance)
        asked = TC if offline else AAC if len(ttq) == 4 and ttq[0] & TTQ_OFFLINE_ONLY else ARQC
        answer, _sw = self._first(asked, b"", False, tags=tags)
        items = [i for i in T.decode(answer)[0].children if i.tag != 0x9F4B]
        if self.emv.ctq is not None:
            items.append(T.tlv(0x9F6C, self.emv.ctq))
        if self.first_kind == TC and amount is not None:
            self.offline_balance -= amount
            items += self._fdda(tags)
        if self.emv.offline_balance is not None:
            items.append(T.tlv(0x9F5D, bytes.fromhex(f"{max(self.offline_balance, 0):012d}"[-12:])))
        return items

    def _fdda(self, tags: dict[int, bytes]) -> list[T.TLV]:
        """9F69 and 9F4B of Visa fDDA version 01, signed with the ICC key (``sandbox.issuer.sign_fdda``)."""
        number = os.urandom(4)  # the card's unpredictable number, also its ICC dynamic number
        cad = issuer.card_authentication_data(number, self.emv.ctq or bytes(2))
        sdad = issuer.sign_fdda(self.certs, number, tags.get(0x9F37, bytes(4)), tags.get(0x9F02, bytes(6)),
                                tags.get(0x5F2A, bytes(2)), cad)
        if self.emv.fdda_tamper:
            i = len(sdad) // 2
            sdad = sdad[:i] + bytes([sdad[i] ^ 0x01]) + sdad[i + 1 :]
        return [T.tlv(0x9F69, cad), T.tlv(0x9F4B, sdad)]

    def get_data(self, p1: int, p2: int) -> tuple[bytes, int]:
        tag = (p1 << 8) | p2
        value = {0x9F36: self.atc.to_bytes(2, "big"), 0x9F13: self.last_online_atc.to_bytes(2, "big"),
                 0x9F17: bytes([self.pin_tries])}.get(tag)
        if value is None:
            return b"", 0x6A88
        return T.encode(T.tlv(tag, value)), 0x9000

    def verify(self, p2: int, block: bytes) -> int:
        if p2 != 0x80 or len(block) != 8:
            return 0x6A86
        if self.pin_tries == 0:
            return 0x6983
        n = block[0] & 0x0F
        digits = block.hex().upper()[2 : 2 + n]
        if block[0] >> 4 != 2 or not 4 <= n <= 12 or not digits.isdigit():
            return 0x6A80
        if digits == self.emv.pin:
            self.pin_tries = self.emv.pin_tries
            self.pin_ok = True
            return 0x9000
        self.pin_tries -= 1
        return 0x6983 if self.pin_tries == 0 else 0x63C0 | self.pin_tries

    def internal_authenticate(self, ddol_data: bytes) -> tuple[bytes, int]:
        if self.certs is None or self.emv.oda not in ("dda", "cda"):
            return b"", 0x6D00
        number = self.atc.to_bytes(2, "big") + os.urandom(2)
        return T.encode(T.tlv(0x80, issuer.sign_dynamic(self.certs, number, ddol_data))), 0x9000

    def _tags(self, dol: bytes, data: bytes) -> dict[int, bytes] | None:
        out: dict[int, bytes] = {}
        pos = 0
        for tag, n in parse_dol(dol):
            out[tag] = data[pos : pos + n]
            pos += n
        return out if pos == len(data) else None

    def _arpc_ok(self, iad_91: bytes, arc: bytes) -> bool:
        """The issuer's ARPC (91) checked against this card's own ARQC, under its own keys."""
        if self.first_kind != ARQC or len(iad_91) < 8:
            return False
        csu = iad_91[4:8] if self.emv.cvn == 18 else b"\0" * 4
        expected = issuer.issuer_authentication_data(self.emv.cvn, self.keys, self.first, self.first[0x9F26],
                                                     arc=arc, csu=csu)
        return expected == iad_91

    def external_authenticate(self, data: bytes) -> int:
        if self.first_kind != ARQC or self.issuer_auth is not None:
            return 0x6985
        arc = data[8:10] if len(data) == 10 else b"00"
        self.issuer_auth = self._arpc_ok(data, arc)
        return 0x9000 if self.issuer_auth else 0x6300

    def script(self, ins: int) -> int:
        """Issuer script commands: PIN unblock resets the try counter, APPLICATION BLOCK blocks the application,
        PUT DATA is accepted."""
        self.scripts.append(bytes([ins]))
        if ins == 0x24:
            self.pin_tries = self.emv.pin_tries
        elif ins == 0x1E:
            self.blocked = True
        return 0x9000

    def generate_ac(self, p1: int, data: bytes) -> tuple[bytes, int]:
        if self.done:
            return b"", 0x6985
        asked = p1 & 0xC0
        cda = bool(p1 & 0x10) and self.emv.oda == "cda" and self.certs is not None
        if self.first_kind is None:
            return self._first(asked, data, cda)
        return self._second(asked, data, cda)

    def _first(self, asked: int, data: bytes, cda: bool, tags: dict[int, bytes] | None = None
               ) -> tuple[bytes, int]:
        tags = tags if tags is not None else self._tags(CDOL1, data)
        if tags is None:
            return b"", 0x6700
        kind = asked
        if self.emv.behaviour == "decline_offline" or self.blocked:
            kind = AAC
        elif asked == TC and self.emv.lcol is not None:
            # Card risk management: too many offline transactions in a row -> the issuer must see this one.
            if self.atc - self.last_online_atc > self.emv.lcol:
                kind = ARQC
        self.first_kind = kind
        self.cdol1_data = data
        answer = self._answer(kind, tags, cda, data)
        if kind != ARQC:
            self.done = True
        return answer

    def _second(self, asked: int, data: bytes, cda: bool) -> tuple[bytes, int]:
        tags2 = self._tags(self.cdol2, data)
        if tags2 is None or self.first_kind != ARQC:
            return b"", 0x6700 if tags2 is None else 0x6985
        arc = tags2.get(0x8A, b"")
        kind = asked
        if arc in (b"Y3", b"Z3"):  # the terminal could not go online: the card's own decision
            offline = self.atc - self.last_online_atc
            kind = TC if asked == TC and (self.emv.ucol is None or offline <= self.emv.ucol) else AAC
        else:
            if self.issuer_auth is None:  # ARPC in CDOL2 (no EXTERNAL AUTHENTICATE)
                self.issuer_auth = self._arpc_ok(tags2.get(0x91, b""), arc)
            if not self.issuer_auth or arc != b"00" or self.emv.behaviour == "aac_second":
                kind = AAC
            else:
                self.last_online_atc = self.atc  # the issuer saw this transaction
                if self.emv.offline_balance is not None:  # and the offline balance is whole again
                    limit = self.emv.offline_limit
                    self.offline_balance = limit if limit is not None else self.emv.offline_balance
        tags = dict(self.first)
        tags.update(tags2)
        self.done = True
        return self._answer(kind, tags, cda and kind != AAC, self.cdol1_data + data)

    def _answer(self, kind: int, tags: dict[int, bytes], cda: bool, cdol_data: bytes) -> tuple[bytes, int]:
        cid = kind
        tags = {**tags, 0x82: self.aip, 0x9F36: self.atc.to_bytes(2, "big"), 0x9F10: iad_for(self.emv.cvn)}
        ac = issuer.cryptogram(self.emv.cvn, self.keys, tags)
        if not self.first:  # the first GENERATE AC: what EXTERNAL AUTHENTICATE / CDOL2's 91 answer
            self.first = {**tags, 0x9F26: ac}
        if cda and kind != AAC:
            head = [T.tlv(0x9F27, bytes([cid])), T.tlv(0x9F36, tags[0x9F36]), T.tlv(0x9F10, tags[0x9F10])]
            signed = b"".join(T.encode(x) for x in head)
            sdad = issuer.sign_cda(self.certs, self.atc.to_bytes(2, "big") + os.urandom(2), cid, ac,
                                   tags.get(0x9F37, bytes(4)), self.pdol_data + cdol_data + signed)
            return T.encode(T.tlv(0x77, [*head, T.tlv(0x9F4B, sdad)])), 0x9000
        if self.emv.format1:
            return T.encode(T.tlv(0x80, bytes([cid]) + tags[0x9F36] + ac + tags[0x9F10])), 0x9000
        return T.encode(T.tlv(0x77, [T.tlv(0x9F27, bytes([cid])), T.tlv(0x9F36, tags[0x9F36]),
                                     T.tlv(0x9F26, ac), T.tlv(0x9F10, tags[0x9F10])])), 0x9000
