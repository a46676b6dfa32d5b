"""Contactless offline approval (issue 14): the TTQ from the situation, qVSDC cards answering a TC with an fDDA
signature within their offline balance (9F5D), the kernel verifying fDDA, the agent journaling the tap's TC and
uploading it, the sandbox acquirer verifying it.

End to end on the real pcscd + vpcd with the sandbox billing server stopped (a bill from the offline cache), then
started again for the upload; hostile fDDA data through the real Kernel and ReaderAuthorizer over a VirtualCard
(no vpcd: the transport is the card itself, its answers rewritten by a hook); fDDA verification under hypothesis.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import config as cfgmod
from agent.authorize import AuthOutcome, AuthRequest
from agent.authorizers.card_reader import ChipOutcome, ReaderAuthorizer, emv_terminal
from agent.context import AgentContext
from agent.errors import ServerUnreachable
from drivers.emv import oda
from drivers.emv import tlv as T
from drivers.emv import tvr as V
from drivers.emv.kernel import Kernel
from drivers.emv.reader import EmvReader
from sandbox import issuer
from sandbox.cards import profiles as P
from sandbox.cards.card import VirtualCard
from sandbox.cards.emvapp import EmvState
from tests.core.conftest import with_changes
from ui.screens import wait

FLOOR = 40_000  # the Visa rule's contactless floor limit in these tests (400,00 DZD); the cards' balance: 500,00
BALANCE = 50_000
DDA_FAILED = int(V.DDA_FAILED.mask)


def cl_schemes(floor: int = FLOOR) -> list[dict[str, Any]]:
    return [dict(s, cl_limit=5_000_000, cl_cvm_limit=1_000_000, cl_floor_limit=floor) if s["name"] == "VISA" else s
            for s in P.TEST_SCHEMES]


# ------------------------------------------------------------------ end to end: pcscd + vpcd + sandbox server


@pytest.fixture
def cl_cfg(billing_config, vpcd_reader) -> cfgmod.Config:
    return with_changes(billing_config, cards=P.sandbox_cards_config(reader=vpcd_reader, read_timeout=15,
                                                                     schemes=cl_schemes()),
                        emv=P.sandbox_emv_config(), payments={"allow_partial": True})


def _recorded(server) -> dict[str, dict[str, Any]]:
    """What the sandbox recorded, by payment_id."""
    return {i["payment_id"]: i for i in server.recorded_payments()}


def _tap(agent: AgentContext, insert, profile: str | P.Profile, bill, amount: int):
    with insert(profile) as link:
        result = agent.flow.pay([bill], method="card_reader", cashier_id="c1", amount=amount)
        commands = list(link.card.commands)
    [p] = result.payments
    return result, agent.journal.get(p.payment_id), commands


def _offline_bill(agent: AgentContext, billing_server, ref: str):
    """The bill in the offline cache, the server stopped: the agent takes an offline approval of it."""
    agent.flow.lookup(ref)
    billing_server.stop()
    bill = agent.flow.lookup(ref)
    assert bill.offline
    return bill


def _de55(chip: dict[str, Any]) -> dict[int, bytes]:
    return {t.tag: t.value for t in T.decode(bytes.fromhex(chip["de55"]))}


def test_an_offline_tap_is_approved_with_fdda_uploaded_later_and_its_tc_verified(cl_cfg, insert, billing_server,
                                                                                seeded_references):
    with AgentContext.open(cl_cfg, ["card_reader"], take_payments=True) as agent:
        bill = _offline_bill(agent, billing_server, seeded_references[0])
        amount = min(30_000, bill.amount_due)
        result, p, commands = _tap(agent, insert, "visa_fdda", bill, amount)
        assert result.status == "approved" and "Y1" in (result.message or ""), result.message
        assert p.captured_offline and p.authorization["code"] == "Y1"
        chip = p.chip
        assert chip["entry_mode"] == "contactless" and chip["cryptograms"] == ["TC"] and chip["response_code"] == "Y1"
        assert chip["oda"] == "fdda" and chip["oda_ok"] is True
        assert int(chip["tsi"][:2], 16) & 0x80 and not int(chip["tvr"][:2], 16) & (0x80 | DDA_FAILED)
        assert chip["offline_balance"] == BALANCE - amount  # the card's balance after this tap
        assert len(commands) == P.PROFILES["visa_fdda"].expected_apdus  # one tap: no GENERATE AC
        tags = _de55(chip)
        assert tags[0x9F27] == b"\x40" and not tags[0x9F66][1] & 0x80  # a TC; our TTQ let it go offline
        assert not {0x5A, 0x57, 0x9F1F, 0x9F4B, 0x9F69} & set(tags)
        billing_server.start()
        agent.sync_worker().run_once()
        assert agent.journal.get(p.payment_id).state == "uploaded", billing_server.rejections()
        assert _recorded(billing_server)[p.payment_id]["payment"]["emv"] == chip["de55"]


def test_a_tampered_fdda_signature_is_declined_and_nothing_is_charged(cl_cfg, insert, billing_server,
                                                                      seeded_references):
    with AgentContext.open(cl_cfg, ["card_reader"], take_payments=True) as agent:
        bill = _offline_bill(agent, billing_server, seeded_references[1])
        result, p, _ = _tap(agent, insert, "visa_fdda_tampered", bill, min(30_000, bill.amount_due))
        assert result.status == "declined" and "fDDA" in (result.message or ""), result.message
        assert "Z1" in (result.message or "") and "\n" not in (result.message or "")
        assert p.state == "declined" and p.chip["oda"] == "fdda" and p.chip["oda_ok"] is False
        assert int(p.chip["tvr"][:2], 16) & DDA_FAILED
        assert agent.journal.blocking_payment(p.bill_reference) is None
        # why, kept with the payment (its chip data and its event's detail), and the wait panel's words from it
        assert p.chip["oda_error"].startswith("signed dynamic application data (9F4B): ")
        detail = [e["detail"] for e in agent.journal.audit(p.payment_id) if e["detail"]][-1]
        assert detail["oda"] == "fdda" and detail["oda_error"] == p.chip["oda_error"]
        assert wait.decline_text(detail, "") == wait._(wait.FDDA_FAILED)
        assert not any(pan in json.dumps(detail) + json.dumps(p.chip) for pan in P.TEST_PANS)
        billing_server.start()
        agent.sync_worker().run_once()
        assert p.payment_id not in _recorded(billing_server)


def test_an_empty_offline_balance_asks_online_and_offline_is_declined_z3(cl_cfg, insert, billing_server,
                                                                         seeded_references):
    with AgentContext.open(cl_cfg, ["card_reader"], take_payments=True) as agent:
        bill = _offline_bill(agent, billing_server, seeded_references[2])
        result, p, _ = _tap(agent, insert, "visa_fdda_empty", bill, min(10_000, bill.amount_due))
    assert result.status == "declined" and "Z3" in (result.message or ""), result.message
    assert p.chip["cryptograms"] == ["ARQC"] and p.chip["offline_balance"] == 0


def test_over_the_contactless_floor_limit_the_ttq_demands_online_and_offline_is_declined_z3(
        cl_cfg, insert, billing_server, seeded_references):
    with AgentContext.open(cl_cfg, ["card_reader"], take_payments=True) as agent:
        bill = _offline_bill(agent, billing_server, seeded_references[3])
        if bill.amount_due < FLOOR:
            pytest.skip("the seeded bill is smaller than the floor limit under test")
        result, p, _ = _tap(agent, insert, "visa_fdda", bill, FLOOR)  # the limit itself is over it
    assert result.status == "declined" and "Z3" in (result.message or ""), result.message
    assert "could not be reached" in (result.message or "")
    assert p.chip["cryptograms"] == ["ARQC"] and _de55(p.chip)[0x9F66][1] & 0x80  # online cryptogram required
    assert p.chip["offline_balance"] == BALANCE  # the card kept its balance


@pytest.mark.parametrize("profile", ["visa_fdda", "visa_fdda_empty"])
def test_online_the_ttq_always_demands_online(cl_cfg, insert, billing_server, seeded_references, profile):
    with AgentContext.open(cl_cfg, ["card_reader"], take_payments=True) as agent:
        bill = agent.flow.lookup(seeded_references[4])
        assert not bill.offline
        result, p, _ = _tap(agent, insert, profile, bill, min(10_000, bill.amount_due))
    assert result.status == "approved" and result.payments[0].authorization["code"] != "Y1", result.message
    assert p.chip["cryptograms"] == ["ARQC"] and p.chip["response_code"] == "00"
    assert _de55(p.chip)[0x9F66][1] & 0x80 and p.chip["oda"] is None


def test_guichet_pay_json_reports_the_offline_balance_without_a_card_number(billing_config, vpcd_reader, insert,
                                                                            billing_server, seeded_references,
                                                                            tmp_path: Path):
    cfg = with_changes(billing_config, cards=P.sandbox_cards_config(reader=vpcd_reader, read_timeout=15,
                                                                    schemes=cl_schemes()),
                       emv=P.sandbox_emv_config(), payments={"allow_partial": True})
    path = cfgmod.write_config(cfg, tmp_path / "guichet.toml")
    with insert("visa_fdda"):
        res = subprocess.run([sys.executable, "-m", "guichet", "--config", str(path), "pay", seeded_references[5],
                              "--amount", "100.00", "--method", "card_reader", "--json"], capture_output=True,
                             text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    emv = json.loads(res.stdout)["emv"]
    assert emv["entry_mode"] == "contactless" and emv["offline_balance"] == BALANCE
    assert not any(pan in res.stdout + res.stderr for pan in P.TEST_PANS)


# ------------------------------------------------------------------ the kernel against hostile fDDA data

Hook = Callable[[bytes, bytes, int], tuple[bytes, int]]
AMOUNT = 30_000


class Wire:
    """A transport over a VirtualCard whose answers pass through ``hook(apdu, data, sw) -> (data, sw)``."""

    def __init__(self, card: VirtualCard, hook: Hook | None = None) -> None:
        self.card, self.hook = card, hook
        self.reader, self.atr = "wire", card.atr

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        r = self.card.apdu(apdu)
        assert r is not None
        data, sw = r[:-2], (r[-2] << 8) | r[-1]
        return self.hook(apdu, data, sw) if self.hook else (data, sw)


class Down:
    """The billing server, unreachable: nothing is ever sent."""

    sent = 0

    def authorize(self, body: dict[str, Any], idempotency_key: str, timeout: float | None = None) -> dict[str, Any]:
        raise ServerUnreachable("connection refused", sent=False)

    def reverse_authorization(self, pid: str, reason: str) -> bool:
        raise AssertionError("no reversal for a request never sent")


def unit_cfg(floor: int = FLOOR) -> cfgmod.Config:
    return cfgmod.validate({"cards": P.sandbox_cards_config(schemes=cl_schemes(floor)),
                            "emv": P.sandbox_emv_config()})


def tap(profile: str = "visa_fdda", hook: Hook | None = None, *, amount: int = AMOUNT, offline_ok: bool = True,
        config: cfgmod.Config | None = None, card: VirtualCard | None = None,
        keep: dict[str, Any] | None = None) -> AuthOutcome:
    """One tap through the real Kernel and ReaderAuthorizer, the billing server down; `keep` gets its reader."""
    c = config or unit_cfg()
    auth = ReaderAuthorizer(c, Down(), offline_allowed=lambda _a: offline_ok,  # type: ignore[arg-type]
                            pin_pad=lambda _conn: None)
    req = AuthRequest("tx-1", ["p-1"], amount, "DZD", "R-1", online=False)
    reader = EmvReader(Wire(card or VirtualCard(P.PROFILES[profile]), hook), schemes=c.cards.schemes,
                       aids=c.cards.aids,
                       terminal=emv_terminal(c, amount, offline_ok=auth._offline_ok(req)), hmac_key="k",
                       interface="contactless")
    if keep is not None:
        keep["reader"] = reader
    kernel = Kernel(reader, lambda cd: auth._params(req, cd))
    return auth.run_kernel(req, kernel, ChipOutcome("contactless"), threading.Event(), lambda _s: None)


def gpo(change: Callable[[list[T.TLV]], list[T.TLV]]) -> Hook:
    """The GPO answer's objects rewritten by `change`."""
    def hook(apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if apdu[1] == 0xA8:
            return T.encode(T.tlv(0x77, change(list(T.decode(data)[0].children)))), sw
        return data, sw
    return hook


def replaced(tag: int, value: bytes | None) -> Hook:
    """The GPO answer with `tag`'s value replaced (None: the object left out)."""
    def change(kids: list[T.TLV]) -> list[T.TLV]:
        if value is None:
            return [k for k in kids if k.tag != tag]
        return [T.tlv(tag, value) if k.tag == tag else k for k in kids]
    return gpo(change)


def _rule(c: cfgmod.Config, name: str) -> Any:
    return next(r for r in c.cards.schemes if r.name == name)


def test_the_ttq_follows_the_agents_offline_decision_and_the_selected_schemes_floor_limit():
    c = unit_cfg()
    visa = _rule(c, "VISA")
    assert emv_terminal(c, FLOOR - 1, offline_ok=True).ttq_for(visa)[1] & 0x80 == 0
    assert emv_terminal(c, FLOOR, offline_ok=True).ttq_for(visa)[1] & 0x80
    assert emv_terminal(c, FLOOR - 1, offline_ok=False).ttq_for(visa)[1] & 0x80
    assert emv_terminal(unit_cfg(0), 1, offline_ok=True).ttq_for(_rule(unit_cfg(0), "VISA"))[1] & 0x80  # 0: never
    # an application no rule names, and any terminal-wide default: online, always
    assert emv_terminal(c, 1, offline_ok=True).ttq_for(None)[1] & 0x80 and emv_terminal(c, 1).ttq[1] & 0x80
    only_cib = cfgmod.validate({"cards": P.sandbox_cards_config(schemes=[
        dict(s, cl_floor_limit=1000 if s["name"] == "CIB" else 0) for s in cl_schemes()]),
        "emv": P.sandbox_emv_config()})
    t = emv_terminal(only_cib, 999, offline_ok=True)
    assert t.ttq_for(_rule(only_cib, "CIB"))[1] & 0x80 == 0 and t.ttq_for(_rule(only_cib, "VISA"))[1] & 0x80


def test_a_genuine_offline_tap_is_approved_y1_with_the_balance_left():
    out = tap()
    assert out.status == "approved" and out.code == "Y1", out.message
    assert out.detail["emv"]["oda"] == "fdda" and out.detail["emv"]["offline_balance"] == BALANCE - AMOUNT


@pytest.mark.parametrize(("hook", "words"), [
    (replaced(0x9F4B, None), "no signed dynamic application data (9F4B)"),               # no signature
    (replaced(0x9F69, None), "card authentication related data (9F69) in the answer"),  # no 9F69
    (replaced(0x9F4B, bytes(127)), "(9F4B): 127 bytes"),                                 # truncated signature
    (replaced(0x9F4B, bytes(129)), "(9F4B): 129 bytes"),                                 # too long
    (replaced(0x9F69, bytes.fromhex("01A1B2C3")), "(9F69): 4 bytes, expected 7 to 16"),  # truncated 9F69
    (replaced(0x9F69, bytes.fromhex("02A1B2C3D40000")), "(9F69): fDDA version 02"),      # wrong fDDA version
    (replaced(0x9F69, bytes.fromhex("01") + bytes(16)), "(9F69): 17 bytes, expected 7"),  # too long
    (replaced(0x9F69, bytes.fromhex("01FFFFFFFF0000")), "hash does not match"),         # not what the card signed
])
def test_hostile_fdda_data_is_declined_z1_never_approved(hook, words):
    out = tap(hook=hook)
    assert out.status == "declined" and "Z1" in (out.message or "") and "fDDA" in (out.message or "")
    emv = out.detail["emv"]
    assert emv["oda"] == "fdda" and emv["oda_ok"] is False and int(emv["tvr"][:2], 16) & DDA_FAILED
    assert out.detail["reason"] == "oda_failed" and out.detail["oda"] == "fdda"
    # why, in the payment's detail and its chip summary (the journal keeps both): the check that caught it
    assert words in out.detail["oda_error"] and emv["oda_error"] == out.detail["oda_error"]


def test_missing_certificates_fail_fdda():
    def hook(apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if apdu[1] == 0xB2 and apdu[3] >> 3 == 3 and apdu[2] == 2:  # the ICC certificate's record: emptied
            return T.encode(T.tlv(0x70, [T.tlv(0x9F4A, b"\x82")])), sw
        return data, sw
    out = tap(hook=hook)
    assert out.status == "declined" and out.detail["emv"]["oda_ok"] is False
    assert int(out.detail["emv"]["tvr"][:2], 16) & (DDA_FAILED | 0x20)  # DDA failed, ICC data missing


@pytest.mark.parametrize("balance", [bytes.fromhex("0000000001"), bytes.fromhex("00000000010A"), b""])
def test_a_tc_with_a_malformed_offline_balance_is_refused(balance):
    out = tap(hook=replaced(0x9F5D, balance))
    assert out.status == "declined" and "9F5D" in (out.message or ""), out.message
    assert out.detail["reason"] == "card_unusable"


def test_the_offline_balance_a_tc_reports_is_what_is_left_after_it():
    # Visa qVSDC: 9F5D comes back already reduced by the offline-approved amount; a balance smaller than this
    # tap's amount is no reason to refuse the TC (the card approved it within what it had)
    out = tap(hook=replaced(0x9F5D, bytes.fromhex("000000000100")))
    assert out.status == "approved" and out.code == "Y1", out.message
    assert out.detail["emv"]["offline_balance"] == 100


def test_a_tc_when_our_ttq_demanded_online_is_refused_as_before():
    # the agent refuses an offline approval of this amount: the TTQ demands online; a card answering a TC anyway
    # (9F27 40) is sent to the contact interface, nothing charged
    def force_tc(apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if apdu[1] == 0xA8:
            kids = [T.tlv(0x9F27, b"\x40") if k.tag == 0x9F27 else k for k in T.decode(data)[0].children]
            return T.encode(T.tlv(0x77, kids)), sw
        return data, sw
    out = tap(hook=force_tc, offline_ok=False)
    assert out.status == "cancelled" and "insert the card" in (out.message or "")


def _only_cib_taps_offline() -> cfgmod.Config:
    return cfgmod.validate({"cards": P.sandbox_cards_config(schemes=[
        dict(s, cl_floor_limit=10_000_000 if s["name"] == "CIB" else 0) for s in cl_schemes()]),
        "emv": P.sandbox_emv_config()})


def test_a_scheme_with_no_floor_limit_is_told_online_and_the_card_keeps_its_balance():
    # CIB's rule has a floor limit, Visa's none: the TTQ sent to the Visa application demands online (GPO comes
    # after SELECT), the card answers an ARQC, the server is down: Z3, and its offline balance is untouched
    card = VirtualCard(P.PROFILES["visa_fdda"])
    out = tap(config=_only_cib_taps_offline(), card=card)
    assert out.status == "declined" and "Z3" in (out.message or ""), out.message
    assert out.detail["emv"]["cryptograms"] == ["ARQC"] and _de55({"de55": out.chip.de55})[0x9F66][1] & 0x80  # type: ignore[attr-defined]
    assert card.emv is not None and card.emv.offline_balance == BALANCE


def test_a_tc_over_this_schemes_floor_limit_is_refused():
    # a card answering a TC anyway (its 9F27 forced) where its scheme has no floor limit: insert the card
    out = tap(hook=gpo(lambda kids: [T.tlv(0x9F27, b"\x40") if k.tag == 0x9F27 else k for k in kids]),
              config=_only_cib_taps_offline())
    assert out.status == "cancelled" and "insert the card" in (out.message or ""), out.message


# ------------------------------------------------------------------ fDDA verification: typed errors only


@pytest.fixture(scope="module")
def fdda_key() -> tuple[oda.RsaKey, Any]:
    certs = issuer.certificates("4761739001010010", "2812", b"static", oda="dda")
    return oda.RsaKey(certs.icc_modulus or 0, 3), certs


UN, AMT, CUR = bytes.fromhex("CAFEBABE"), bytes.fromhex("000000030000"), bytes.fromhex("0012")


def test_fdda_verifies_what_the_card_signed_and_nothing_else(fdda_key):
    key, certs = fdda_key
    cad = issuer.card_authentication_data(bytes.fromhex("A1B2C3D4"))
    sdad = issuer.sign_fdda(certs, bytes.fromhex("A1B2C3D4"), UN, AMT, CUR, cad)
    assert oda.verify_fdda(key, sdad, cad, UN, AMT, CUR) == bytes.fromhex("A1B2C3D4")
    for args in ((sdad, cad, UN, bytes.fromhex("000000030001"), CUR), (sdad, cad, bytes(4), AMT, CUR),
                 (sdad, cad, UN, AMT, bytes.fromhex("0788")), (sdad, cad[:-1] + b"\x01", UN, AMT, CUR)):
        with pytest.raises(oda.OdaError, match="hash"):
            oda.verify_fdda(key, *args)


@settings(max_examples=200, deadline=None)
@given(sdad=st.one_of(st.binary(max_size=140), st.binary(min_size=128, max_size=128)),
       cad=st.one_of(st.binary(max_size=20), st.binary(min_size=7, max_size=7).map(lambda b: b"\x01" + b[1:])),
       un=st.binary(max_size=6), amount=st.binary(max_size=8), currency=st.binary(max_size=3))
def test_hostile_fdda_inputs_raise_only_oda_error(fdda_key, sdad, cad, un, amount, currency):
    key, _certs = fdda_key
    try:
        oda.verify_fdda(key, sdad, cad, un, amount, currency)
    except oda.OdaError as e:
        assert "\n" not in str(e)
    else:
        raise AssertionError("random bytes verified as an fDDA signature")


# ------------------------------------------------------------------ the card's own offline rules (sandbox card)


def _bcd(n: int) -> bytes:
    return bytes.fromhex(f"{n:012d}")


def _card(profile: str = "visa_fdda", **changes: Any) -> tuple[Any, EmvState]:
    app = P.PROFILES[profile].apps[0]
    assert app.emv is not None
    return app, EmvState(dataclasses.replace(app.emv, **changes), app.pan, app.psn, app.aip, app.certs)


@pytest.mark.parametrize(("ttq", "amount", "kind", "left"), [
    ("32004000", 30_000, 0x40, BALANCE - 30_000),  # the TTQ lets it, within the balance: TC, the balance drops
    ("32004000", BALANCE, 0x40, 0),                # the whole balance
    ("32004000", BALANCE + 1, 0x80, BALANCE),      # over it: ARQC
    ("32804000", 30_000, 0x80, BALANCE),           # online cryptogram required: ARQC
    ("3A004000", BALANCE + 1, 0x00, BALANCE),      # an offline-only reader, over the balance: AAC
])
def test_the_cards_offline_rules(ttq, amount, kind, left):
    app, card = _card()
    un, currency = b"UN!!", bytes.fromhex("0012")
    # VISA_CL_PDOL: 9F66 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37
    card.gpo(bytes.fromhex(ttq) + _bcd(amount) + bytes(6) + currency + bytes(5) + currency
             + bytes.fromhex("261201") + b"\x00" + un)
    got = {t.tag: t.value for t in card.one_tap(app.pdol)}
    assert got[0x9F27][0] == kind and card.offline_balance == left
    assert got[0x9F5D] == _bcd(left)  # what is left after this tap, as Visa qVSDC cards report it
    assert (0x9F4B in got) == (0x9F69 in got) == (kind == 0x40)
    if kind == 0x40:
        key = oda.RsaKey(app.certs.icc_modulus, 3)
        oda.verify_fdda(key, got[0x9F4B], got[0x9F69], un, _bcd(amount), currency)


def test_a_contact_online_approval_refills_the_offline_balance():
    app, card = _card("cib", offline_balance=0, offline_limit=BALANCE)
    un = b"UN!!"
    card.gpo(bytes(16))  # CONTACT_PDOL's data: not read by the contact flow
    cdol1 = (_bcd(1_000) + bytes(6) + b"\x00\x12" + bytes(5) + b"\x00\x12" + bytes.fromhex("261201") + b"\x00"
             + un + b"\x22" + bytes.fromhex("1E0300"))
    first, sw = card.generate_ac(0x80, cdol1)
    assert sw == 0x9000 and card.first_kind == 0x80 and card.offline_balance == 0
    iad = issuer.issuer_authentication_data(18, card.keys, card.first, card.first[0x9F26], b"00",
                                            bytes.fromhex("00800000"))
    second, sw = card.generate_ac(0x40, b"00" + iad + bytes(5) + un)
    assert sw == 0x9000 and T.decode(second)[0].children[0].value == b"\x40"  # TC after the ARPC checked
    assert card.offline_balance == BALANCE
