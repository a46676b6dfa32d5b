"""One EMV contact transaction (EMV Book 3 chapter 10), driven step by step by :class:`Kernel`.

    reader = EmvReader(conn, schemes=..., terminal=Terminal(amount=345600, ...), hmac_key=..., deadline=...)
    k = Kernel(reader, params, pin_pad=PinPad.detect(PcscControl(conn)), on_stage=print)
    first = k.start()                 # selection, GPO, records, ODA, restrictions, CVM, risk, action analysis,
                                      # first GENERATE AC; k.card is the CardData (PAN until wiped)
    if first.kind == "ARQC":
        de55 = k.online_data()        # chip data for POST /v1/authorizations (never 5A, 57, 9F1F)
        done = k.complete(IssuerAnswer(approved=True, response_code="00", tlvs=decode(answer_emv)))
        # or k.complete(None): the server could not be reached (8A Z3, default action codes)
    k.result()                        # TransactionResult: outcome, TVR, TSI, CVM results, cryptograms, scripts

Contactless (one tap, Visa kernel 3): the cryptogram comes with GET PROCESSING OPTIONS; an offline TC is
approved (Y1) only when our TTQ let it (``ttq``, from ``drivers.emv.tvr``), the scheme's ``cl_floor_limit`` takes
the amount and fDDA verifies (``oda.verify_fdda``), the CTQ the card signed in 9F69 being the one that counts (a
9F6C that differs fails fDDA). ``result().offline_balance`` is what the card says it has left (9F5D, after this
tap); ``result().oda_error`` says why offline data authentication failed (a short reason, no card data).

Terminal-sourced tags (``drivers.emv.reader.TERMINAL_TAGS``: amount, unpredictable number, TTQ ...) are never
taken from the card: every check, DOL and DE55 reads the terminal's own.

Stages (``on_stage``): ``reading_card``, ``enter_pin``, ``wrong_pin``, ``do_not_remove``, ``remove_card``.
Every failure of offline data authentication, restrictions, CVM or risk management is a TVR bit, never an
exception; what a card answers wrongly at GENERATE AC is a :class:`KernelError` (a ``drivers.emv.EmvError``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.emv import action, cvm, oda, restrictions, risk
from drivers.emv import tlv as T
from drivers.emv import tvr as V
from drivers.emv.card import CardData
from drivers.emv.dol import build_dol, parse_dol
from drivers.emv.genac import (
    GenAc,
    GenAcError,
    ScriptResult,
    external_authenticate,
    generate_ac,
    kind_of,
    run_scripts,
)
from drivers.emv.pinpad import SW_CANCELLED, SW_TIMEOUT, PinPad, PinPadError
from drivers.emv.reader import SECRET_TAGS, TERMINAL_TAGS, EmvError, EmvReader

# The TTQ/CTQ bits and the TTQ's rule live in drivers.emv.tvr (the reader's Terminal takes them too); re-exported.
from drivers.emv.tvr import CTQ_CDCVM, CTQ_ONLINE_PIN, CTQ_SIGNATURE, TTQ_ONLINE_CRYPTOGRAM
from drivers.emv.tvr import TTQ_BASE as TTQ_BASE
from drivers.emv.tvr import TTQ_CVM_REQUIRED as TTQ_CVM_REQUIRED
from drivers.emv.tvr import ttq as ttq

# SECRET_TAGS (drivers.emv.reader): never leave the kernel (PCI DSS: the PAN, track data, discretionary data).
# Contract 1.1: the DE55 tags sent with an authorization, in this order (5F34, 9F66, 9F6E when present).
DE55_TAGS = (0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x9F03, 0x5F2A, 0x82, 0x9F1A,
             0x9F34, 0x9F33, 0x9F35, 0x84, 0x9F09, 0x5F34, 0x9F66, 0x9F6E)
DEFAULT_DDOL = bytes.fromhex("9F3704")
MAX_PIN_ENTRIES = 3  # entries on the pad per transaction, while the card still has tries left

# AIP byte 1 (Book 3 C1)
AIP_CVM = 0x10
AIP_TRM = 0x08
AIP_ISSUER_AUTH = 0x04


class KernelError(EmvError):
    """The card broke the transaction at GENERATE AC or completion (malformed or refused answer)."""


class InsertCard(EmvError):
    """A tap the contactless rules refuse (over the scheme's contactless limit, over its CVM limit without a
    consumer-device CVM, or an offline TC our TTQ or the scheme's floor limit did not allow): the customer inserts
    the card instead. Nothing was sent."""


@dataclass(frozen=True)
class KernelParams:
    tac: action.ActionCodes
    floor_limit: int = 0
    random: risk.RandomSelection = field(default_factory=risk.RandomSelection)
    app_version: bytes = b"\x00\x02"  # 9F09
    ca_key: Callable[[str, int], oda.RsaKey | None] = lambda rid, index: None
    online_capable: bool = True
    pin_timeout: int = 30
    today: Callable[[], _dt.date] = _dt.date.today
    cl_limit: int = 0  # contactless transaction limit, minor units (0: none)
    cl_cvm_limit: int = 0  # from this amount a tap needs a CVM (0: none)
    cl_floor_limit: int = 0  # below this amount a tap may be approved offline by the card (0: never)
    # Whether the agent takes an offline approval of this amount (its [offline] limits, and the server not
    # reachable): when False a TC is never asked (ARQC when online-capable, else AAC).
    offline_tc: bool = True


@dataclass
class IssuerAnswer:
    approved: bool
    response_code: str  # two characters, the 8A
    tlvs: list[T.TLV] = field(default_factory=list)  # 91, 8A, 71, 72 from the answer's emv


@dataclass
class TransactionResult:
    outcome: str  # approved | declined
    response_code: str  # what the card was told (8A): 00, 05 ..., or Y1/Z1 (offline), Y3/Z3 (unable online)
    oda: str | None  # sda | dda | cda | None
    oda_ok: bool | None
    cvm: str
    cvm_results: str
    tvr: str
    tsi: str
    cryptograms: list[str]  # the kind at each GENERATE AC
    issuer_authenticated: bool | None = None
    scripts: list[dict[str, Any]] = field(default_factory=list)
    signature_required: bool = False
    pin_message: str = ""
    de55: str = ""  # hex TLV of the final cryptogram's chip data: no 5A, 57, 9F1F
    offline_balance: int | None = None  # a tap: the card's offline balance left after it (9F5D), minor units
    oda_error: str = ""  # why offline data authentication failed: a short reason, never card data

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Kernel:
    def __init__(
        self,
        reader: EmvReader,
        params: KernelParams | Callable[[CardData], KernelParams],
        *,
        pin_pad: PinPad | None = None,
        on_stage: Callable[[str], None] | None = None,
    ) -> None:
        self.reader = reader
        # The scheme's codes and limits are known once the application is selected: a callable gets the card.
        self._params_for = params if callable(params) else None
        self.params: KernelParams = params if isinstance(params, KernelParams) else KernelParams(
            tac=action.ActionCodes(action.ONES, action.ONES, action.ONES))
        self.pin_pad = pin_pad
        self.on_stage = on_stage or (lambda _key: None)
        self.tvr = V.Tvr()
        self.tsi = V.Tsi()
        self.data: dict[int, bytes] = {}
        self.card: CardData | None = None
        self.oda_method: str | None = None
        self.oda_ok: bool | None = None
        self.oda_error = ""
        self.icc_key: oda.RsaKey | None = None
        self.cvm_outcome: cvm.CvmOutcome | None = None
        self.pin_message = ""
        self.acs: list[GenAc] = []
        self.cdol1_data = b""
        self.first_tags: dict[int, bytes] = {}  # the chip data as the first GENERATE AC signed it
        self.final_tags: dict[int, bytes] = {}
        self.scripts: list[ScriptResult] = []
        self.issuer_auth: bool | None = None
        self.response_code = ""
        self.outcome = ""
        self.one_tap = False  # contactless qVSDC-style: the cryptogram came with GET PROCESSING OPTIONS
        self.offline_balance: int | None = None  # what the tapped card has left to spend offline (9F5D)

    # ------------------------------------------------------------------ steps

    def start(self) -> GenAc:
        """Everything up to and including the first GENERATE AC."""
        self.on_stage("reading_card")
        card = self.reader.read()
        self.card = card
        if self._params_for is not None:
            self.params = self._params_for(card)
        self._collect()
        if self.reader.interface == "contactless":
            self._cl_limit()
            if _in_gpo(self.reader, 0x9F26) and _in_gpo(self.reader, 0x9F27):
                try:
                    return self._one_tap()
                finally:
                    self.reader.oda_records[:] = bytes(len(self.reader.oda_records))
            self._cl_cvm_limit()
        if 0x9F26 in self.data or 0x9F27 in self.data:
            # Book 3: a cryptogram comes from GENERATE AC only (a tap's qVSDC one in its GPO answer)
            raise KernelError("the card sent a cryptogram (9F26/9F27) before GENERATE AC")
        try:
            self._oda_static(card.pan_for_check())  # ODA's certificates name the PAN; signed records hold it
        finally:
            self.reader.oda_records[:] = bytes(len(self.reader.oda_records))
        restrictions.check(self.data, terminal_version=self.params.app_version, country=_country(self.data),
                           today=self.params.today(), tvr=self.tvr)
        self._cvm()
        self._risk()
        asked = action.first_ac(bytes(self.tvr), self.params.tac, self.data,
                                online_capable=self.params.online_capable)
        refused_offline = asked == "TC" and not self.params.offline_tc
        if refused_offline:  # the agent's offline limits, or the server is there: no offline approval
            asked = "ARQC" if self.params.online_capable else "AAC"
        self.on_stage("do_not_remove")
        first = self._generate("first", asked, self.data.get(0x8C))
        self.tsi.set(V.TSI_CARD_RISK)
        if first.kind == "AAC":
            self._finish("declined", "Z3" if refused_offline and not self.params.online_capable else "Z1")
        elif first.kind == "TC":
            self._finish("approved", "Y1")
        return first

    def _one_tap(self) -> GenAc:
        """Contactless, qVSDC-style: the card computed its cryptogram during GPO; every card command is done,
        the card may leave the field now (Visa CL kernel 3: no GENERATE AC, no second cryptogram)."""
        self.one_tap = True
        cid, kind = self._one_tap_cryptogram()
        reported = _bcd_amount(self.data.get(0x9F5D))
        if kind == "TC":
            self._offline_tap(self._amount())
        else:
            self.tvr.set(V.ODA_NOT_PERFORMED)  # an online tap: the issuer checks its cryptogram (no fDDA asked)
        # What the card says it has left to spend offline, this tap taken (Visa: the Available Offline Spending
        # Amount comes back already reduced by an offline-approved amount).
        self.offline_balance = reported
        # The CTQ as it stands now: the signed one after a verified fDDA (_fdda), else the card's 9F6C.
        ctq = self.data.get(0x9F6C, b"")
        if len(ctq) == 2 and ctq[0] & CTQ_ONLINE_PIN and not _cdcvm(self.data):
            # our TTQ claims no online PIN (it needs the TPE): the card's own CVM request is met by the contact
            # interface, where its CVM list runs
            raise InsertCard("the card asks for its PIN, which a tap here cannot take: insert the card")
        self._cl_cvm_limit()
        if _cdcvm(self.data):
            self.cvm_outcome = cvm.CvmOutcome(bytes.fromhex("010002"), "cdcvm")
        elif len(ctq) == 2 and ctq[0] & CTQ_SIGNATURE:
            self.cvm_outcome = cvm.CvmOutcome(bytes.fromhex("1E0000"), "signature", signature=True)
        if self.cvm_outcome is not None:
            self.data[0x9F34] = self.cvm_outcome.results
        ac = GenAc(cid, kind, self.data[0x9F36], self.data[0x9F26], self.data.get(0x9F10, b""))
        self.acs.append(ac)
        self.data[0x95] = bytes(self.tvr)
        self.first_tags = dict(self.data)
        # The TVR the card MACed is the one the terminal sent in the PDOL (zeros at GPO time).
        self.first_tags[0x95] = self.reader.terminal_data.get(0x95, bytes(5))
        self.on_stage("remove_card")
        if kind == "AAC":
            self._finish("declined", "Z1")
        elif kind == "TC":
            self._finish("approved" if self.oda_ok else "declined", "Y1" if self.oda_ok else "Z1")
        return ac

    def _one_tap_cryptogram(self) -> tuple[int, str]:
        """The GPO answer's cryptogram: 9F26 of 8 bytes, 9F27 of 1 byte naming an AAC, TC or ARQC, 9F36 of 2
        bytes (the acquirer parses the DE55 the same way: anything else could never be collected)."""
        for tag, size in ((0x9F27, 1), (0x9F26, 8), (0x9F36, 2)):
            value = self.data.get(tag)
            if value is None or len(value) != size:
                got = "missing" if value is None else f"{len(value)} bytes"
                raise KernelError(f"contactless GET PROCESSING OPTIONS: {T.tag_name(tag)} is {got}, expected "
                                  f"{size} byte{'s' if size > 1 else ''}")
        cid = self.data[0x9F27][0]
        kind = kind_of(cid)
        if kind not in ("AAC", "TC", "ARQC"):
            raise KernelError(f"contactless GET PROCESSING OPTIONS: 9F27 {cid:02X} names no cryptogram type")
        return cid, kind

    def _offline_tap(self, amount: int) -> None:
        """A TC in the GPO answer: the card approved the tap offline (Visa CL kernel 3, qVSDC). Refused (nothing
        charged) unless our TTQ let it (no online cryptogram demanded) and this scheme's contactless floor limit
        takes the amount; a 9F5D that is not 6 BCD bytes is a KernelError; then fDDA decides: verified, approved
        (Y1); failed or missing, declined (Z1)."""
        ttq = self.reader.terminal_data.get(0x9F66, b"")
        if len(ttq) != 4 or ttq[1] & TTQ_ONLINE_CRYPTOGRAM:
            raise InsertCard("the card approved the tap offline although the reader asked for an online "
                             "cryptogram: insert the card")
        if not (self.params.cl_floor_limit and amount < self.params.cl_floor_limit):
            raise InsertCard("the card approved the tap offline over this scheme's contactless floor limit: "
                             "insert the card")
        if 0x9F5D in self.data and _bcd_amount(self.data[0x9F5D]) is None:
            raise KernelError("contactless GET PROCESSING OPTIONS: the offline balance (9F5D) is not 6 BCD bytes")
        assert self.card is not None
        self._fdda(self.card.pan_for_check())

    def _fdda(self, pan: str) -> None:
        """fDDA version 01: the ICC key from the certificates over the signed records (as DDA), then the GPO
        answer's signature (9F4B) over 9F37 || 9F02 || 5F2A (the terminal's) || 9F69 (the card's)."""
        self.oda_method = "fdda"
        self.tsi.set(V.TSI_ODA)
        td = self.reader.terminal_data
        try:
            sdad, card_data = self.data.get(0x9F4B), self.data.get(0x9F69)
            if sdad is None or card_data is None:
                self.tvr.set(V.ICC_DATA_MISSING)
                raise oda.OdaError("fDDA: no signed dynamic application data (9F4B) or card authentication "
                                   "related data (9F69) in the answer")
            icc = self._icc_key(pan, self._static_data())
            self.data[0x9F4C] = oda.verify_fdda(icc, sdad, card_data, td.get(0x9F37, b""), td.get(0x9F02, b""),
                                                td.get(0x5F2A, b""))
            # The CTQ that counts is the one the card signed: a 9F6C that says otherwise (a CDCVM, no signature
            # asked ...) was not written by the card.
            signed = oda.fdda_ctq(card_data)
            if self.data.setdefault(0x9F6C, signed) != signed:
                raise oda.OdaError("the card transaction qualifiers (9F6C) differ from those the card signed (9F69)")
            self.oda_ok = True
        except (oda.OdaError, ValueError, IndexError, T.TLVError) as e:
            self.oda_ok = False
            self.oda_error = _oda_reason(e)
            self.tvr.set(V.DDA_FAILED)  # Visa CL kernel 3: an fDDA failure is TVR byte 1's "DDA failed"

    def _amount(self) -> int:
        """The terminal's amount (9F02), never the card's."""
        return _bcd_amount(self.reader.terminal_data.get(0x9F02)) or 0

    def _cl_limit(self) -> None:
        """Over the scheme's ``cl_limit`` no tap: the customer inserts the card."""
        if self.params.cl_limit and self._amount() >= self.params.cl_limit:
            raise InsertCard("the amount is over this card's contactless limit: insert the card")

    def _cl_cvm_limit(self) -> None:
        """From ``cl_cvm_limit`` a tap needs a CVM it cannot give here (only a consumer-device CVM is accepted,
        read from the CTQ that counts): the customer inserts the card."""
        if self.params.cl_cvm_limit and self._amount() >= self.params.cl_cvm_limit and not _cdcvm(self.data):
            raise InsertCard("the amount needs the cardholder verified and the tap did not: insert the card")

    def online_data(self) -> bytes:
        """DE55 for the online request: the first GENERATE AC's chip data (contract 1.1)."""
        return de55(self.first_tags, contactless=self._contactless)

    def complete(self, answer: IssuerAnswer | None, *, allow_tc: bool = True) -> TransactionResult:
        """Completion after an ARQC: the issuer's answer (or None: unable to go online; ``allow_tc`` False when
        the agent's own offline limits refuse), issuer authentication, scripts 71, the second GENERATE AC,
        scripts 72 (Book 3 10.9, 10.10). A one-tap contactless card has left: the issuer's word is final."""
        first = self.acs[0] if self.acs else None
        if first is None or first.kind != "ARQC" or self.outcome:
            return self.result()
        if self.one_tap:
            if answer is None:
                self._finish("declined", "Z3")
            else:
                self.response_code = answer.response_code
                self._finish("approved" if answer.approved else "declined", answer.response_code)
            return self.result()
        if answer is None:
            self.response_code = "Y3"
            asked = action.unable_to_go_online(bytes(self.tvr), self.params.tac, self.data) if allow_tc else "AAC"
            self.response_code = "Y3" if asked == "TC" else "Z3"
        else:
            arc = _value(answer.tlvs, 0x8A) or answer.response_code.encode("ascii", "replace")[:2].ljust(2, b"0")
            self.response_code = arc.decode("ascii", "replace")
            self.data[0x8A] = arc[:2]
            iad = _value(answer.tlvs, 0x91)
            if iad is not None:
                self.data[0x91] = iad
                if _aip(self.data) & AIP_ISSUER_AUTH:
                    self.issuer_auth = external_authenticate(self.reader, iad)
                    self.tsi.set(V.TSI_ISSUER_AUTH)
                    if not self.issuer_auth:
                        self.tvr.set(V.ISSUER_AUTH_FAILED)
            self._scripts(answer.tlvs, 0x71)
            asked = "TC" if answer.approved else "AAC"
        self.data[0x8A] = self.data.get(0x8A) or self.response_code.encode("ascii")[:2]
        second = self._generate("second", asked, self.data.get(0x8D))
        if second.kind == "ARQC":
            raise KernelError("second GENERATE AC: the card answered ARQC")
        if answer is not None:
            self._scripts(answer.tlvs, 0x72)
        self._finish("approved" if second.kind == "TC" else "declined", self.response_code)
        return self.result()

    def result(self) -> TransactionResult:
        co = self.cvm_outcome
        return TransactionResult(
            outcome=self.outcome or "declined",
            response_code=self.response_code,
            oda=self.oda_method,
            oda_ok=self.oda_ok,
            cvm=co.method if co else "none",
            cvm_results=(co.results if co else cvm.NOT_PERFORMED).hex().upper(),
            tvr=self.tvr.hex(),
            tsi=self.tsi.hex(),
            cryptograms=[ac.kind for ac in self.acs],
            issuer_authenticated=self.issuer_auth,
            scripts=[{"template": f"{s.template:02X}", "id": s.script_id.hex().upper(), "ok": s.ok,
                      "commands": s.commands} for s in self.scripts],
            signature_required=bool(co and co.signature),
            pin_message=self.pin_message,
            de55=de55(self.final_tags or self.first_tags, contactless=self._contactless).hex().upper(),
            offline_balance=self.offline_balance,
            oda_error=self.oda_error if self.oda_ok is False else "",
        )

    # ------------------------------------------------------------------ internals

    @property
    def _contactless(self) -> bool:
        return self.one_tap or self.reader.interface == "contactless"

    def _collect(self) -> None:
        r = self.reader
        self.data.update(r.terminal_data)
        # the card's data; a terminal-sourced tag from the card is ignored (EmvReader already dropped them)
        skip = SECRET_TAGS | TERMINAL_TAGS
        for item in T.walk([*r.gpo_items, *r.record_items]):  # no duplicates (EmvReader refused them)
            if not item.constructed and item.tag not in skip:
                self.data[item.tag] = item.value
        for item in T.walk(list(r.fci)):
            if not item.constructed and item.tag not in skip:
                self.data.setdefault(item.tag, item.value)
        self.data[0x82] = r.aip
        self.data[0x94] = r.afl
        self.data[0x84] = bytes.fromhex(self.card.aid) if self.card else b""
        self.data[0x9F09] = self.params.app_version
        self.data[0x9F34] = cvm.NOT_PERFORMED

    def _oda_static(self, pan: str) -> None:
        """SDA or DDA now; CDA is prepared here (ICC key) and checked at GENERATE AC."""
        caps = self.data.get(0x9F33, b"")
        method = oda.choose_method(self.data.get(0x82, b""), caps)
        self.oda_method = method
        if method is None:
            self.tvr.set(V.ODA_NOT_PERFORMED)
            return
        self.tsi.set(V.TSI_ODA)
        failed = {"sda": V.SDA_FAILED, "dda": V.DDA_FAILED, "cda": V.CDA_FAILED}[method]
        try:
            static = self._static_data()
            issuer = self._issuer_key(pan)
            if method == "sda":
                ssad = self.data.get(0x93)
                if ssad is None:
                    self.tvr.set(V.ICC_DATA_MISSING)
                    raise oda.OdaError("signed static application data (93) missing")
                dac = oda.verify_sda(issuer, ssad, static)
                self.data[0x9F45] = dac
                self.oda_ok = True
                return
            self.icc_key = self._icc_key(pan, static, issuer)
            if method == "dda":
                self._dda()
                self.oda_ok = True
        except (oda.OdaError, ValueError, IndexError, T.TLVError) as e:
            self.oda_ok = False
            self.oda_error = _oda_reason(e)
            self.tvr.set(failed)

    def _issuer_key(self, pan: str) -> oda.RsaKey:
        """The issuer public key from 8F/90/92/9F32 under the configured CA key (OdaError if it cannot be had)."""
        ca_index = self.data.get(0x8F)
        cert, exp = self.data.get(0x90), self.data.get(0x9F32)
        if ca_index is None or cert is None or exp is None or len(ca_index) != 1:
            self.tvr.set(V.ICC_DATA_MISSING)
            raise oda.OdaError("issuer certificate data (8F, 90, 9F32) missing")
        aid = self.data.get(0x84, b"")
        ca = self.params.ca_key(aid[:5].hex().upper(), ca_index[0])
        if ca is None:
            raise oda.OdaError(f"no CA public key {ca_index.hex().upper()} for RID {aid[:5].hex().upper()}")
        return oda.issuer_key(ca, cert, self.data.get(0x92, b""), exp, pan=pan, today=self.params.today())

    def _icc_key(self, pan: str, static: bytes, issuer: oda.RsaKey | None = None) -> oda.RsaKey:
        """The ICC public key from 9F46/9F47/9F48, its certificate covering the static data (DDA, CDA, fDDA)."""
        issuer = issuer or self._issuer_key(pan)
        icc_cert, icc_exp = self.data.get(0x9F46), self.data.get(0x9F47)
        if icc_cert is None or icc_exp is None:
            self.tvr.set(V.ICC_DATA_MISSING)
            raise oda.OdaError("ICC certificate data (9F46, 9F47) missing")
        return oda.icc_key(issuer, icc_cert, self.data.get(0x9F48, b""), icc_exp, static, pan=pan,
                           today=self.params.today())

    def _static_data(self) -> bytes:
        static = bytes(self.reader.oda_records)
        if self.reader.oda_record_error:
            raise oda.OdaError("a record signed for ODA is not a 70 template")
        tag_list = self.data.get(0x9F4A)
        if tag_list is not None:
            if tag_list != b"\x82":  # Book 3 10.3: only the AIP may be listed
                raise oda.OdaError("static data tag list (9F4A) lists more than the AIP")
            static += self.data.get(0x82, b"")
        return static

    def _dda(self) -> None:
        assert self.icc_key is not None
        ddol = self.data.get(0x9F49) or DEFAULT_DDOL
        try:
            listed = {tag for tag, _size in parse_dol(ddol)}
        except T.TLVError as e:
            raise oda.OdaError(f"DDOL (9F49) malformed: {e}") from None
        if 0x9F37 not in listed:  # Book 2 6.5.1: without the terminal's number the signature could be replayed
            raise oda.OdaError("DDOL (9F49) does not list the unpredictable number (9F37)")
        ddol_data = build_dol(ddol, self.data, limit=252)
        resp, sw = self.reader.command(0x00, 0x88, 0x00, 0x00, ddol_data)
        if sw != 0x9000:
            raise oda.OdaError(f"INTERNAL AUTHENTICATE answered {sw:04X}")
        items = T.decode(resp)
        if len(items) != 1:
            raise oda.OdaError("INTERNAL AUTHENTICATE: expected one template")
        sdad = items[0].value if items[0].tag == 0x80 else T.find_value(list(items[0].children), 0x9F4B)
        if not sdad:
            raise oda.OdaError("INTERNAL AUTHENTICATE: no signed dynamic application data")
        self.data[0x9F4C] = oda.verify_dda(self.icc_key, sdad, ddol_data)

    def _cvm(self) -> None:
        if not _aip(self.data) & AIP_CVM:
            return
        ctx = cvm.CvmContext(
            amount=self._amount(),
            currency_matches=self.data.get(0x9F42) == self.data.get(0x5F2A),
            capabilities=self.data.get(0x9F33, b""),
            pin_pad=self.pin_pad is not None,
        )
        self.cvm_outcome = cvm.run(self.data.get(0x8E), ctx, self._pin, self.tvr)
        self.data[0x9F34] = self.cvm_outcome.results
        self.tsi.set(V.TSI_CVM)

    def _pin(self, method: int) -> cvm.PinResult:
        """Offline plaintext PIN on the reader's pad; the card's try counter first (GET DATA 9F17)."""
        if self.pin_pad is None:
            return cvm.PinResult.PAD_FAILED
        tries = self._get_data(0x9F17)
        if tries is not None and len(tries) == 1 and tries[0] == 0:
            self.pin_message = "PIN blocked: no tries left"
            return cvm.PinResult.BLOCKED
        for _ in range(MAX_PIN_ENTRIES):
            self.on_stage("enter_pin")
            try:
                sw = self.pin_pad.verify(self.params.pin_timeout)
            except PinPadError as e:
                self.pin_message = str(e)
                return cvm.PinResult.PAD_FAILED
            if sw == 0x9000:
                self.pin_message = ""
                return cvm.PinResult.OK
            if sw in (0x6983, 0x6984) or sw == 0x63C0:
                self.pin_message = "PIN blocked: no tries left"
                return cvm.PinResult.BLOCKED
            if sw & 0xFFF0 == 0x63C0:
                self.pin_message = f"wrong PIN: {sw & 0x0F} tries left"
                self.on_stage("wrong_pin")
                continue
            if sw in (SW_TIMEOUT, SW_CANCELLED):
                self.pin_message = "no PIN entered" if sw == SW_TIMEOUT else "PIN entry cancelled on the reader"
                return cvm.PinResult.NOT_ENTERED
            self.pin_message = f"the card answered {sw:04X} to the PIN"
            return cvm.PinResult.PAD_FAILED
        return cvm.PinResult.WRONG

    def _get_data(self, tag: int) -> bytes | None:
        resp, sw = self.reader.command(0x80, 0xCA, tag >> 8, tag & 0xFF)
        if sw != 0x9000:
            return None
        try:
            items = T.decode(resp)
        except T.TLVError:
            return None
        return T.find_value(items, tag)

    def _risk(self) -> None:
        amount = self._amount()
        floor = self.params.floor_limit
        risk.floor_limit(amount, floor, self.tvr)
        risk.random_selection(amount, floor, self.params.random, self.tvr)
        lcol, ucol = self.data.get(0x9F14), self.data.get(0x9F23)
        if lcol is not None and ucol is not None and len(lcol) == 1 and len(ucol) == 1:
            atc = self._get_data(0x9F36)
            last = self._get_data(0x9F13)
            risk.velocity(lcol=lcol[0], ucol=ucol[0], atc=_int(atc, 2), last_online_atc=_int(last, 2), tvr=self.tvr)
        self.tsi.set(V.TSI_TERMINAL_RISK)

    def _generate(self, which: str, asked: str, cdol: bytes | None) -> GenAc:
        if not cdol:
            self.tvr.set(V.ICC_DATA_MISSING)
            raise KernelError(f"{which} GENERATE AC: the card has no CDOL{1 if which == 'first' else 2} "
                              f"({'8C' if which == 'first' else '8D'})")
        cda = self.oda_method == "cda" and self.icc_key is not None and asked != "AAC"
        self.data[0x95] = bytes(self.tvr)
        try:
            cdol_data = build_dol(cdol, self.data, limit=252)
        except T.TLVError as e:
            raise KernelError(f"{which} GENERATE AC: CDOL refused: {e}") from None
        try:
            ac = generate_ac(self.reader, asked, cdol_data, cda=cda)
        except GenAcError as e:
            raise KernelError(f"{which} {e}") from None
        cda_failed = False
        if ac.sdad is not None and cda and ac.kind != "AAC":
            assert self.icc_key is not None
            try:
                th = oda.transaction_hash(self.reader.pdol_data, cdol_data if which == "first" else
                                          self.cdol1_data + cdol_data, ac.signed_tlvs)
                _idn, cryptogram = oda.verify_cda(self.icc_key, ac.sdad, self.data.get(0x9F37, b""), ac.cid, th)
                ac.cryptogram = cryptogram
                self.oda_ok = True
            except (oda.OdaError, ValueError, IndexError) as e:
                self.oda_ok = False
                self.oda_error = _oda_reason(e)
                self.tvr.set(V.CDA_FAILED)
                cda_failed = True
        elif cda and ac.kind != "AAC":
            self.oda_ok = False
            self.oda_error = "no CDA signature (9F4B) in the answer"
            self.tvr.set(V.CDA_FAILED)
            cda_failed = True
        if not ac.cryptogram:
            raise KernelError(f"{which} GENERATE AC: no cryptogram")
        if which == "first":
            self.cdol1_data = cdol_data
        self.acs.append(ac)
        tags = dict(self.data)
        tags.update(ac.tags)
        tags[0x9F26] = ac.cryptogram
        tags[0x95] = bytes(self.tvr) if which == "second" else self.data[0x95]
        if which == "first":
            self.first_tags = tags
            if self.tvr.has(V.CDA_FAILED) and ac.kind == "ARQC":
                # Book 3 10.8: a CDA failure is not sent online; the card is asked for an AAC.
                self.data[0x8A] = b"Z1"
                self.response_code = "Z1"
                self._generate("second", "AAC", self.data.get(0x8D))
                self._finish("declined", "Z1")
        else:
            self.final_tags = tags
        if cda_failed and ac.kind == "TC":
            # Book 2 6.6.2 / Book 3 10.8: a TC whose CDA fails is a declined transaction, whatever 9F26 says
            # (after an issuer's approval the caller reverses it).
            self.response_code = self.response_code or "Z1"
            self.outcome = "declined"
            self.on_stage("remove_card")
        return ac

    def _scripts(self, tlvs: list[T.TLV], template: int) -> None:
        results = run_scripts(self.reader, tlvs, template)
        if results:
            self.tsi.set(V.TSI_SCRIPTS)
        for r in results:
            if not r.ok:
                self.tvr.set(V.SCRIPT_FAILED_BEFORE if template == 0x71 else V.SCRIPT_FAILED_AFTER)
        self.scripts += results

    def _finish(self, outcome: str, code: str) -> None:
        if not self.outcome:
            self.outcome = outcome
            self.response_code = self.response_code or code
            self.on_stage("remove_card")


CONTACTLESS_ONLY = frozenset({0x9F66, 0x9F6E})


def de55(tags: dict[int, bytes], *, contactless: bool = True) -> bytes:
    """The contract's chip data, in DE55_TAGS order, only the tags present, never a secret one (9F66/9F6E only
    for a contactless transaction)."""
    skip = SECRET_TAGS if contactless else SECRET_TAGS | CONTACTLESS_ONLY
    return T.encode([T.tlv(t, tags[t]) for t in DE55_TAGS if t in tags and t not in skip])


def _value(tlvs: list[T.TLV], tag: int) -> bytes | None:
    return T.find_value(tlvs, tag)


def _in_gpo(reader: EmvReader, tag: int) -> bool:
    return T.find_value(reader.gpo_items, tag) is not None


def _cdcvm(data: dict[int, bytes]) -> bool:
    """CTQ (9F6C) byte 2 b8: the consumer device verified the cardholder (CDCVM)."""
    ctq = data.get(0x9F6C, b"")
    return len(ctq) == 2 and bool(ctq[1] & CTQ_CDCVM)


def _oda_reason(e: Exception) -> str:
    """Why ODA failed, for the result and the journal: oda.OdaError's own one line (tags, lengths, never card
    data), else only the kind of fault.

    >>> _oda_reason(oda.OdaError("signed dynamic application data (9F4B): hash does not match"))
    'signed dynamic application data (9F4B): hash does not match'
    >>> _oda_reason(IndexError("index out of range"))
    'malformed ODA data (IndexError)'
    """
    if isinstance(e, oda.OdaError):
        return str(e).splitlines()[0][:160] if str(e) else "OdaError"
    return f"malformed ODA data ({type(e).__name__})"


def _aip(data: dict[int, bytes]) -> int:
    aip = data.get(0x82, b"")
    return aip[0] if aip else 0


def _bcd_amount(raw: bytes | None) -> int | None:
    """An n12 amount (9F02, 9F5D): 6 BCD bytes, else None."""
    digits = raw.hex() if raw is not None and len(raw) == 6 else ""
    return int(digits) if digits.isdigit() else None


def _int(raw: bytes | None, size: int) -> int | None:
    return int.from_bytes(raw, "big") if raw is not None and len(raw) == size else None


def _country(data: dict[int, bytes]) -> str:
    return data.get(0x9F1A, b"\x00\x00").hex()[-3:]
