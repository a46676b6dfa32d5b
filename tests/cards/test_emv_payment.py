"""EMV transactions end to end: virtual cards with real payment applications in the vpcd reader, the real
pcscd, the kernel, the sandbox acquirer verifying ARQCs over HTTP, the real journal (issue 14).

Amount rules of the sandbox issuer (docs/sandbox-server.md): minor units ending in 51 decline (51), in 19 approve
with a wrong ARPC (a bad issuer), in 71 approve with issuer scripts."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.context import AgentContext
from drivers.emv.pinpad import PinPad
from sandbox.cards.profiles import PROFILES, TEST_PANS, sandbox_cards_config, sandbox_emv_config
from tests.cards.pinpad_double import PinPadReader
from tests.core.conftest import with_changes


@pytest.fixture
def emv_agent(billing_config, vpcd_reader):
    cfg = with_changes(billing_config, cards=sandbox_cards_config(reader=vpcd_reader, read_timeout=15),
                       emv=sandbox_emv_config(), payments={"allow_partial": True})
    ctx = AgentContext.open(cfg, ["card_reader"], take_payments=True)
    yield ctx
    ctx.close()


def _authorizations(server) -> dict[str, dict[str, Any]]:
    r = requests.get(server.url + "_sandbox/authorizations", headers=server.admin_headers(), timeout=5)
    r.raise_for_status()
    return {a["payment_id"]: a for a in r.json()["items"]}


def _pay(agent, insert, profile, ref, amount=None, statuses=None, bill=None):
    bill = bill or agent.flow.lookup(ref)
    with insert(profile) as link:
        result = agent.flow.pay([bill], method="card_reader", cashier_id="c1", amount=amount,
                                on_status=(statuses.append if statuses is not None else None))
        commands = list(link.card.commands)
    [p] = result.payments
    chip = None
    for ev in reversed(agent.journal.audit(p.payment_id)):
        if (ev.get("detail") or {}).get("emv"):
            chip = ev["detail"]["emv"]
            break
    return result, p, chip, commands


def _amount(bill_amount: int, ending: int) -> int:
    return bill_amount - bill_amount % 100 - 100 + ending


@pytest.mark.parametrize(("profile", "oda"), [("cib", "dda"), ("edahabia", "sda"), ("nopse", "cda"),
                                              ("emv_visa10", "sda"), ("emv_mc20", "cda")])
def test_an_approved_chip_payment_is_a_whole_emv_transaction(emv_agent, insert, billing_server, seeded_references,
                                                            profile, oda):
    statuses: list[str] = []
    result, p, chip, commands = _pay(emv_agent, insert, profile, seeded_references[0], statuses=statuses)
    assert result.status == "approved", result.message
    assert chip["oda"] == oda and chip["oda_ok"] is True and chip["cryptograms"] == ["ARQC", "TC"]
    assert chip["entry_mode"] == "chip" and chip["response_code"] == "00" and not chip["reversal_sent"]
    assert chip["tvr"] == "0000008000"  # only "over the floor limit" (0): nothing failed
    assert [c[:2] for c in commands].count(b"\x80\xae") == 2  # two GENERATE ACs
    if oda == "dda":
        assert b"\x00\x88" in [c[:2] for c in commands]  # INTERNAL AUTHENTICATE
    if profile in ("nopse", "emv_mc20"):
        assert chip["issuer_authenticated"] is True and b"\x00\x82" in [c[:2] for c in commands]
    auth = _authorizations(billing_server)[p.transaction_id]
    assert auth["chip"] is not None and not auth["reversed"]
    assert "do_not_remove" in statuses and statuses.index("do_not_remove") < statuses.index("authorising")
    assert statuses[-1] == "remove_card"


def test_a_card_that_declines_offline_sends_nothing(emv_agent, insert, billing_server, seeded_references):
    result, p, chip, _ = _pay(emv_agent, insert, "emv_decline", seeded_references[1])
    assert result.status == "declined" and "Z1" in result.message
    assert chip["cryptograms"] == ["AAC"] and chip["response_code"] == "Z1"
    assert emv_agent.client.get_authorization(p.transaction_id) is None  # the acquirer never heard of it
    assert emv_agent.journal.blocking_payment(p.bill_reference) is None


def test_aac_after_the_issuers_approval_is_declined_and_reversed(emv_agent, insert, billing_server,
                                                                  seeded_references):
    result, p, chip, _ = _pay(emv_agent, insert, "emv_aac_second", seeded_references[2])
    assert result.status == "declined" and "reversed" in result.message, result.message
    assert chip["cryptograms"] == ["ARQC", "AAC"] and chip["reversal_sent"] and chip["reversal_acknowledged"]
    auth = _authorizations(billing_server)[p.transaction_id]
    assert auth["reversed"] and auth["reversal_reason"] == "card_declined_after_approval"


def test_a_wrong_arpc_from_a_bad_issuer_is_refused_by_the_card_and_reversed(emv_agent, insert, billing_server,
                                                                            seeded_references):
    bill = emv_agent.flow.lookup(seeded_references[3])
    result, p, chip, _ = _pay(emv_agent, insert, "nopse", seeded_references[3], amount=_amount(bill.amount_due, 19))
    assert result.status == "declined", result.message
    assert chip["issuer_authenticated"] is False and chip["cryptograms"] == ["ARQC", "AAC"]
    assert int(chip["tvr"][8:10], 16) & 0x40  # issuer authentication failed
    assert _authorizations(billing_server)[p.transaction_id]["reversed"]


def test_a_card_pulled_before_completion_is_never_approved(emv_agent, insert, billing_server, seeded_references):
    result, p, chip, _ = _pay(emv_agent, insert, "emv_pulled", seeded_references[4])
    assert result.status == "declined" and "removed" in result.message, result.message
    assert chip["reversal_reason"] == "card_removed" and chip["reversal_acknowledged"]
    assert _authorizations(billing_server)[p.transaction_id]["reversal_reason"] == "card_removed"


def test_declined_by_the_bank_completes_the_card_with_an_aac(emv_agent, insert, billing_server, seeded_references):
    bill = emv_agent.flow.lookup(seeded_references[5])
    result, p, chip, _ = _pay(emv_agent, insert, "cib", seeded_references[5], amount=_amount(bill.amount_due, 51))
    assert result.status == "declined" and "51" in result.message
    assert chip["cryptograms"] == ["ARQC", "AAC"] and not chip["reversal_sent"]


def test_a_tampered_certificate_fails_oda_and_the_issuer_codes_decline(emv_agent, insert, billing_server,
                                                                      seeded_references):
    result, p, chip, _ = _pay(emv_agent, insert, "emv_tampered", seeded_references[6])
    assert result.status == "declined"
    assert chip["oda"] == "dda" and chip["oda_ok"] is False and int(chip["tvr"][:2], 16) & 0x08  # DDA failed
    assert chip["cryptograms"] == ["AAC"]


def test_velocity_checking_reads_the_counters_and_goes_online(emv_agent, insert, billing_server, seeded_references):
    result, p, chip, commands = _pay(emv_agent, insert, "emv_velocity", seeded_references[7])
    assert result.status == "approved"
    assert int(chip["tvr"][6:8], 16) & 0x60 == 0x60  # LCOL and UCOL exceeded
    assert bytes.fromhex("80CA9F36") in commands and bytes.fromhex("80CA9F13") in commands


def test_a_server_that_cannot_be_reached_declines_z3(emv_agent, insert, billing_server, seeded_references):
    bill = emv_agent.flow.lookup(seeded_references[8])
    emv_agent.client.base = "http://127.0.0.1:9/v1/"  # nothing listens there: not sent
    result, p, chip, _ = _pay(emv_agent, insert, "cib", seeded_references[8], bill=bill)
    assert result.status == "declined" and "Z3" in result.message, result.message
    assert chip["cryptograms"] == ["ARQC", "AAC"] and chip["response_code"] == "Z3"
    assert bill.reference == p.bill_reference


def test_contactless_one_tap_finishes_the_card_before_the_online_request(emv_agent, insert, billing_server,
                                                                         seeded_references):
    result, p, chip, commands = _pay(emv_agent, insert, "visa_cl", seeded_references[9])
    assert result.status == "approved", result.message
    assert chip["entry_mode"] == "contactless" and chip["cryptograms"] == ["ARQC"]
    assert len(commands) == PROFILES["visa_cl"].expected_apdus  # PPSE, SELECT, GPO, one record: nothing after


@pytest.mark.parametrize(
    ("profile", "entries", "status", "cvm", "pin_text"),
    [
        ("emv_pin_only", ["1234"], "approved", "offline_pin", ""),
        ("emv_pin_only", ["0000", "1234"], "approved", "offline_pin", ""),
        ("cib", [None], "approved", "signature", ""),  # cancelled on the pad: the next rule (signature)
        ("emv_pin_blocked", ["1234"], "approved", "signature", "PIN blocked"),
    ],
)
def test_the_pin_is_typed_on_the_readers_pin_pad(emv_agent, insert, billing_server, seeded_references, profile,
                                                 entries, status, cvm, pin_text):
    doubles: list[PinPadReader] = []

    def pad(conn):
        doubles.append(PinPadReader(conn, entries))
        return PinPad.detect(doubles[-1])

    emv_agent.flow.authorizers["card_reader"].pin_pad = pad
    statuses: list[str] = []
    result, p, chip, commands = _pay(emv_agent, insert, profile, seeded_references[10], statuses=statuses)
    assert result.status == status, result.message
    assert chip["cvm"] == cvm
    if cvm == "offline_pin":
        assert chip["cvm_results"].endswith("02") and "enter_pin" in statuses
        assert [c[:2] for c in commands].count(b"\x00\x20") == len(entries)  # VERIFY, built by the "reader"
    if pin_text:
        assert int(chip["tvr"][4:6], 16) & 0x20  # PIN try limit exceeded
    # the PIN never passed through our code: the structure we sent holds only the template's F padding
    assert all(b"\x12\x34" not in s for s in doubles[0].structures)


def test_a_reader_without_a_pin_pad_moves_on_as_book_3_says(emv_agent, insert, billing_server, seeded_references):
    emv_agent.flow.authorizers["card_reader"].pin_pad = lambda conn: PinPad.detect(PinPadReader(conn, feature=False))
    result, p, chip, _ = _pay(emv_agent, insert, "emv_pin_only", seeded_references[11])
    # offline PIN is the only rule: not performed (no PIN pad), CVM failed, the issuer decides online
    assert chip["cvm"] == "none" and chip["cvm_results"] == "3F0001"
    assert int(chip["tvr"][4:6], 16) & 0x90 == 0x90  # CVM not successful + PIN pad not present
    assert result.status in ("approved", "declined")


@pytest.mark.parametrize("answer", ["770A9F2701809F3602", "800B8000011122334455667788", "6F00", "7104AABBCCDD"])
def test_a_hostile_generate_ac_answer_is_declined_before_any_request(emv_agent, insert, billing_server,
                                                                     seeded_references, answer):
    prof = dataclasses.replace(PROFILES["emv_decline"], name="hostile_ac", garbage={
        "GENERATE AC": bytes.fromhex(answer)})
    result, p, chip, _ = _pay(emv_agent, insert, prof, seeded_references[12])
    assert result.status == "declined" and "\n" not in result.message
    assert "GENERATE AC" in result.message
    assert emv_agent.client.get_authorization(p.transaction_id) is None


def test_guichet_pay_json_reports_the_transaction_without_a_card_number(billing_config, vpcd_reader, insert,
                                                                        billing_server, seeded_references,
                                                                        tmp_path: Path):
    import config

    cfg = with_changes(billing_config, cards=sandbox_cards_config(reader=vpcd_reader, read_timeout=15),
                       emv=sandbox_emv_config())
    path = config.write_config(cfg, tmp_path / "guichet.toml")
    with insert("cib"):
        res = subprocess.run([sys.executable, "-m", "guichet", "--config", str(path), "pay", seeded_references[0],
                              "--method", "card_reader", "--json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    emv = out["emv"]
    assert {"entry_mode", "oda", "cvm", "cvm_results", "tvr", "tsi", "cryptograms", "response_code",
            "reversal_sent"} <= set(emv)
    assert emv["cryptograms"] == ["ARQC", "TC"] and emv["reversal_sent"] is False
    assert not any(pan in res.stdout + res.stderr for pan in TEST_PANS)


@pytest.fixture
def cl_agent(billing_config, vpcd_reader):
    from sandbox.cards.profiles import TEST_SCHEMES

    schemes = [dict(s, cl_limit=50_000, cl_cvm_limit=20_000) if s["name"] == "VISA" else s for s in TEST_SCHEMES]
    cfg = with_changes(billing_config, cards=sandbox_cards_config(reader=vpcd_reader, read_timeout=15,
                                                                  schemes=schemes),
                       emv=sandbox_emv_config(), payments={"allow_partial": True})
    ctx = AgentContext.open(cfg, ["card_reader"], take_payments=True)
    yield ctx
    ctx.close()


@pytest.mark.parametrize(("profile", "amount", "status", "words"), [
    ("visa_cl", 10_000, "approved", ""),  # under the CVM limit: one tap
    ("visa_cl", 30_000, "cancelled", "insert the card"),  # over the CVM limit, no CVM on a plain card
    ("visa_cl_cdcvm", 30_000, "approved", ""),  # the phone verified the cardholder
    ("visa_cl_cdcvm", 60_000, "cancelled", "contactless limit"),  # over the contactless limit: insert
])
def test_contactless_limits_per_scheme(cl_agent, insert, billing_server, seeded_references, profile, amount,
                                       status, words):
    bill = cl_agent.flow.lookup(seeded_references[13])
    if bill.amount_due < amount:
        pytest.skip("the seeded bill is smaller than the amount under test")
    result, p, chip, _ = _pay(cl_agent, insert, profile, seeded_references[13], amount=amount, bill=bill)
    assert result.status == status, result.message
    assert words in result.message
    if status == "cancelled":
        assert cl_agent.client.get_authorization(p.transaction_id) is None  # nothing was sent
    elif profile == "visa_cl_cdcvm":
        assert chip["cvm"] == "cdcvm"


@pytest.mark.parametrize(("allowed", "status", "code", "cryptograms"), [
    (True, "approved", "Y3", ["ARQC", "TC"]), (False, "declined", "Z3", ["ARQC", "AAC"])])
def test_unable_to_go_online_the_default_codes_and_the_offline_limits_decide(
        billing_config, vpcd_reader, insert, billing_server, seeded_references, allowed, status, code, cryptograms):
    from sandbox.cards.profiles import TEST_SCHEMES

    schemes = [dict(s, floor_limit=100_000_000) if s["name"] == "CIB" else s for s in TEST_SCHEMES]
    cfg = with_changes(billing_config, cards=sandbox_cards_config(reader=vpcd_reader, read_timeout=15,
                                                                  schemes=schemes), emv=sandbox_emv_config())
    with AgentContext.open(cfg, ["card_reader"], take_payments=True) as agent:
        agent.flow.authorizers["card_reader"].offline_allowed = lambda amount: allowed
        bill = agent.flow.lookup(seeded_references[14])
        agent.client.base = "http://127.0.0.1:9/v1/"  # nothing listens: the request is never sent
        result, p, chip, _ = _pay(agent, insert, "emv_lcol", seeded_references[14], bill=bill)
    assert result.status == status and code in result.message, result.message
    assert chip["cryptograms"] == cryptograms and chip["response_code"] == code
    assert int(chip["tvr"][6:8], 16) & 0x40  # LCOL exceeded: why it wanted to go online


def test_doctor_checks_pin_pad_and_ca_keys(vpcd_reader, billing_config):
    from drivers.emv.checks import ca_key_gaps, reader_pin_pad

    assert reader_pin_pad(vpcd_reader) is False  # vpcd's driver lists no part 10 feature
    assert reader_pin_pad("no such reader") is None
    sandbox = with_changes(billing_config, cards=sandbox_cards_config(), emv=sandbox_emv_config())
    assert ca_key_gaps(sandbox) == []
    gaps = ca_key_gaps(with_changes(billing_config, cards=sandbox_cards_config()))
    assert any(g.startswith("CIB: no CA public key for RID A000000999") for g in gaps)


def test_issuer_scripts_run_before_and_after_the_second_generate_ac(emv_agent, insert, billing_server,
                                                                   seeded_references):
    bill = emv_agent.flow.lookup(seeded_references[15])
    result, p, chip, commands = _pay(emv_agent, insert, "cib", seeded_references[15],
                                     amount=_amount(bill.amount_due, 71))
    assert result.status == "approved", result.message
    assert [s["template"] for s in chip["scripts"]] == ["71", "72"] and all(s["ok"] for s in chip["scripts"])
    assert int(chip["tsi"][:2], 16) & 0x04  # script processing performed
    heads = [c[:2] for c in commands]
    second_ac = len(heads) - 1 - heads[::-1].index(b"\x80\xae")
    assert heads.index(b"\x04\xda") < second_ac < heads.index(b"\x84\x18")  # 71 before, 72 after


@pytest.mark.parametrize(("pick", "scheme"), [(None, "VISA"), (0, "CIB"), (1, "VISA")])
def test_an_application_asking_for_confirmation_is_the_customers_choice(emv_agent, insert, billing_server,
                                                                         seeded_references, pick, scheme):
    offered: list[list[str]] = []

    def choose(cands):
        offered.append([c.label for c in cands])
        return pick

    if pick is not None:
        emv_agent.flow.authorizers["card_reader"].choose = choose
    result, p, chip, _ = _pay(emv_agent, insert, "confirm", seeded_references[16])
    assert result.status == "approved", result.message
    assert p.card["scheme"] == scheme
    if pick is not None:
        assert offered == [["CIB TEST", "VISA"]]  # priority order


def test_no_choice_made_cancels_before_anything_is_sent(emv_agent, insert, billing_server, seeded_references):
    emv_agent.flow.authorizers["card_reader"].choose = lambda cands: None
    result, p, chip, _ = _pay(emv_agent, insert, "confirm", seeded_references[17])
    assert result.status == "cancelled"
    assert emv_agent.client.get_authorization(p.transaction_id) is None


@pytest.mark.parametrize("answer", ["770A9F2701409F3602", "6F00", "8005AABBCCDDEE"])
def test_a_hostile_second_generate_ac_after_approval_is_reversed(emv_agent, insert, billing_server,
                                                                 seeded_references, answer):
    prof = dataclasses.replace(PROFILES["cib"], name="hostile_ac2", garbage={
        "GENERATE AC 2": bytes.fromhex(answer)})
    result, p, chip, _ = _pay(emv_agent, insert, prof, seeded_references[18])
    assert result.status == "declined" and "\n" not in result.message, result.message
    assert chip["reversal_reason"] == "card_declined_after_approval" and chip["reversal_acknowledged"]
    assert _authorizations(billing_server)[p.transaction_id]["reversed"]


@pytest.mark.parametrize("answer", ["80020102", "6985", "7703AABBCC", "9F4B"])
def test_a_hostile_internal_authenticate_fails_dda_and_nothing_else(emv_agent, insert, billing_server,
                                                                    seeded_references, answer):
    prof = dataclasses.replace(PROFILES["cib"], name="hostile_dda", garbage={
        "INTERNAL AUTHENTICATE": bytes.fromhex(answer)})
    result, p, chip, _ = _pay(emv_agent, insert, prof, seeded_references[19])
    assert chip["oda"] == "dda" and chip["oda_ok"] is False and int(chip["tvr"][:2], 16) & 0x08
    assert result.status in ("approved", "declined")  # the issuer sees the TVR and decides


@pytest.mark.parametrize("profile", ["emv_visa10", "emv_visa18", "emv_mc20", "edahabia"])
def test_the_final_tc_verifies_from_the_outcomes_chip_data(emv_agent, insert, billing_server, profile):
    """Round trip card -> sandbox acquirer -> card per CVN: the outcome keeps the final cryptogram's DE55, and the
    issuer recomputes the TC from it (what an offline TC's upload and a dispute need)."""
    import threading

    from agent.authorize import AuthRequest
    from drivers.emv import tlv as T
    from sandbox import issuer

    auth = emv_agent.flow.authorizers["card_reader"]
    req = AuthRequest(transaction_id=f"tc-{profile}", payment_ids=[f"tc-{profile}"], amount=12_300,
                      currency="DZD", receipt_number="R1", online=True)
    with insert(profile):
        out = auth.authorize(req, cancel=threading.Event(), on_status=lambda key: None)
    assert out.status == "approved", out.message
    tags = {t.tag: t.value for t in T.decode(bytes.fromhex(out.chip.de55))}
    assert tags[0x9F27] == b"\x40" and not {0x5A, 0x57, 0x9F1F} & set(tags)
    keys = issuer.card_keys(PROFILES[profile].pan, int(tags.get(0x5F34, b"\x00").hex()))
    assert issuer.cryptogram(issuer.cvn_of(tags[0x9F10]), keys, tags) == tags[0x9F26]
