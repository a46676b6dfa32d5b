"""The EMV reading sequence: application selection, GET PROCESSING OPTIONS, records → :class:`CardData`.

    from drivers import pcsc
    from drivers.emv.reader import EmvReader, Terminal
    with pcsc.connect("Virtual PCD 00 00") as conn:
        card = EmvReader(conn, schemes=config.cards.schemes, aids=config.cards.aids,
                         terminal=Terminal(country="012", currency="012"),
                         hmac_key=config.cards.hmac_key.get_secret_value()).read()
    card.scheme, card.pan_masked, card.expiry, card.apdu_count

Sequence (EMV Book 1 §12, Book 3 §10):

1. PSE ``1PAY.SYS.DDF01`` on contact (its directory records read until ``6A83``), PPSE ``2PAY.SYS.DDF01``
   on contactless (its FCI lists the applications: no record to read). If there is none, or it lists
   nothing, the configured AIDs are selected in order and the first one the card accepts is used (it is
   then already selected: no second SELECT).
2. Candidates are ordered by priority (tag ``87``, 1 first, none last), then in the card's order.
3. SELECT the candidate; GET PROCESSING OPTIONS with the PDOL (``9F38``) filled from :class:`Terminal`
   data (``6985`` → next candidate); answer in format 1 (``80``) or format 2 (``77``). The TTQ (``9F66``) is
   the selected application's: from the scheme rule its AID matches (``Terminal.ttq_for``).
4. READ RECORD of every record of every AFL (``94``) entry.
5. PAN from ``5A``, else the Track 2 equivalent (``57``) or ``9F6B``; expiry from ``5F24``, else Track 2.

Terminal-sourced data (:data:`TERMINAL_TAGS`: the amount, the unpredictable number, the TTQ, the TVR ...) is the
terminal's alone: a card that sends one in its FCI, GPO answer or records has it ignored (real cards echo a few
in their FCI), so every DOL, check and DE55 reads the terminal's value.

T=0 cards: ``61XX`` → GET RESPONSE (``Le = XX``, repeated while more is announced); ``6CXX`` → the same
command again with ``Le = XX``. Every APDU is counted in ``CardData.apdu_count``.

Bounds per read (a hostile card cannot keep the reader busy): at most ``MAX_RECORDS`` records (an AFL
listing more is refused before the first READ RECORD), ``MAX_BYTES`` of answers, ``MAX_APDUS`` commands,
and, when given, a ``deadline`` (``time.monotonic()``) and a ``cancel`` event, checked before every APDU and
while one runs (the read stops waiting for a stalled command; the command itself ends when the card or the
reader ends it). A PDOL asking for more than a GET PROCESSING OPTIONS can carry (252 bytes: Lc is at most 255) is
refused before anything is sent; no command leaves with more than 255 bytes of data.

Errors (all :class:`EmvError`, one line naming the command, tag or byte at fault): :class:`CardDataError`
(malformed answer: names the command and byte offset), :class:`CardStatusError` (an unexpected status
word), :class:`NoApplication`, :class:`MissingData` (no PAN or expiry), :class:`CardLimitError` (a bound
above), :class:`ReadTimeout` (the deadline), :class:`ReadCancelled` (the cancel event). Transport failures
are ``drivers.pcsc`` errors (``CardRemoved``, ``ReaderGone``, ...), passed through untouched.
"""

from __future__ import annotations

import datetime as _dt
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from config.schema import SchemeRule
from drivers.emv import tlv as T
from drivers.emv import tvr as V
from drivers.emv.card import CardData, SecretPan
from drivers.emv.dol import build_dol
from drivers.emv.schemes import detect_scheme, rule_for_aid
from drivers.emv.tags import SECRET_TAGS
from drivers.pan import luhn_valid, mask_pan, pan_token

PSE = b"1PAY.SYS.DDF01"
PPSE = b"2PAY.SYS.DDF01"
MAX_DIRECTORY_RECORDS = 32
MAX_GET_RESPONSE = 32  # bounded chaining: 32 x 256 bytes is more than any EMV answer
MAX_RECORDS = 64  # AFL records per read: real cards list 2 to 10
MAX_BYTES = 16 * 1024  # answer bytes per read: a real read is 1 to 3 KiB
MAX_APDUS = 256  # commands per read: a real read is 4 to 20
MAX_LC = 255  # command data of a short APDU
MAX_PDOL = MAX_LC - 3  # GPO data is 83 L V: with V > 127, L takes 2 bytes
WATCH_STEP = 0.02  # seconds between two looks at the cancel and the deadline while a command runs


class EmvError(Exception):
    """A card that cannot be read as an EMV payment card."""


class CardDataError(EmvError):
    """The card answered malformed data."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class CardStatusError(EmvError):
    """The card answered an unexpected status word."""

    def __init__(self, command: str, sw: int) -> None:
        super().__init__(f"the card answered {sw:04X} to {command}")
        self.command = command
        self.sw = sw


class NoApplication(EmvError):
    """No payment application the terminal supports."""


class MissingData(EmvError):
    """The card did not give the PAN or the expiry date."""


class CardLimitError(EmvError):
    """The card asks for more than one read allows (records, bytes, commands): refused, not read."""


class ReadTimeout(EmvError):
    """The read passed its deadline (the card answers too slowly, or asks for too much)."""


class ReadCancelled(EmvError):
    """The caller's cancel event was set during the read: stopped between two commands."""


class Transport(Protocol):
    def transmit(self, apdu: bytes) -> tuple[bytes, int]: ...


@dataclass
class Terminal:
    """Terminal-side data used to fill the card's PDOL (EMV Book 3 annex A)."""

    country: str = "012"  # ISO 3166-1 numeric (Algeria 012, Tunisia 788)
    currency: str = "012"  # ISO 4217 numeric (DZD 012, TND 788)
    amount: int = 0  # minor units
    transaction_type: int = 0x00  # goods and services
    # Contactless: the TTQ for an application no scheme rule names (drivers.emv.tvr.ttq: online cryptogram
    # required, no online PIN); a named one gets its rule's (ttq_for).
    ttq: bytes = V.ttq(0, 0)
    offline_ok: bool = False  # the agent would take an offline approval of `amount` (a tap's TC with fDDA)
    terminal_type: int = 0x22  # attended, online with offline capability
    capabilities: bytes = bytes.fromhex("E0B0C8")
    additional_capabilities: bytes = bytes.fromhex("6000F0A001")
    now: Callable[[], _dt.datetime] = field(default=_dt.datetime.now, repr=False)

    def data(self) -> dict[int, bytes]:
        now = self.now()
        return {
            0x9F02: _bcd(self.amount, 6),
            0x9F03: bytes(6),
            0x9F1A: _bcd(int(self.country), 2),
            0x5F2A: _bcd(int(self.currency), 2),
            0x9A: bytes.fromhex(now.strftime("%y%m%d")),
            0x9F21: bytes.fromhex(now.strftime("%H%M%S")),
            0x9C: bytes([self.transaction_type]),
            0x9F37: os.urandom(4),
            0x95: bytes(5),
            0x9F66: self.ttq,
            0x9F35: bytes([self.terminal_type]),
            0x9F33: self.capabilities,
            0x9F40: self.additional_capabilities,
        }

    def ttq_for(self, rule: SchemeRule | None) -> bytes:
        """The TTQ sent to the selected application: its scheme rule's contactless CVM and floor limits
        (drivers.emv.tvr.ttq; a floor limit of 0: never offline), or ``ttq`` when no rule names its AID.

        >>> t = Terminal(amount=5000, offline_ok=True)
        >>> [t.ttq_for(SchemeRule(name="V", cl_floor_limit=f)).hex().upper() for f in (10000, 0)], t.ttq.hex()
        (['32004000', '32804000'], '32804000')
        """
        if rule is None:
            return self.ttq
        return V.ttq(self.amount, rule.cl_cvm_limit, rule.cl_floor_limit, offline_ok=self.offline_ok)


def _bcd(n: int, size: int) -> bytes:
    return bytes.fromhex(str(n).rjust(size * 2, "0")[-size * 2 :])


# Book 3 annex A, source "Terminal" (and what the kernel itself sets: TVR, TSI, 9F09, CVM results, 8A, IFD serial):
# never taken from the card.
TERMINAL_TAGS = frozenset(Terminal().data()) | {0x95, 0x9B, 0x9F09, 0x9F34, 0x8A, 0x9F1E}


@dataclass
class Candidate:
    aid: bytes
    label: str = ""
    priority: int = 0
    preferred_name: str = ""
    fci: list[T.TLV] | None = None  # already selected (AID-list method)

    @property
    def rank(self) -> int:
        p = self.priority & 0x0F
        return p if p else 16


def _text(raw: bytes | None) -> str:
    if not raw:
        return ""
    return raw.decode("latin-1").strip().strip("\x00")


def _decode(data: bytes, what: str) -> list[T.TLV]:
    try:
        return T.decode(data)
    except T.TLVError as e:
        raise CardDataError(f"malformed answer to {what}: {e}", e.offset) from None


def select_apdu(name: bytes, first: bool = True) -> tuple[int, int, int, int, bytes]:
    return (0x00, 0xA4, 0x04, 0x00 if first else 0x02, name)


@dataclass
class _Job:
    apdu: bytes
    done: threading.Event = field(default_factory=threading.Event)
    answer: tuple[bytes, int] | None = None
    error: BaseException | None = None


class _CommandThread:
    """One thread that sends a read's commands, one at a time, so the reading thread can stop waiting."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="card-commands", daemon=True).start()

    def submit(self, apdu: bytes) -> _Job:
        job = _Job(apdu)
        self._jobs.put(job)
        return job

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job.answer = self.transport.transmit(job.apdu)
            except BaseException as e:  # noqa: BLE001 - handed to the reading thread, raised there
                job.error = e
            finally:
                job.done.set()


class EmvReader:
    """Reads one card over ``transport`` (anything with ``transmit(apdu) -> (data, sw)``)."""

    def __init__(
        self,
        transport: Transport,
        *,
        schemes: Sequence[SchemeRule] = (),
        aids: Sequence[str] = (),
        terminal: Terminal | None = None,
        hmac_key: bytes | str | None = None,
        interface: str | None = None,
        cancel: threading.Event | None = None,
        deadline: float | None = None,
        max_records: int = MAX_RECORDS,
        max_bytes: int = MAX_BYTES,
        max_apdus: int = MAX_APDUS,
        choose: Callable[[list[Candidate]], int | None] | None = None,
    ) -> None:
        self.transport = transport
        # Book 3 12.4: the cardholder's choice among the card's applications (index, or None: none chosen).
        # Without it, an application whose priority (87) asks for confirmation (b8) is never selected.
        self.choose = choose
        self.schemes = schemes
        self.aids = [bytes.fromhex(a) for a in aids]
        self.terminal = terminal or Terminal()
        self.hmac_key = hmac_key
        self.interface: str = interface or str(getattr(transport, "interface", "contact"))
        self.cancel = cancel
        self.deadline = deadline  # time.monotonic() value
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_apdus = max_apdus
        self.apdu_count = 0
        self.bytes_read = 0
        self.records_read = 0
        self.trace: list[tuple[bytes, int]] = []  # (command header+data, sw): no response data kept
        self._worker: _CommandThread | None = None
        # What the kernel (drivers.emv.kernel) goes on with after read(): the selected application's data.
        self.terminal_data: dict[int, bytes] = {}  # fixed for the transaction (9F37, 9A, ...), PDOL and CDOLs
        self.fci: list[T.TLV] = []
        self.gpo_items: list[T.TLV] = []
        self.aip = b""
        self.afl = b""
        self.pdol_data = b""
        self.record_items: list[T.TLV] = []
        self.oda_records = bytearray()  # Book 3 10.3: the records the AFL marks for offline data authentication
        self.oda_record_error = False  # a marked record is not a 70 template: ODA fails (SDA/DDA/CDA failed)

    # ------------------------------------------------------------------ APDU level

    def _tx(self, apdu: bytes) -> tuple[bytes, int]:
        # Checked before every command: the cashier's cancel and the deadline end a read between two APDUs.
        if self.cancel is not None and self.cancel.is_set():
            raise ReadCancelled("the card read was cancelled")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise ReadTimeout(f"the card read took too long ({self.apdu_count} commands, {self.bytes_read} bytes)")
        if self.apdu_count >= self.max_apdus:
            raise CardLimitError(f"the card needs more than {self.max_apdus} commands to be read")
        self.apdu_count += 1
        data, sw = self._watched(apdu)
        self.trace.append((apdu[:4], sw))
        self.bytes_read += len(data)
        if self.bytes_read > self.max_bytes:
            raise CardLimitError(
                f"the card sent more than {self.max_bytes} bytes (at command {apdu[:4].hex().upper()})"
            )
        return data, sw

    def _watched(self, apdu: bytes) -> tuple[bytes, int]:
        """One transmit, given up at the deadline or on cancel even while the card holds it.

        Commands run in a thread of this read's own; the read stops waiting for a stalled one, not the command
        (pcscd cannot cut it short): closing a ``drivers.pcsc.Connection`` then returns at once, and the
        command's thread closes the session when the card or the reader ends it (docs/cards.md, "one command")."""
        if self.cancel is None and self.deadline is None:
            return self.transport.transmit(apdu)
        if self._worker is None:
            self._worker = _CommandThread(self.transport)
        job = self._worker.submit(apdu)
        while not job.done.wait(WATCH_STEP):
            if self.cancel is not None and self.cancel.is_set():
                self._abandon()
                raise ReadCancelled(f"the card read was cancelled during command {apdu[:4].hex().upper()}")
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self._abandon()
                raise ReadTimeout(f"the card read took too long (no answer to command {apdu[:4].hex().upper()} "
                                  f"in time, {self.apdu_count} commands, {self.bytes_read} bytes)")
        if job.error is not None:
            raise job.error
        assert job.answer is not None
        return job.answer

    def _abandon(self) -> None:
        """Leave the command thread to its command: it ends after it (a new read gets a new thread)."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def command(self, cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = 0) -> tuple[bytes, int]:
        """One command with T=0 chaining handled; ``(response data, final sw)``."""
        head = bytes([cla, ins, p1, p2])
        if len(data) > MAX_LC:  # checked before sending: a short APDU cannot carry it
            raise CardDataError(f"command {head.hex().upper()}: {len(data)} bytes of data, at most {MAX_LC} fit")
        body = (bytes([len(data)]) + data) if data else b""
        apdu = head + body + (bytes([le]) if le is not None else b"")
        resp, sw = self._tx(apdu)
        if sw >> 8 == 0x6C:  # wrong Le: the card tells the right one
            resp, sw = self._tx(head + body + bytes([sw & 0xFF]))
        out = bytearray(resp)
        for _ in range(MAX_GET_RESPONSE):
            if sw >> 8 != 0x61:
                break
            resp, sw = self._tx(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
            if sw >> 8 == 0x6C:
                resp, sw = self._tx(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
            out += resp
        else:
            raise CardDataError("the card keeps announcing more data (61XX) past 8 KiB")
        return bytes(out), sw

    def select(self, name: bytes) -> tuple[list[T.TLV] | None, int]:
        data, sw = self.command(*select_apdu(name))
        if sw != 0x9000:
            return None, sw
        return _decode(data, f"SELECT {name.hex().upper()}"), sw

    def read_record(self, sfi: int, rec: int) -> tuple[bytes, int]:
        return self.command(0x00, 0xB2, rec, (sfi << 3) | 0x04)

    # ------------------------------------------------------------------ selection

    def _directory_entries(self, items: list[T.TLV]) -> list[Candidate]:
        out: list[Candidate] = []
        for item in T.walk(items):
            if item.tag != 0x61:
                continue
            aid = T.find_value(item.children, 0x4F)
            if not aid:
                continue  # a DDF entry (9D) or junk: nothing to select
            prio = T.find_value(item.children, 0x87)
            out.append(
                Candidate(
                    aid=aid,
                    label=_text(T.find_value(item.children, 0x50)),
                    priority=prio[0] if prio else 0,
                    preferred_name=_text(T.find_value(item.children, 0x9F12)),
                )
            )
        return out

    def _pse(self) -> list[Candidate] | None:
        fci, sw = self.select(PSE)
        if fci is None:
            self._expect_not_found(sw, "SELECT PSE")
            return None
        sfi_raw = T.find_value(fci, 0x88)
        if not sfi_raw or not 1 <= sfi_raw[0] <= 30:
            raise CardDataError("the PSE answer has no valid directory SFI (88)")
        sfi = sfi_raw[0]
        found: list[Candidate] = []
        for rec in range(1, MAX_DIRECTORY_RECORDS + 1):
            data, sw = self.read_record(sfi, rec)
            if sw == 0x6A83:
                break
            if sw != 0x9000:
                raise CardStatusError(f"READ RECORD SFI {sfi} record {rec} (PSE directory)", sw)
            items = _decode(data, f"READ RECORD SFI {sfi} record {rec}")
            if not items or items[0].tag != 0x70:
                raise CardDataError(f"PSE directory record {rec} is not a 70 template")
            found += self._directory_entries(items)
        return found

    def _ppse(self) -> list[Candidate] | None:
        fci, sw = self.select(PPSE)
        if fci is None:
            self._expect_not_found(sw, "SELECT PPSE")
            return None
        return self._directory_entries(fci)

    @staticmethod
    def _expect_not_found(sw: int, what: str) -> None:
        # "No such file" or "function not supported"/"blocked": fall back to the AID list. Anything else
        # (6F00, 6D00 ...) is a broken card.
        if sw in (0x6A82, 0x6A81, 0x6283, 0x6A86, 0x6985, 0x6E00, 0x6D00) and what.endswith("PSE"):
            return
        raise CardStatusError(what, sw)

    def _by_aid_list(self) -> list[Candidate]:
        for aid in self.aids:
            fci, sw = self.select(aid)
            if fci is not None:
                return [Candidate(aid=aid, fci=fci)]
            if sw not in (0x6A82, 0x6A81, 0x6283):
                raise CardStatusError(f"SELECT {aid.hex().upper()}", sw)
        return []

    def candidates(self) -> list[Candidate]:
        first = self._ppse if self.interface == "contactless" else self._pse
        found = first()
        if not found:
            return self._by_aid_list()
        ordered = sorted(found, key=lambda c: c.rank)  # sorted() is stable: card order within a priority
        return self._confirmed(ordered)

    def _confirmed(self, ordered: list[Candidate]) -> list[Candidate]:
        """Book 3 12.4: several applications, or one that asks for confirmation (87 b8): the cardholder chooses
        when the terminal can ask; otherwise those asking for confirmation are left out."""
        asks = [c for c in ordered if c.priority & 0x80]
        if not asks:
            return ordered
        if self.choose is None:
            kept = [c for c in ordered if not c.priority & 0x80]
            if not kept:
                raise NoApplication("the card's application needs the cardholder's confirmation, which this "
                                    "terminal cannot ask")
            return kept
        pick = self.choose(ordered)
        if pick is None or not 0 <= pick < len(ordered):
            raise ReadCancelled("the customer chose no application on the card")
        return [ordered[pick]]

    # ------------------------------------------------------------------ processing

    def _gpo(self, fci: list[T.TLV], aid: str) -> tuple[list[T.TLV], bytes, bytes] | None:
        pdol = T.find_value(fci, 0x9F38)
        if not self.terminal_data:
            self.terminal_data = self.terminal.data()
        # GPO follows SELECT: the TTQ is this application's scheme's (its floor and CVM limits), not a guess
        self.terminal_data[0x9F66] = self.terminal.ttq_for(rule_for_aid(self.schemes, aid))
        try:
            dol_data = build_dol(pdol, self.terminal_data, limit=MAX_PDOL) if pdol else b""
        except T.TLVError as e:
            raise CardDataError(f"PDOL (9F38) refused: {e}", e.offset) from None
        data, sw = self.command(0x80, 0xA8, 0x00, 0x00, T.encode(T.tlv(0x83, dol_data)))
        if sw == 0x6985:
            return None  # conditions of use not satisfied: next application
        if sw != 0x9000:
            raise CardStatusError("GET PROCESSING OPTIONS", sw)
        self.pdol_data = dol_data
        items = _decode(data, "GET PROCESSING OPTIONS")
        if len(items) != 1:
            raise CardDataError("GET PROCESSING OPTIONS: expected one template")
        top = items[0]
        if top.tag == 0x80:
            if len(top.value) < 2 or (len(top.value) - 2) % 4:
                raise CardDataError(f"GET PROCESSING OPTIONS format 1: bad length {len(top.value)}")
            return [], top.value[:2], top.value[2:]
        if top.tag == 0x77:
            aip = T.find_value(top.children, 0x82)
            afl = T.find_value(top.children, 0x94) or b""
            if aip is None or len(aip) != 2:
                raise CardDataError("GET PROCESSING OPTIONS format 2: no AIP (82)")
            return list(top.children), aip, afl
        raise CardDataError(f"GET PROCESSING OPTIONS: unexpected template {T.tag_name(top.tag)}")

    def _records(self, afl: bytes) -> list[T.TLV]:
        if len(afl) % 4:
            raise CardDataError(f"AFL (94) length {len(afl)} is not a multiple of 4")
        entries: list[tuple[int, int, int, int]] = []
        listed = 0
        for i in range(0, len(afl), 4):
            sfi, first, last, oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
            if not 1 <= sfi <= 30 or first == 0 or last < first or oda > last - first + 1:
                raise CardDataError(f"AFL entry {i // 4 + 1} is invalid ({afl[i:i + 4].hex().upper()})", i)
            entries.append((sfi, first, last, oda))
            listed += last - first + 1
        # Refused before the first READ RECORD: a card listing thousands would hold the reader for minutes.
        if self.records_read + listed > self.max_records:
            raise CardLimitError(
                f"the card lists {listed} records in its AFL (94); at most {self.max_records} are read"
            )
        out: list[T.TLV] = []
        for sfi, first, last, oda in entries:
            for rec in range(first, last + 1):
                self.records_read += 1
                data, sw = self.read_record(sfi, rec)
                if sw != 0x9000:
                    raise CardStatusError(f"READ RECORD SFI {sfi} record {rec}", sw)
                signed = rec < first + oda
                if sfi > 10:
                    if signed:  # Book 3 10.3: records of SFI 11-30 are signed whole, tag and length included
                        self.oda_records += data
                    continue  # issuer-proprietary format: not ours to parse
                items = _decode(data, f"READ RECORD SFI {sfi} record {rec}")
                if len(items) != 1 or items[0].tag != 0x70:
                    raise CardDataError(f"record SFI {sfi} record {rec} is not a 70 template")
                if signed:  # SFI 1-10: the 70 template's value only
                    self.oda_records += _value_of(data)
                out += items
        return out

    def read(self) -> CardData:
        """The whole sequence; the returned ``CardData`` carries the PAN until wiped."""
        try:
            return self._read()
        finally:
            self._abandon()

    def _read(self) -> CardData:
        t0 = time.perf_counter()
        tried: list[str] = []
        for cand in self.candidates():
            fci = cand.fci
            if fci is None:
                fci, sw = self.select(cand.aid)
                if fci is None:
                    tried.append(f"{cand.aid.hex().upper()} ({sw:04X})")
                    continue
            gpo = self._gpo(fci, (T.find_value(fci, 0x84) or cand.aid).hex().upper())
            if gpo is None:
                tried.append(f"{cand.aid.hex().upper()} (GPO 6985)")
                continue
            gpo_items, aip, afl = gpo
            self.fci, self.gpo_items, self.aip, self.afl = fci, gpo_items, aip, afl
            records = self._records(afl)
            _no_duplicates(gpo_items + records)
            card = self._card_data(cand, fci, gpo_items + records)
            # PCI DSS: the PAN, track data and name live in the CardData alone (wiped after the transaction);
            # terminal-sourced tags the card sent are dropped: the kernel reads only the terminal's
            self.fci, self.gpo_items = _card_only(fci), _card_only(gpo_items)
            self.record_items = _card_only(records)
            object.__setattr__(card, "elapsed_ms", (time.perf_counter() - t0) * 1000)
            return card
        detail = f" (tried {', '.join(tried)})" if tried else ""
        raise NoApplication(f"no supported payment application on the card{detail}")

    def _card_data(self, cand: Candidate, fci: list[T.TLV], items: list[T.TLV]) -> CardData:
        everything = fci + items
        pan, expiry = _pan_and_expiry(everything)
        aid = (T.find_value(fci, 0x84) or cand.aid).hex().upper()
        label = _text(T.find_value(fci, 0x50)) or cand.label
        preferred = _text(T.find_value(fci, 0x9F12)) or cand.preferred_name
        seq = T.find_value(everything, 0x5F34)
        country = T.find_value(everything, 0x5F28)
        currency = T.find_value(everything, 0x9F42)
        lang = T.find_value(everything, 0x5F2D)
        scheme = detect_scheme(self.schemes, aid=aid, pan=pan, label=label, preferred_name=preferred)
        card = CardData(
            scheme=scheme,
            pan_masked=mask_pan(pan),
            pan_token=pan_token(pan, self.hmac_key) if self.hmac_key else "",
            expiry=expiry,
            aid=aid,
            label=label,
            preferred_name=preferred,
            language=_text(lang).lower(),
            interface=self.interface,
            pan_sequence=seq.hex()[-2:] if seq else None,
            issuer_country=currency_or_country(country),
            app_currency=currency_or_country(currency),
            apdu_count=self.apdu_count,
            reader=getattr(self.transport, "reader", ""),
            atr=bytes(getattr(self.transport, "atr", b"")).hex().upper(),
        )
        return card.attach_pan(SecretPan(pan))




def _no_duplicates(items: list[T.TLV]) -> None:
    """Book 3 10.2: one primitive twice in the GPO answer and records ends the transaction (which copy is
    signed, which one would be charged?).

    >>> _no_duplicates(T.decode(bytes.fromhex("7008" "5A021234" "5A025678")))
    Traceback (most recent call last):
    drivers.emv.reader.CardDataError: the card sent 5A twice in its GPO answer and records
    """
    seen: set[int] = set()
    for item in T.walk(items):
        if item.constructed or item.tag in TERMINAL_TAGS:  # ignored anyway (TERMINAL_TAGS)
            continue
        if item.tag in seen:
            raise CardDataError(f"the card sent {T.tag_name(item.tag)} twice in its GPO answer and records")
        seen.add(item.tag)


def _card_only(items: list[T.TLV] | tuple[T.TLV, ...]) -> list[T.TLV]:
    """`items` without the secret tags (PCI DSS) and without terminal-sourced ones (:data:`TERMINAL_TAGS`).

    >>> [template] = _card_only(T.decode(bytes.fromhex("700F" "9F370411223344" "5A021234" "5F340100")))
    >>> [f"{i.tag:X}" for i in template.children]         # the card's 9F37 and its PAN are gone
    ['5F34']
    """
    return [T.TLV(i.tag, i.value, tuple(_card_only(i.children))) for i in items
            if i.tag not in SECRET_TAGS and i.tag not in TERMINAL_TAGS]


def _value_of(record: bytes) -> bytes:
    """The value bytes of the 70 template that starts ``record`` (already checked to decode), as signed."""
    start = record.index(0x70)  # 00 padding may come first
    first = record[start + 1]
    if first & 0x80:
        n = first & 0x7F
        length = int.from_bytes(record[start + 2 : start + 2 + n], "big")
        pos = start + 2 + n
    else:
        length, pos = first, start + 2
    return record[pos : pos + length]


def currency_or_country(raw: bytes | None) -> str | None:
    if not raw:
        return None
    return raw.hex()[-3:]


def _pan_and_expiry(items: list[T.TLV]) -> tuple[str, str]:
    pan = ""
    expiry = ""
    raw = T.find_value(items, 0x5A)
    if raw:
        pan = raw.hex().upper().rstrip("F")
    exp_raw = T.find_value(items, 0x5F24)
    if exp_raw:
        if len(exp_raw) != 3:
            raise CardDataError(f"expiry date (5F24) has {len(exp_raw)} bytes, expected 3")
        expiry = _expiry(exp_raw.hex()[:4], "5F24")
    track2 = T.find_value(items, 0x57) or T.find_value(items, 0x9F6B)
    if track2 and (not pan or not expiry):
        digits = track2.hex().upper()
        sep = digits.find("D")
        if sep < 0 or len(digits) < sep + 5:
            raise CardDataError("Track 2 equivalent (57) has no field separator and expiry")
        pan = pan or digits[:sep]
        expiry = expiry or _expiry(digits[sep + 1 : sep + 5], "57")
    if not pan:
        raise MissingData("the card gave no card number (neither 5A nor 57)")
    if not expiry:
        raise MissingData("the card gave no expiry date (neither 5F24 nor 57)")
    if not pan.isdigit() or not 12 <= len(pan) <= 19:
        raise CardDataError(f"the card number has {len(pan)} characters, not 12 to 19 digits")
    if not luhn_valid(pan):
        raise CardDataError("the card number fails the Luhn check (misread card?)")
    return pan, expiry


def _expiry(yymm: str, tag: str) -> str:
    if not yymm.isdigit() or not 1 <= int(yymm[2:]) <= 12:
        raise CardDataError(f"expiry date in {tag} is not a valid YYMM")
    yy = int(yymm[:2])
    year = 2000 + yy if yy < 50 else 1900 + yy
    return f"{year:04d}-{yymm[2:]}"
