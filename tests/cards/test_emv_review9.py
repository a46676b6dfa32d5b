"""Review 9 of the contactless offline approval (fDDA, issue 14): each finding, on the real pcscd + vpcd where a
hostile card can be personalised (a virtual card's profile), through the real Kernel and ReaderAuthorizer over a
VirtualCard whose answers a hook rewrites where only a man in the middle could (tests.cards.
test_emv_contactless_offline.tap).

1. Terminal-sourced tags (9F37, 9F02 ...) a card sends are ignored: the DE55, the CDOLs and every check read the
   terminal's own (drivers.emv.reader.TERMINAL_TAGS).
2. After fDDA the CTQ the card signed (9F69) is the one that counts: a 9F6C that differs declines the tap (Z1).
3. The TTQ is the selected application's: a scheme whose rule has no contactless floor limit is told online.
4. A read (``guichet card read``, the card watcher) never lets a card approve offline.
5. A one-tap answer's 9F27 and 9F36 have their exact lengths, else one typed error naming the tag.
6. Why fDDA failed is in the outcome (the tests' words: tests/cards/test_emv_contactless_offline.py).
7. A contact card's ODA failure keeps its own words, never the tap's fDDA ones.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import config as cfgmod
from agent.authorize import AuthRequest
from agent.authorizers.card_reader import ChipOutcome, ReaderAuthorizer, ca_lookup, emv_terminal
from agent.cards import read_inserted
from agent.context import AgentContext
from drivers import pcsc
from drivers.emv import tlv as T
from drivers.emv.action import ActionCodes
from drivers.emv.kernel import Kernel, KernelParams
from drivers.emv.reader import TERMINAL_TAGS, EmvReader
from sandbox.cards import profiles as P
from sandbox.cards.card import VirtualCard
from tests.cards.test_emv_contactless_offline import (
    BALANCE,
    DDA_FAILED,
    Wire,
    _de55,
    _offline_bill,
    _recorded,
    _tap,
    cl_schemes,
    gpo,
    replaced,
    tap,
    unit_cfg,
)
from tests.core.conftest import with_changes
from ui.screens.wait import FDDA_FAILED, ODA_FAILED, _, decline_text

CHOSEN_UN = bytes.fromhex("11223344")
TINY = bytes.fromhex("000000000100")  # 1,00: an amount under every limit


def _with(profile: str, name: str, *, extra: list[T.TLV] = (), **emv: Any) -> P.Profile:  # type: ignore[assignment]
    """`profile` personalised otherwise: more objects in its GPO answer, other EMV data."""
    base = P.PROFILES[profile]
    app = base.apps[0]
    assert app.emv is not None
    app = dataclasses.replace(app, gpo_extra=[*app.gpo_extra, *extra], emv=dataclasses.replace(app.emv, **emv))
    return dataclasses.replace(base, name=name, apps=[app])


def _cfg(billing_config: cfgmod.Config, vpcd_reader: str, schemes: list[dict[str, Any]]) -> cfgmod.Config:
    return with_changes(billing_config, cards=P.sandbox_cards_config(reader=vpcd_reader, read_timeout=15,
                                                                     schemes=schemes),
                        emv=P.sandbox_emv_config(), payments={"allow_partial": True})


# ------------------------------------------------------------------ 1. terminal-sourced tags from the card


def test_a_tap_sending_its_own_un_and_amount_is_approved_on_the_terminals_and_its_tc_collected(
        billing_config, vpcd_reader, insert, billing_server, seeded_references):
    echo = _with("visa_fdda", "visa_fdda_echo", extra=[T.tlv(0x9F37, CHOSEN_UN), T.tlv(0x9F02, TINY)])
    with AgentContext.open(_cfg(billing_config, vpcd_reader, cl_schemes()), ["card_reader"],
                           take_payments=True) as agent:
        bill = _offline_bill(agent, billing_server, seeded_references[0])
        amount = min(30_000, bill.amount_due)
        with insert(echo) as link:
            result = agent.flow.pay([bill], method="card_reader", cashier_id="c1", amount=amount)
            signed_un = link.card.emv.pdol_data[-4:]  # VISA_CL_PDOL ends with 9F37: what the card signed
        [p] = result.payments
        p = agent.journal.get(p.payment_id)
        assert p.chip is not None and p.authorization is not None
        assert result.status == "approved" and p.authorization["code"] == "Y1", result.message
        tags = _de55(p.chip)
        assert tags[0x9F37] == signed_un != CHOSEN_UN and tags[0x9F02] == bytes.fromhex(f"{amount:012d}")
        billing_server.start()
        agent.sync_worker().run_once()
        assert agent.journal.get(p.payment_id).state == "uploaded", billing_server.rejections()  # its TC verified
        assert _recorded(billing_server)[p.payment_id]["payment"]["emv"] == p.chip["de55"]


def test_a_contact_card_sending_its_own_un_cannot_choose_what_its_arqc_covers(vpcd_reader, insert):
    cfg = unit_cfg()
    chosen = _with("cib", "cib_echo", extra=[T.tlv(0x9F37, CHOSEN_UN), T.tlv(0x9F02, TINY), T.tlv(0x9F33, b"\0\0\0")])
    with insert(chosen) as link, pcsc.connect(vpcd_reader) as conn:
        reader = EmvReader(conn, schemes=cfg.cards.schemes, aids=cfg.cards.aids, terminal=emv_terminal(cfg, 10_000),
                           hmac_key="k")
        params = KernelParams(tac=ActionCodes.of(tac_default="DC4000A800", tac_denial="0010000000",
                                                 tac_online="DC4004F800"), ca_key=ca_lookup(cfg))
        k = Kernel(reader, params)
        first = k.start()
        cdol1 = link.card.emv.cdol1_data  # as the card received it: 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 ...
        if k.card is not None:
            k.card.wipe()
    assert first.kind == "ARQC"
    terminal_un = reader.terminal_data[0x9F37]
    assert cdol1[25:29] == terminal_un != CHOSEN_UN and cdol1[:6] == bytes.fromhex("000000010000")
    online = {t.tag: t.value for t in T.decode(k.online_data())}
    assert online[0x9F37] == terminal_un and online[0x9F02] == bytes.fromhex("000000010000")
    assert k.oda_method == "dda" and k.oda_ok  # the card's 9F33 (no ODA) did not switch it off


def test_a_card_sent_amount_does_not_lift_the_contactless_limit():
    over = 6_000_000  # the Visa rule's cl_limit is 5,000,000
    assert "contactless limit" in (tap(amount=over, offline_ok=False).message or "")
    out = tap(hook=gpo(lambda kids: [*kids, T.tlv(0x9F02, TINY)]), amount=over, offline_ok=False)
    assert out.status == "cancelled" and "contactless limit" in (out.message or ""), out.message


@settings(max_examples=60, deadline=None)
@given(tag=st.sampled_from(sorted(TERMINAL_TAGS)), value=st.binary(max_size=8),
       where=st.sampled_from(["gpo", "record", "fci"]))
def test_no_terminal_tag_a_card_sends_changes_an_offline_tap(tag, value, where):
    """Any terminal-sourced tag, any value, in the GPO answer, a record the AFL does not sign (a signed one would
    fail fDDA, rightly) or the FCI: ignored, the tap approved on the terminal's own data (the DE55's terminal tags
    are the reader's terminal_data)."""
    def hook(apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if sw != 0x9000:
            return data, sw
        top = T.decode(data)[0]
        hit = ((where == "gpo" and apdu[1] == 0xA8) or (where == "record" and apdu[1] == 0xB2 and apdu[2] == 1
               and apdu[3] >> 3 == 3) or (where == "fci" and apdu[1] == 0xA4 and apdu[4:5] == b"\x07"))
        if not hit:
            return data, sw
        return T.encode(T.tlv(top.tag, [*top.children, T.tlv(tag, value)])), sw

    holder: dict[str, Any] = {}
    out = tap(hook=hook, keep=holder)
    assert out.status == "approved" and out.code == "Y1", out.message
    tags = {t.tag: t.value for t in T.decode(bytes.fromhex(out.chip.de55))}  # type: ignore[attr-defined]
    terminal = holder["reader"].terminal_data
    assert all(tags[t] == terminal[t] for t in tags if t in terminal), (hex(tag), value.hex())


def test_the_terminal_tags_are_the_readers_terminal_data_and_the_kernels_own():
    assert {0x9F37, 0x9F02, 0x9F03, 0x9F1A, 0x5F2A, 0x9A, 0x9C, 0x9F35, 0x9F33, 0x9F40, 0x95, 0x9B, 0x9F66, 0x9F21,
            0x9F09, 0x9F1E, 0x9F34, 0x8A} <= TERMINAL_TAGS
    assert not {0x9F26, 0x9F27, 0x9F36, 0x9F10, 0x9F6C, 0x9F69, 0x9F5D, 0x82, 0x94} & TERMINAL_TAGS


# ------------------------------------------------------------------ 2. the CTQ that counts is the signed one


def _cvm_cfg(billing_config: cfgmod.Config, vpcd_reader: str) -> cfgmod.Config:
    # a CVM limit (200,00) under the floor limit (400,00): an offline tap of 300,00 needs a consumer-device CVM
    return _cfg(billing_config, vpcd_reader, [dict(s, cl_cvm_limit=20_000) if s["name"] == "VISA" else s
                                              for s in cl_schemes()])


@pytest.mark.parametrize(("name", "extra", "ctq", "approved"), [
    ("visa_fdda_cdcvm", [], b"\x00\x80", True),                         # the card signed its CDCVM
    ("visa_fdda_forged", [T.tlv(0x9F6C, b"\x00\x80")], None, False),    # signed 0000, sends CDCVM: forged
])
def test_over_the_cvm_limit_only_a_signed_cdcvm_approves_offline(billing_config, vpcd_reader, insert, billing_server,
                                                                 seeded_references, name, extra, ctq, approved):
    with AgentContext.open(_cvm_cfg(billing_config, vpcd_reader), ["card_reader"], take_payments=True) as agent:
        bill = _offline_bill(agent, billing_server, seeded_references[1])
        if bill.amount_due < 30_000:
            pytest.skip("the seeded bill is smaller than the amount under test")
        card = _with("visa_fdda", name, extra=extra, **({"ctq": ctq} if ctq else {}))
        result, p, _ = _tap(agent, insert, card, bill, 30_000)
        blocking = agent.journal.blocking_payment(p.bill_reference)
    if approved:
        assert result.status == "approved" and p.chip["cvm"] == "cdcvm" and p.chip["oda_ok"] is True, result.message
    else:
        assert result.status == "declined" and "Z1" in (result.message or ""), result.message
        assert p.chip["oda_ok"] is False and int(p.chip["tvr"][:2], 16) & DDA_FAILED
        assert "9F6C" in p.chip["oda_error"] and blocking is None  # nothing charged: the bill stays payable


def test_a_cleared_signature_request_is_not_believed():
    # the card signed "signature asked" (CTQ 4000); a 9F6C of 0000 in the answer would skip the signature line
    card = VirtualCard(_with("visa_fdda", "visa_fdda_sig", ctq=b"\x40\x00"))
    assert tap(card=card).detail["emv"]["signature_required"] is True  # genuine: approved, signature line
    card = VirtualCard(_with("visa_fdda", "visa_fdda_sig", ctq=b"\x40\x00"))
    out = tap(card=card, hook=replaced(0x9F6C, b"\x00\x00"))
    assert out.status == "declined" and out.detail["reason"] == "oda_failed" and "9F6C" in out.detail["oda_error"]


# ------------------------------------------------------------------ 3. the TTQ of the selected application


def test_a_scheme_without_a_floor_limit_gets_an_online_ttq_and_keeps_its_offline_balance(
        billing_config, vpcd_reader, insert, billing_server, seeded_references):
    only_cib = [dict(s, cl_floor_limit=10_000_000 if s["name"] == "CIB" else 0) for s in cl_schemes()]
    with AgentContext.open(_cfg(billing_config, vpcd_reader, only_cib), ["card_reader"], take_payments=True) as agent:
        bill = _offline_bill(agent, billing_server, seeded_references[2])
        with insert("visa_fdda") as link:
            result = agent.flow.pay([bill], method="card_reader", cashier_id="c1", amount=min(30_000, bill.amount_due))
            ttq, left = link.card.emv.pdol_data[:4], link.card.emv.offline_balance
    assert ttq[1] & 0x80 and left == BALANCE  # online demanded: an ARQC, nothing spent
    assert result.status == "declined" and "Z3" in (result.message or ""), result.message


# ------------------------------------------------------------------ 4. a read never approves offline


@pytest.mark.parametrize("amount", [0, 30_000])
def test_a_card_read_never_lets_a_card_approve_offline(vpcd_reader, insert, amount):
    cfg = unit_cfg()
    with insert("visa_fdda") as link:
        card = read_inserted(cfg, vpcd_reader, amount=amount, require_token=False)
        card.wipe()
        st = link.card.emv
        assert st.pdol_data[1] & 0x80 and st.first_kind == 0x80 and st.offline_balance == BALANCE  # ARQC


# ------------------------------------------------------------------ 5. the one-tap cryptogram's lengths


@pytest.mark.parametrize(("hook", "words"), [
    (replaced(0x9F27, b"\x40\x00"), "9F27 is 2 bytes, expected 1 byte"),
    (replaced(0x9F27, b""), "9F27 is 0 bytes, expected 1 byte"),
    (replaced(0x9F36, None), "9F36 is missing, expected 2 bytes"),
    (replaced(0x9F36, b"\x00\x01\x02"), "9F36 is 3 bytes, expected 2 bytes"),
    (replaced(0x9F26, bytes(7)), "9F26 is 7 bytes, expected 8 bytes"),
])
def test_a_malformed_one_tap_cryptogram_is_one_typed_error_naming_the_tag(hook, words):
    out = tap(hook=hook)
    assert out.status == "declined" and words in (out.message or ""), out.message
    assert out.detail["reason"] == "card_unusable" and "\n" not in (out.message or "")


# ------------------------------------------------------------------ 7. a contact card's ODA failure: its own words


class _Unreached:
    def authorize(self, *_a: Any, **_k: Any) -> dict[str, Any]:
        raise AssertionError("a CDA failure declines before anything is sent")


def test_a_contact_cda_failure_keeps_its_own_words():
    def flip_sdad(apdu: bytes, data: bytes, sw: int) -> tuple[bytes, int]:
        if apdu[1] == 0xAE and sw == 0x9000:  # GENERATE AC: one bit of the CDA signature flipped
            kids = [T.tlv(0x9F4B, bytes([k.value[0] ^ 1]) + k.value[1:]) if k.tag == 0x9F4B else k
                    for k in T.decode(data)[0].children]
            if not any(k.tag == 0x9F26 for k in kids):
                kids.append(T.tlv(0x9F26, bytes(8)))
            return T.encode(T.tlv(0x77, kids)), sw
        return data, sw

    c = unit_cfg()
    auth = ReaderAuthorizer(c, _Unreached(), pin_pad=lambda _c: None)  # type: ignore[arg-type]
    req = AuthRequest("tx-1", ["p-1"], 10_000, "DZD", "R-1", online=True)
    reader = EmvReader(Wire(VirtualCard(P.PROFILES["emv_mc20"]), flip_sdad), schemes=c.cards.schemes,
                       aids=c.cards.aids, terminal=emv_terminal(c, 10_000), hmac_key="k", interface="contact")
    out = auth.run_kernel(req, Kernel(reader, lambda cd: auth._params(req, cd)), ChipOutcome("chip"),
                          threading.Event(), lambda _s: None)
    assert out.status == "declined" and out.detail["reason"] == "oda_failed" and out.detail["oda"] == "cda"
    assert "fDDA" not in (out.message or "") and "insert the card" not in (out.message or "")
    assert decline_text(out.detail, out.message or "") == _(ODA_FAILED) != _(FDDA_FAILED)
    assert "CDA signature (9F4B)" in out.detail["oda_error"]
