"""A virtual EMV card: answers SELECT, READ RECORD, GET PROCESSING OPTIONS and GET RESPONSE like a real one.

Built from a :class:`Profile` (see ``sandbox.cards.profiles``). Like a real chip, a card keeps its counters
(ATC, last online ATC, PIN try counter, application blocked, offline balance) from one insertion to the next in
its ``counters`` store (``sandbox.cards.counters``): by default a store of its own, so the same
``VirtualCard`` object inserted twice is one card; give several objects one store (or a file) to make them one
card across objects and processes. T=0 cards answer case-4 commands with
``61XX`` (the terminal must send GET RESPONSE) and, when ``strict_le`` is set, case-2 commands whose Le
is wrong with ``6CXX`` (the terminal must resend with that Le), as ISO 7816-3 T=0 cards do.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.emv import tlv as T
from drivers.emv.dol import parse_dol
from sandbox import issuer
from sandbox.cards.counters import Counters, CounterStore
from sandbox.cards.emvapp import ARQC, Emv, EmvState

log = logging.getLogger(__name__)

PSE = b"1PAY.SYS.DDF01"
PPSE = b"2PAY.SYS.DDF01"

SW_OK = b"\x90\x00"
SCRIPT_MAC = 8  # bytes of secure messaging MAC at the end of an issuer script command's data
ATC_MAX = 0xFFFF  # the ATC (9F36) is two bytes: a card that reached it takes no more transactions


def sw(code: int) -> bytes:
    return code.to_bytes(2, "big")


@dataclass
class App:
    aid: bytes
    label: str
    records: dict[tuple[int, int], bytes]  # (sfi, record) -> encoded record (normally a 70 template)
    afl: bytes
    aip: bytes = b"\x18\x00"
    priority: int | None = None
    preferred_name: str | None = None
    language: str | None = None
    pdol: bytes | None = None
    gpo_format: int = 1  # 1: 80 AIP+AFL; 2: 77 template
    gpo_extra: list[T.TLV] = field(default_factory=list)  # more data in a format 2 answer (57, 5F34, ...)
    fci_extra: list[T.TLV] = field(default_factory=list)  # more data in the FCI's A5 template
    default_record: bytes | None = None  # the answer to any READ RECORD not in ``records`` (hostile cards)
    emv: Emv | None = None  # a payment application (GENERATE AC ...): None = a card that can only be read
    certs: Any = None  # sandbox.issuer.IccCertificates of this application (ODA)
    pan: str = ""
    psn: int = 0

    def fci(self) -> bytes:
        prop: list[T.TLV] = [T.tlv(0x50, self.label.encode())]
        if self.priority is not None:
            prop.append(T.tlv(0x87, bytes([self.priority])))
        if self.pdol is not None:
            prop.append(T.tlv(0x9F38, self.pdol))
        if self.language:
            prop.append(T.tlv(0x5F2D, self.language.encode()))
        if self.preferred_name:
            prop += [T.tlv(0x9F11, b"\x01"), T.tlv(0x9F12, self.preferred_name.encode("latin-1"))]
        prop += self.fci_extra
        return T.encode(T.tlv(0x6F, [T.tlv(0x84, self.aid), T.tlv(0xA5, prop)]))

    def directory_entry(self) -> T.TLV:
        inner = [T.tlv(0x4F, self.aid), T.tlv(0x50, self.label.encode())]
        if self.priority is not None:
            inner.append(T.tlv(0x87, bytes([self.priority])))
        return T.tlv(0x61, inner)

    def pdol_length(self) -> int:
        return sum(n for _, n in parse_dol(self.pdol)) if self.pdol else 0

    def gpo(self) -> bytes:
        if self.gpo_format == 1:
            return T.encode(T.tlv(0x80, self.aip + self.afl))
        return T.encode(T.tlv(0x77, [T.tlv(0x82, self.aip), T.tlv(0x94, self.afl), *self.gpo_extra]))


@dataclass
class Profile:
    name: str
    description: str
    atr: bytes
    apps: list[App]
    pan: str  # the test PAN (Luhn-valid), for tests and TEST_PANS
    expiry: str  # YYYY-MM, what a correct read gives
    scheme: str  # what a correct read gives with the test config
    interface: str = "contact"
    pse: bool = True  # a PSE directory (contact)
    ppse: bool = False  # a PPSE FCI (contactless)
    t0: bool = False  # 61XX on case-4 commands
    strict_le: bool = False  # 6CXX on a case-2 command with the wrong Le
    pull_after: int | None = None  # pulled out of the reader when this APDU (1-based) arrives
    garbage: dict[str, bytes] = field(default_factory=dict)  # command name -> raw answer (replaces the real one)
    expected_apdus: int | None = None  # our reader's count; the benchmark's "minimum"
    expect_error: str | None = None  # for garbage/pulled cards: the error class a reader must raise
    apdu_delay: float = 0.0  # seconds the card thinks before each answer (a slow or stalling card)
    pull_at_second_ac: bool = False  # pulled out of the reader when the second GENERATE AC arrives


class VirtualCard:
    """Answers APDUs for one :class:`Profile`. Counts what it receives.

    ``counters``: where the card keeps its counters between insertions (default: a store of its own).
    """

    def __init__(self, profile: Profile, counters: CounterStore | None = None) -> None:
        self.profile = profile
        self.counters = counters if counters is not None else CounterStore()
        self._app: App | None = None  # the application whose transaction ``emv`` is
        self._unsaved = False  # a counter could not be kept once (logged once)
        self.atr = profile.atr
        self.apdus = 0
        self.commands: list[bytes] = []  # headers received (CLA INS P1 P2), for tests
        self._selected: App | str | None = None
        self._pending = b""  # T=0: data waiting for GET RESPONSE
        self.emv: EmvState | None = None  # the selected application's transaction, from GPO on
        # Called with the count of APDUs received, before the card answers the last one (tests: "the cashier
        # presses cancel while the card is on its 3rd command"). Runs in the card's thread; must not block.
        self.on_apdu: Callable[[int], None] | None = None

    def power(self, on: bool) -> None:
        self._selected = None
        self._pending = b""
        self.emv = None
        self._app = None

    def reset(self) -> None:
        self.power(True)

    # ------------------------------------------------------------------

    def apdu(self, cmd: bytes) -> bytes | None:
        self.apdus += 1
        self.commands.append(cmd[:4])
        if self.on_apdu is not None:
            self.on_apdu(self.apdus)
        p = self.profile
        if p.pull_after is not None and self.apdus >= p.pull_after:
            return None
        if (p.pull_at_second_ac and len(cmd) > 1 and cmd[1] == 0xAE and self.emv is not None
                and self.emv.first_kind is not None):
            return None
        if len(cmd) < 4:
            return sw(0x6700)
        if p.apdu_delay:
            time.sleep(p.apdu_delay)
        cla, ins, p1, p2 = cmd[:4]
        lc_data, le = _split(cmd)
        if ins == 0xC0 and cla == 0x00:
            return self._get_response(le)
        self._pending = b""
        name, data, status, case4 = self._dispatch(cla, ins, p1, p2, lc_data)
        self._save()
        if name in p.garbage:
            raw = p.garbage[name]
            return raw if len(raw) == 2 else raw + SW_OK
        if status != 0x9000 or not data:
            return sw(status)
        if p.t0 and case4:
            self._pending = data
            return sw(0x6100 | (len(data) & 0xFF))
        if p.t0 and p.strict_le and le != len(data) % 256:
            return sw(0x6C00 | (len(data) & 0xFF))
        return data + SW_OK

    def _get_response(self, le: int | None) -> bytes:
        if not self._pending:
            return sw(0x6985)
        want = 256 if not le else le
        if self.profile.strict_le and want > len(self._pending):
            return sw(0x6C00 | (len(self._pending) & 0xFF))
        chunk, self._pending = self._pending[:want], self._pending[want:]
        if self._pending:
            return chunk + sw(0x6100 | (min(len(self._pending), 256) & 0xFF))
        return chunk + SW_OK

    def _dispatch(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> tuple[str, bytes, int, bool]:
        p = self.profile
        if ins == 0xA4 and p1 == 0x04:
            if data == PSE:
                if not p.pse:
                    return "SELECT PSE", b"", 0x6A82, True
                self._selected = "PSE"
                fci = T.encode(T.tlv(0x6F, [T.tlv(0x84, PSE), T.tlv(0xA5, [T.tlv(0x88, b"\x01")])]))
                return "SELECT PSE", fci, 0x9000, True
            if data == PPSE:
                if not p.ppse:
                    return "SELECT PPSE", b"", 0x6A82, True
                self._selected = "PPSE"
                entries = [a.directory_entry() for a in p.apps]
                fci = T.encode(
                    T.tlv(0x6F, [T.tlv(0x84, PPSE), T.tlv(0xA5, [T.tlv(0xBF0C, entries)])])
                )
                return "SELECT PPSE", fci, 0x9000, True
            for app in p.apps:
                if data == app.aid:
                    self._selected = app
                    return "SELECT AID", app.fci(), 0x9000, True
            return "SELECT AID", b"", 0x6A82, True
        if ins == 0xB2:
            sfi = p2 >> 3
            if self._selected == "PSE":
                if sfi != 1:
                    return "READ RECORD", b"", 0x6A82, False
                # One directory record per application: exercises the read-until-6A83 loop.
                if 1 <= p1 <= len(p.apps):
                    rec = T.encode(T.tlv(0x70, [p.apps[p1 - 1].directory_entry()]))
                    return "READ RECORD", rec, 0x9000, False
                return "READ RECORD", b"", 0x6A83, False
            if isinstance(self._selected, App):
                found = self._selected.records.get((sfi, p1), self._selected.default_record)
                if found is None:
                    return "READ RECORD", b"", 0x6A83, False
                return "READ RECORD", found, 0x9000, False
            return "READ RECORD", b"", 0x6985, False
        if ins == 0xA8 and cla == 0x80:
            current = self._selected
            if not isinstance(current, App):
                return "GPO", b"", 0x6985, True
            if len(data) < 2 or data[0] != 0x83 or data[1] != len(data) - 2 or data[1] != current.pdol_length():
                return "GPO", b"", 0x6700, True
            if current.emv is not None:
                self.emv = EmvState(current.emv, current.pan, current.psn, current.aip, current.certs)
                self._app = current
                self._seed(current, self.emv)  # before gpo() counts this transaction
                if self.emv.atc >= ATC_MAX:
                    return self._worn_out()
                self.emv.gpo(data[2:])
                if current.emv.one_tap and current.pdol:
                    extra = [t for t in current.gpo_extra if t.tag not in (0x9F26, 0x9F27, 0x9F36, 0x9F10)]
                    items = [T.tlv(0x82, current.aip), T.tlv(0x94, current.afl), *extra,
                             *self.emv.one_tap(current.pdol)]
                    return "GPO", T.encode(T.tlv(0x77, items)), 0x9000, True
            return "GPO", current.gpo(), 0x9000, True
        return self._payment(cla, ins, p1, p2, data)

    def _payment(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> tuple[str, bytes, int, bool]:
        """The commands after GPO (sandbox.cards.emvapp): only an application with EMV data answers them."""
        st = self.emv
        if st is None:
            return "OTHER", b"", 0x6985 if ins in (0xAE, 0x88, 0x20, 0xCA, 0x82) else 0x6D00, False
        if ins == 0xAE and cla == 0x80:
            name = "GENERATE AC 2" if st.first_kind is not None else "GENERATE AC"  # garbage can aim at either
            out, status = st.generate_ac(p1, data)
            return name, out, status, True
        if ins == 0xCA and cla == 0x80:
            out, status = st.get_data(p1, p2)
            return "GET DATA", out, status, False
        if ins == 0x88 and cla == 0x00:
            out, status = st.internal_authenticate(data)
            return "INTERNAL AUTHENTICATE", out, status, True
        if ins == 0x20 and cla == 0x00:
            return "VERIFY", b"", st.verify(p2, data), False
        if ins == 0x82 and cla == 0x00:
            return "EXTERNAL AUTHENTICATE", b"", st.external_authenticate(data), False
        if cla in (0x84, 0x04) and ins in (0x24, 0x1E, 0xDA, 0x18):
            return "SCRIPT", b"", self._script(st, bytes([cla, ins, p1, p2]), data), False
        return "OTHER", b"", 0x6D00, False

    @staticmethod
    def _script(st: EmvState, head: bytes, data: bytes) -> int:
        """An issuer script command runs only with the issuer's MAC (EMV Book 2 9.2): its last 8 data bytes,
        over CLA INS P1 P2 Lc || ATC || the first GENERATE AC's ARQC || the other data, under this card's
        SMI session key. No ARQC yet: 6985; a wrong or missing MAC: 6988, and the command is not executed."""
        arqc = st.first.get(0x9F26)
        if st.first_kind != ARQC or arqc is None:
            return 0x6985
        if len(data) < SCRIPT_MAC:
            return 0x6988
        body, mac = data[:-SCRIPT_MAC], data[-SCRIPT_MAC:]
        try:
            expected = issuer.script_mac(st.emv.cvn, st.keys, st.atc.to_bytes(2, "big"), arqc,
                                         head + bytes([len(data)]), body)
        except issuer.IssuerError:
            return 0x6988
        if not hmac.compare_digest(expected, mac):
            return 0x6988
        return st.script(head[1])

    # ------------------------------------------------------------------ counters kept between insertions

    @staticmethod
    def _counters(st: EmvState) -> Counters:
        balance = getattr(st, "offline_balance", None)
        keeps = st.emv.offline_balance is not None  # an application without a balance keeps none (not 0)
        return Counters(st.atc, st.last_online_atc, st.pin_tries, st.blocked,
                        balance if keeps and isinstance(balance, int) else None)

    def _seed(self, app: App, st: EmvState) -> None:
        """This insertion's transaction starts from what the card kept (nothing kept: its personalisation)."""
        kept = self.counters.get(app.pan, app.aid)
        if kept is None:
            return
        st.atc, st.last_online_atc, st.pin_tries, st.blocked = (kept.atc, kept.last_online_atc, kept.pin_tries,
                                                                kept.blocked)
        if kept.offline_balance is not None and hasattr(st, "offline_balance"):
            setattr(st, "offline_balance", kept.offline_balance)  # noqa: B010  (an EmvState attribute being added)

    def _worn_out(self) -> tuple[str, bytes, int, bool]:
        """GPO at the last ATC: a real card never rolls its ATC over (a repeated ATC is a replay to the issuer,
        and ATC - last online ATC would go negative, so the offline limits would never fire). It refuses the
        transaction (6985: the terminal takes the next application) and its application stays blocked."""
        assert self.emv is not None
        self.emv.blocked = True
        self._save()
        self.emv, self._app = None, None  # no transaction: GENERATE AC and the rest answer 6985
        return "GPO", b"", 0x6985, True

    def _save(self) -> None:
        """After each command: what may have changed (ATC at GPO, PIN tries at VERIFY, last online ATC at the
        second GENERATE AC, a script's block) is kept; an unchanged state writes nothing."""
        st, app = self.emv, self._app
        if st is None or app is None:
            return
        try:
            self.counters.put(app.pan, app.aid, self._counters(st))
        except ValueError as e:  # a counter out of range (a hostile profile): the card answers on, unsaved
            if not self._unsaved:
                self._unsaved = True
                log.warning("card %s: counters not kept (%s)", self.profile.name, e)


def _split(cmd: bytes) -> tuple[bytes, int | None]:
    """(command data, Le) of a short APDU."""
    body = cmd[4:]
    if not body:
        return b"", None
    if len(body) == 1:
        return b"", body[0]
    lc = body[0]
    data = body[1 : 1 + lc]
    rest = body[1 + lc :]
    return data, (rest[0] if rest else None)
