"""Review 7 of the EMV kernel: each finding, through the real Kernel and ReaderAuthorizer over a VirtualCard (no
vpcd: the transport is the virtual card itself, its answers optionally rewritten by a hostile hook). The billing
server is a stand-in speaking the contract with the sandbox issuer's keys (real ARPC), counting what it was sent.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import config as cfgmod
from agent.authorize import AuthOutcome, AuthRequest
from agent.authorizers.card_reader import ChipOutcome, ReaderAuthorizer, emv_terminal
from agent.errors import ApiError, ServerUnreachable
from drivers import pcsc
from drivers.emv import genac
from drivers.emv import tlv as T
from drivers.emv import tvr as V
from drivers.emv.kernel import Kernel
from drivers.emv.reader import EmvReader
from sandbox import issuer
from sandbox.cards import profiles as P
from sandbox.cards.card import VirtualCard

Hook = Callable[[bytes, bytes, int], tuple[bytes, int]]
CSU_OK = bytes.fromhex("00800000")
AMOUNT = 345600


class Tamper:
    """A transport over a VirtualCard whose answers pass through ``hook(apdu, data, sw) -> (data, sw)``."""

    def __init__(self, card: VirtualCard, hook: Hook | None = None) -> None:
        self.card, self.hook = card, hook
        self.reader, self.atr = "tamper", card.atr
        self.log: list[bytes] = []

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        r = self.card.apdu(apdu)
        if r is None:
            raise pcsc.CardRemoved("card removed")
        data, sw = r[:-2], (r[-2] << 8) | r[-1]
        if self.hook:
            data, sw = self.hook(apdu, data, sw)
        self.log.append(bytes(apdu[:4]))
        return data, sw

    def sent(self, ins: int) -> list[bytes]:
        return [a for a in self.log if a[1] == ins]


class Acquirer:
    """The billing server's side of contract 1.1 for these tests: approves each ARQC with the issuer's ARPC."""

    def __init__(self, approve: bool = True, cvn: int = 18) -> None:
        self.approve, self.cvn = approve, cvn
        self.authorized: list[dict[str, Any]] = []
        self.reversals: list[str] = []
        self.gets = 0
        self.answer: dict[str, Any] | None = None
        self.reader: EmvReader | None = None  # the card's reader, for the tests that spend its time

    def authorize(self, body: dict[str, Any], idempotency_key: str, timeout: float | None = None) -> dict[str, Any]:
        self.authorized.append(dict(body, card=dict(body["card"])))
        tags = {t.tag: t.value for t in T.decode(bytes.fromhex(body["emv"]))}
        keys = issuer.card_keys(body["card"]["pan"], int(tags.get(0x5F34, b"\x00").hex()))
        arc = b"00" if self.approve else b"05"
        iad = issuer.issuer_authentication_data(self.cvn, keys, tags, tags[0x9F26], arc, CSU_OK)
        self.answer = {"approved": self.approve, "response_code": arc.decode(), "code": "123456",
                       "reference": "R1", "emv": T.encode([T.tlv(0x91, iad), T.tlv(0x8A, arc)]).hex().upper()}
        return self.answer

    def get_authorization(self, pid: str) -> dict[str, Any] | None:
        self.gets += 1
        return self.answer

    def reverse_authorization(self, pid: str, reason: str) -> bool:
        self.reversals.append(reason)
        return True


def cfg(**rule: Any) -> cfgmod.Config:
    c = P.sandbox_cards_config()
    if rule:
        c = dict(c, schemes=[dict(s, **rule) for s in c["schemes"]])
    return cfgmod.validate({"cards": c, "emv": P.sandbox_emv_config()})


@dataclasses.dataclass
class Run:
    out: AuthOutcome
    card: Tamper
    acquirer: Acquirer
    reader: EmvReader

    @property
    def emv(self) -> dict[str, Any]:
        return dict(self.out.detail.get("emv", {}))


def run(profile: str | P.Profile, hook: Hook | None = None, *, amount: int = AMOUNT, online: bool = True,
        offline_allowed: bool = False, config: cfgmod.Config | None = None, acquirer: Acquirer | None = None,
        cancel: threading.Event | None = None, deadline: float | None = None) -> Run:
    prof = P.PROFILES[profile] if isinstance(profile, str) else profile
    c = config or cfg()
    card = Tamper(VirtualCard(prof), hook)
    acq = acquirer or Acquirer(cvn=prof.apps[-1].emv.cvn if prof.apps[-1].emv else 18)
    auth = ReaderAuthorizer(c, acq, offline_allowed=lambda _a: offline_allowed,  # type: ignore[arg-type]
                            pin_pad=lambda _conn: None)
    cancel = cancel or threading.Event()
    reader = EmvReader(card, schemes=c.cards.schemes, aids=c.cards.aids, terminal=emv_terminal(c, amount),
                       hmac_key="k", interface=prof.interface, cancel=cancel, deadline=deadline)
    acq.reader = reader
    req = AuthRequest("tx-1", ["p-1"], amount, "DZD", "R-1", online)
    kernel = Kernel(reader, lambda cd: auth._params(req, cd))
    chip = ChipOutcome("contactless" if prof.interface == "contactless" else "chip")
    out = auth.run_kernel(req, kernel, chip, cancel, lambda _s: None)
    return Run(out, card, acq, reader)


def gpo_adds(*extra: T.TLV, replace: dict[int, bytes] | None = None) -> Hook:
    """The GPO answer (format 2) with `extra` objects appended and some values replaced."""
    def hook(apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if apdu[1] == 0xA8:
            top = T.decode(data)[0]
            kids = [T.tlv(c.tag, (replace or {}).get(c.tag, c.value)) for c in top.children]
            return T.encode(T.tlv(0x77, [*kids, *extra])), sw
        return data, sw
    return hook


def genac_cid(which: int, cid: int) -> Hook:
    """The `which`-th GENERATE AC answer's 9F27 rewritten."""
    n = [0]

    def hook(apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if apdu[1] == 0xAE:
            n[0] += 1
            if n[0] == which:
                top = T.decode(data)[0]
                kids = [T.tlv(0x9F27, bytes([cid])) if c.tag == 0x9F27 else c for c in top.children]
                return T.encode(T.tlv(0x77, kids)), sw
        return data, sw
    return hook


# ------------------------------------------------------------------ 1. a cryptogram before GENERATE AC

A_TC_OF_ZEROS = (T.tlv(0x9F26, bytes(8)), T.tlv(0x9F27, b"\x40"), T.tlv(0x9F36, b"\x00\x01"), T.tlv(0x9F10, bytes(7)))


def test_a_contact_card_with_a_cryptogram_in_its_gpo_answer_is_refused_never_approved():
    r = run("emv_pin_only", gpo_adds(*A_TC_OF_ZEROS))
    assert r.out.status == "declined" and "before GENERATE AC" in (r.out.message or "")
    assert r.acquirer.authorized == [] and r.card.sent(0xAE) == []


def test_a_tap_answering_a_tc_offline_is_sent_to_the_contact_interface():
    r = run("visa_cl", gpo_adds(replace={0x9F27: b"\x40"}), config=cfg(cl_limit=500000, cl_cvm_limit=400000))
    assert r.out.status == "cancelled" and "insert the card" in (r.out.message or "")
    assert r.acquirer.authorized == []


def test_a_tap_with_a_cryptogram_in_its_records_is_refused():
    r_seen: list[int] = []

    def hook(apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if apdu[1] == 0xB2 and data[:1] == b"\x70" and not r_seen:
            r_seen.append(1)
            top = T.decode(data)[0]
            return T.encode(T.tlv(0x70, [*top.children, T.tlv(0x9F27, b"\x40")])), sw
        return data, sw
    r = run("mastercard_cl", hook)
    assert r.out.status == "declined" and "before GENERATE AC" in (r.out.message or "")
    assert r.acquirer.authorized == []


def test_a_genuine_tap_still_goes_online():
    r = run("visa_cl", config=cfg(cl_limit=500000, cl_cvm_limit=400000))
    assert r.out.status == "approved" and r.emv["cryptograms"] == ["ARQC"] and len(r.acquirer.authorized) == 1


# ------------------------------------------------------------------ 2. what a card may answer (Book 3 table 13)

@pytest.mark.parametrize(("asked", "answered", "allowed"), [
    ("AAC", "AAC", True), ("AAC", "TC", False), ("AAC", "ARQC", False),
    ("TC", "AAC", True), ("TC", "TC", True), ("TC", "ARQC", True),
    ("ARQC", "AAC", True), ("ARQC", "TC", False), ("ARQC", "ARQC", True),
])
def test_generate_ac_answers_follow_book_3_table_13(asked, answered, allowed):
    cid = {"AAC": "00", "TC": "40", "ARQC": "80"}[answered]
    raw = bytes.fromhex("8012" + cid + "0001" "1122334455667788" "06011203A00000")
    if allowed:
        assert genac.parse_answer(raw, asked).kind == answered
    else:
        with pytest.raises(genac.GenAcError, match=f"asked for {asked}, the card answered {answered}"):
            genac.parse_answer(raw, asked)


def test_a_tc_answering_our_arqc_is_refused_not_approved_offline():
    r = run("cib", genac_cid(1, 0x40))
    assert r.out.status == "declined" and "asked for ARQC, the card answered TC" in (r.out.message or "")
    assert r.acquirer.authorized == []


def test_an_arqc_answering_our_tc_request_goes_online():
    # offline (bill from the cache), within the agent's limits and the floor limit: the card wants the issuer
    r = run("cib", genac_cid(1, 0x80), online=False, offline_allowed=True, config=cfg(floor_limit=10_000_000))
    assert r.card.sent(0xAE)[0][2] & 0xC0 == 0x40  # a TC was asked
    assert len(r.acquirer.authorized) == 1 and r.emv["cryptograms"][0] == "ARQC"


# ------------------------------------------------------------------ 3. a TC whose CDA fails

def cda_broken(which: int, *, format1: bool = False, plus_26: bool = False) -> Hook:
    n = [0]

    def hook(apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if apdu[1] != 0xAE:
            return data, sw
        n[0] += 1
        if n[0] != which:
            return data, sw
        top = T.decode(data)[0]
        t = {c.tag: c.value for c in top.children}
        if format1:  # no signature at all although CDA was asked
            return T.encode(T.tlv(0x80, t[0x9F27] + t[0x9F36] + bytes(8) + t[0x9F10])), sw
        kids = [T.tlv(0x9F4B, bytes([c.value[0] ^ 1]) + c.value[1:]) if c.tag == 0x9F4B else c
                for c in top.children]
        if plus_26:
            kids.insert(2, T.tlv(0x9F26, bytes(8)))
        return T.encode(T.tlv(0x77, kids)), sw
    return hook


@pytest.mark.parametrize("hook", [cda_broken(2), cda_broken(2, format1=True), cda_broken(2, plus_26=True)],
                         ids=["bad-signature", "format-1", "9F26-and-bad-signature"])
def test_a_tc_whose_cda_fails_after_approval_is_declined_and_reversed(hook):
    r = run("emv_mc20", hook)
    assert r.out.status == "declined" and r.acquirer.reversals == ["card_declined_after_approval"]
    assert "CDA failed" in V.Tvr(bytes.fromhex(r.emv["tvr"])).names() and r.emv["oda_ok"] is False
    assert "CDA" in (r.out.message or "") or r.emv["cryptograms"] == ["ARQC"]  # no 9F26 at all: card unusable


def test_an_offline_tc_whose_cda_fails_is_declined():
    r = run("emv_mc20", cda_broken(1, plus_26=True), online=False, offline_allowed=True,
            config=cfg(floor_limit=10_000_000))
    assert r.emv["cryptograms"] == ["TC"] and r.emv["oda_ok"] is False
    assert r.out.status == "declined" and r.emv["response_code"] == "Z1"


# ------------------------------------------------------------------ 4. the agent's offline limits

def test_below_the_floor_limit_an_online_agent_still_asks_the_issuer():
    r = run("emv_visa18", config=cfg(floor_limit=10_000_000))
    assert r.card.sent(0xAE)[0][2] & 0xC0 == 0x80  # ARQC asked
    assert r.out.status == "approved" and r.emv["response_code"] == "00" and len(r.acquirer.authorized) == 1


def test_offline_over_the_agents_limits_no_tc_is_asked():
    r = run("emv_visa18", online=False, offline_allowed=False, config=cfg(floor_limit=10_000_000))
    assert r.card.sent(0xAE)[0][2] & 0xC0 == 0x00  # AAC asked
    assert r.out.status == "declined" and r.emv["response_code"] == "Z3"


def test_offline_within_the_agents_limits_a_tc_is_approved_y1():
    r = run("emv_visa18", online=False, offline_allowed=True, config=cfg(floor_limit=10_000_000))
    assert r.out.status == "approved" and r.out.code == "Y1" and r.acquirer.authorized == []


# ------------------------------------------------------------------ 5. a failed replay

class LostThenRefused(Acquirer):
    def authorize(self, body: dict[str, Any], idempotency_key: str, timeout: float | None = None) -> dict[str, Any]:
        super().authorize(body, idempotency_key, timeout)  # the acquirer approved it
        if len(self.authorized) == 1:
            raise ServerUnreachable("billing server: no answer within 10 s", sent=True)
        raise ApiError(422, "invalid_request", "authorization in progress for this key")


def test_a_replay_refused_after_a_lost_request_asks_the_record_and_completes_from_it():
    acq = LostThenRefused()
    r = run("cib", acquirer=acq)
    assert acq.gets == 1 and len(acq.authorized) == 2
    assert r.out.status == "approved" and r.emv["cryptograms"] == ["ARQC", "TC"]


class LostThenRefusedNoRecord(LostThenRefused):
    def get_authorization(self, pid: str) -> dict[str, Any] | None:
        self.gets += 1
        return None


def test_a_replay_refused_with_no_record_is_reversed_and_unknown_never_declined():
    acq = LostThenRefusedNoRecord()
    r = run("cib", acquirer=acq)
    assert acq.gets == 1 and acq.reversals == ["timeout"]
    assert r.out.status in ("unknown", "declined") and r.emv["reversal_reason"] == "timeout"


# ------------------------------------------------------------------ 7. duplicates, 8. a DDOL without 9F37

def test_a_second_pan_in_the_gpo_answer_ends_the_transaction():
    other = P.cn("4000000000000002")
    r = run("cib", gpo_adds(T.tlv(0x5A, other), T.tlv(0x8E, bytes(8) + bytes.fromhex("1F00"))))
    assert r.out.status == "declined" and "5A twice" in (r.out.message or "")
    assert r.acquirer.authorized == [] and r.card.sent(0xAE) == []


def test_a_ddol_without_the_unpredictable_number_fails_dda(monkeypatch):
    monkeypatch.setattr(P, "DDOL", bytes.fromhex("9F0206"))
    base = P.PROFILES["cib"]
    app = P.payment_app(P.CIB_TEST_AID, "CIB TEST", base.pan, "2028-05", P.Emv(cvn=18, oda="dda"), priority=1,
                        language="frar", pdol=P.CONTACT_PDOL, gpo_format=2)
    r = run(dataclasses.replace(base, apps=[app]))
    assert r.card.sent(0x88) == []  # nothing signed for a replay
    assert r.emv["oda"] == "dda" and r.emv["oda_ok"] is False
    assert "DDA failed" in V.Tvr(bytes.fromhex(r.emv["tvr"])).names()


# ------------------------------------------------------------------ 11. cancel after approval, 12. PAN residue

class CancelWhileApproving(Acquirer):
    def __init__(self, cancel: threading.Event) -> None:
        super().__init__()
        self.cancel = cancel

    def authorize(self, body: dict[str, Any], idempotency_key: str, timeout: float | None = None) -> dict[str, Any]:
        self.cancel.set()
        return super().authorize(body, idempotency_key, timeout)


def test_a_cancel_after_the_approval_sends_the_cancelled_reversal():
    cancel = threading.Event()
    r = run("cib", acquirer=CancelWhileApproving(cancel), cancel=cancel)
    assert r.out.status == "declined" and r.acquirer.reversals == ["cancelled"]
    assert "cancelled by the cashier" in (r.out.message or "")


def test_no_pan_or_track_data_is_left_in_the_reader_after_the_transaction():
    r = run("cib")
    assert r.out.status == "approved"
    left = T.walk([*r.reader.fci, *r.reader.gpo_items, *r.reader.record_items])
    assert not {i.tag for i in left} & {0x5A, 0x57, 0x56, 0x9F1F, 0x9F6B, 0x5F20}
    assert P.PROFILES["cib"].pan.encode() not in bytes(r.reader.oda_records)
    assert bytes.fromhex(P.PROFILES["cib"].pan) not in bytes(r.reader.oda_records)


# ------------------------------------------------------------------ 10. completion has its own deadline

class Slow(Acquirer):
    def authorize(self, body: dict[str, Any], idempotency_key: str, timeout: float | None = None) -> dict[str, Any]:
        assert self.reader is not None and self.reader.deadline is not None
        self.reader.deadline = time.monotonic() - 1  # PIN entry and the acquirer spent the read's whole time
        return super().authorize(body, idempotency_key, timeout)


def test_a_slow_approval_is_completed_by_the_card_not_reversed():
    r = run("cib", acquirer=Slow(), deadline=time.monotonic() + 60)
    assert r.out.status == "approved" and r.acquirer.reversals == [] and len(r.card.sent(0xAE)) == 2


# ------------------------------------------------------------------ 9. contactless limits and CVM requests

def test_a_contactless_card_without_a_one_tap_cryptogram_is_held_to_the_contactless_limit():
    r = run("mastercard_cl", config=cfg(cl_limit=1000, cl_cvm_limit=500))
    assert r.out.status == "cancelled" and "contactless limit" in (r.out.message or "")
    assert r.acquirer.authorized == [] and r.card.sent(0xAE) == []


def test_the_contactless_limit_itself_is_over_it():  # Book B / kernel 3: amount >= limit
    r = run("visa_cl", config=cfg(cl_limit=AMOUNT))
    assert r.out.status == "cancelled" and "contactless limit" in (r.out.message or "")


def test_the_ttq_claims_no_online_pin_and_asks_a_cvm_from_the_cvm_limit():
    low, high = emv_terminal(cfg(cl_cvm_limit=AMOUNT + 1), AMOUNT), emv_terminal(cfg(cl_cvm_limit=AMOUNT), AMOUNT)
    assert low.ttq[0] & 0x04 == 0 and low.ttq[1] & 0x80  # no online PIN; online cryptogram required
    assert low.ttq[1] & 0x40 == 0 and high.ttq[1] & 0x40  # CVM required from the CVM limit on


def test_a_tap_whose_card_asks_for_online_pin_is_sent_to_the_contact_interface():
    r = run("visa_cl", gpo_adds(T.tlv(0x9F6C, b"\x80\x00")), config=cfg(cl_limit=5_000_000, cl_cvm_limit=1_000_000))
    assert r.out.status == "cancelled" and "insert the card" in (r.out.message or "")
    assert r.acquirer.authorized == []


def test_a_tap_whose_card_asks_for_a_signature_gets_the_signature_line():
    r = run("visa_cl", gpo_adds(T.tlv(0x9F6C, b"\x40\x00")), config=cfg(cl_limit=5_000_000, cl_cvm_limit=1_000_000))
    assert r.out.status == "approved" and r.emv["cvm"] == "signature" and r.emv["signature_required"] is True
