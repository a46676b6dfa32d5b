"""EMV Book 3 rules without a reader: the CVM list and terminal action analysis against Book 3's tables
(hypothesis), offline data authentication against the sandbox issuer's certificates, GENERATE AC answers from a
hostile card, the contract's DE55 with the public test vector."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.emv import action, cvm, genac, oda
from drivers.emv import tlv as T
from drivers.emv import tvr as V
from drivers.emv.kernel import DE55_TAGS, SECRET_TAGS, de55
from sandbox import issuer

CAPS = bytes.fromhex("E0A8C8")  # plaintext PIN, signature, no CVM; SDA, DDA, CDA

# ----------------------------------------------------------------------------- CVM (Book 3 10.5, tables 39-40)

RULE_METHODS = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x1E, 0x1F, 0x20, 0x3E]
rules = st.lists(st.tuples(st.sampled_from(RULE_METHODS), st.booleans(), st.integers(0, 0x0B)), max_size=6)


def _list(x: int, y: int, entries: list[tuple[int, bool, int]]) -> bytes:
    body = b"".join(bytes([m | (0x40 if nxt else 0), c]) for m, nxt, c in entries)
    return x.to_bytes(4, "big") + y.to_bytes(4, "big") + body


def _oracle(x: int, y: int, entries: list[tuple[int, bool, int]], ctx: cvm.CvmContext, pin_ok: bool) -> str:
    """Book 3 figure 8, written out independently: the method that ends CVM processing, or 'none'."""
    for method, nxt, cond in entries:
        term_supports = {
            0x00: True, 0x01: ctx.pin_pad, 0x03: ctx.pin_pad, 0x02: False, 0x04: False, 0x05: False,
            0x1E: True, 0x1F: True,
        }.get(method, False)
        amount_ok = ctx.currency_matches
        met = {0: True, 1: False, 2: True, 3: term_supports, 4: False, 5: False,
               6: amount_ok and ctx.amount < x, 7: amount_ok and ctx.amount > x,
               8: amount_ok and ctx.amount < y, 9: amount_ok and ctx.amount > y}.get(cond, False)
        if not met:
            continue
        if term_supports and method in (0x01, 0x03) and pin_ok:
            return cvm.NAMES[method]
        if term_supports and method in (0x1E, 0x1F):
            return cvm.NAMES[method]
        if not nxt:
            return "none"
    return "none"


@settings(max_examples=400, deadline=None)
@given(x=st.integers(0, 10_000), y=st.integers(0, 10_000), entries=rules, amount=st.integers(0, 20_000),
       pin_pad=st.booleans(), same_currency=st.booleans(), pin_ok=st.booleans())
def test_the_cvm_list_walk_follows_book_3(x, y, entries, amount, pin_pad, same_currency, pin_ok):
    ctx = cvm.CvmContext(amount=amount, currency_matches=same_currency, capabilities=CAPS, pin_pad=pin_pad)
    asked: list[int] = []

    def perform(method: int) -> cvm.PinResult:
        asked.append(method)
        return cvm.PinResult.OK if pin_ok else cvm.PinResult.WRONG

    tvr = V.Tvr()
    out = cvm.run(_list(x, y, entries), ctx, perform, tvr)
    assert out.method == _oracle(x, y, entries, ctx, pin_ok)
    assert len(out.results) == 3 and out.results[2] in (0, 1, 2)
    assert (out.method == "none") == tvr.has(V.CVM_FAILED)
    assert not asked or pin_pad  # never a PIN without a PIN pad
    if out.method in ("signature", "offline_pin_signature"):
        assert out.signature and out.results[2] == 0  # "unknown": the signature is checked on paper


@pytest.mark.parametrize(
    ("cvm_list", "pin_pad", "method", "results", "bits"),
    [
        ("0000000000000000" "4103" "4203" "1E03" "1F03", False, "signature", "1E0300", []),
        ("0000000000000000" "4103" "4203" "1E03" "1F03", True, "offline_pin", "410302", []),
        ("0000000000000000" "0100", False, "none", "3F0001", [V.PIN_PAD_MISSING, V.CVM_FAILED]),
        ("0000000000000000" "4200" "1F00", True, "no_cvm", "1F0002", []),  # online PIN: we cannot, next
        ("0000000000000000" "0200" "1F00", True, "none", "3F0001", [V.CVM_FAILED]),  # cannot, no next
        ("0000000000000000" "0000" "1F00", True, "none", "000001", [V.CVM_FAILED]),  # "fail CVM" stops it
        ("0000000000000000" "4000" "1F00", True, "no_cvm", "1F0002", []),  # ... unless "apply next" is set
        ("0000000000000000" "7F00", True, "none", "3F0001", [V.UNRECOGNISED_CVM, V.CVM_FAILED]),
        ("", True, "none", "3F0000", [V.ICC_DATA_MISSING]),
        ("00000000000000", True, "none", "3F0000", [V.ICC_DATA_MISSING]),  # shorter than X and Y
    ],
)
def test_cvm_table(cvm_list, pin_pad, method, results, bits):
    ctx = cvm.CvmContext(amount=1000, currency_matches=True, capabilities=CAPS, pin_pad=pin_pad)
    tvr = V.Tvr()
    out = cvm.run(bytes.fromhex(cvm_list), ctx, lambda m: cvm.PinResult.OK, tvr)
    assert (out.method, out.results.hex().upper()) == (method, results)
    assert all(tvr.has(b) for b in bits) and len(tvr.names()) == len(bits)


def test_a_blocked_pin_sets_its_bit_and_moves_on():
    ctx = cvm.CvmContext(amount=1000, currency_matches=True, capabilities=CAPS, pin_pad=True)
    tvr = V.Tvr()
    out = cvm.run(bytes(8) + bytes.fromhex("4103" "1E03"), ctx, lambda m: cvm.PinResult.BLOCKED, tvr)
    assert out.method == "signature" and tvr.has(V.PIN_TRY_LIMIT_EXCEEDED) and not tvr.has(V.CVM_FAILED)


# ----------------------------------------------------------------------------- terminal action analysis (10.7)

five = st.binary(min_size=5, max_size=5)


@settings(max_examples=500, deadline=None)
@given(tvr=five, tac_d=five, tac_n=five, tac_o=five, iac=st.tuples(st.none() | five, st.none() | five,
       st.none() | five), online=st.booleans())
def test_action_analysis_follows_book_3(tvr, tac_d, tac_n, tac_o, iac, online):
    codes = action.ActionCodes(default=tac_d, denial=tac_n, online=tac_o)
    card = {t: v for t, v in zip((0x9F0D, 0x9F0E, 0x9F0F), iac, strict=True) if v is not None}
    hit = lambda tac, iac_v, missing: any(t & (a | b) for t, a, b in zip(tvr, tac, iac_v or missing, strict=True))  # noqa: E731
    if hit(tac_n, card.get(0x9F0E), bytes(5)):
        want = "AAC"
    elif online:
        want = "ARQC" if hit(tac_o, card.get(0x9F0F), b"\xff" * 5) else "TC"
    else:
        want = "AAC" if hit(tac_d, card.get(0x9F0D), b"\xff" * 5) else "TC"
    assert action.first_ac(tvr, codes, card, online_capable=online) == want


def test_action_analysis_table():
    codes = action.ActionCodes.of(tac_default="DC4000A800", tac_denial="0010000000", tac_online="DC4004F800")
    no_iac = {0x9F0D: bytes(5), 0x9F0E: bytes(5), 0x9F0F: bytes(5)}
    assert action.first_ac(bytes.fromhex("0000000000"), codes, no_iac, online_capable=True) == "TC"
    assert action.first_ac(bytes.fromhex("0000008000"), codes, no_iac, online_capable=True) == "ARQC"  # floor
    assert action.first_ac(bytes.fromhex("0000008000"), codes, no_iac, online_capable=False) == "AAC"
    assert action.first_ac(bytes.fromhex("0010000000"), codes, no_iac, online_capable=True) == "AAC"  # service
    assert action.first_ac(bytes.fromhex("0000000000"), codes, {}, online_capable=False) == "TC"
    assert action.first_ac(bytes.fromhex("0000000100"), codes, {}, online_capable=True) == "ARQC"  # IAC absent: 1s


# ----------------------------------------------------------------------------- offline data authentication

PAN = "4761739001010010"
CA = oda.RsaKey(issuer.CA_MODULUS, issuer.CA_EXPONENT)
TODAY = dt.date(2026, 11, 30)
STATIC = bytes.fromhex("5A0847617390010100105F24032812317C00") + b"\x39\x00"


def _issuer_key(certs):
    return oda.issuer_key(CA, certs.issuer_cert, certs.issuer_remainder, certs.issuer_exponent, pan=PAN, today=TODAY)


def test_sda_dda_and_cda_recover_the_sandbox_issuers_signatures():
    certs = issuer.certificates(PAN, "2812", STATIC, oda="sda")
    assert oda.verify_sda(_issuer_key(certs), certs.ssad, STATIC) == certs.data_authentication_code
    certs = issuer.certificates(PAN, "2812", STATIC, oda="dda")
    icc = oda.icc_key(_issuer_key(certs), certs.icc_cert, certs.icc_remainder, certs.icc_exponent, STATIC,
                      pan=PAN, today=TODAY)
    assert oda.verify_dda(icc, issuer.sign_dynamic(certs, b"\x00\x01\x02\x03", b"\x11\x22\x33\x44"),
                          b"\x11\x22\x33\x44") == b"\x00\x01\x02\x03"
    certs = issuer.certificates(PAN, "2812", STATIC, oda="cda")
    icc = oda.icc_key(_issuer_key(certs), certs.icc_cert, certs.icc_remainder, certs.icc_exponent, STATIC,
                      pan=PAN, today=TODAY)
    tx = b"pdol" + b"cdol1" + b"answer"
    sdad = issuer.sign_cda(certs, b"\x00\x07", 0x80, b"\xac" * 8, b"\x01\x02\x03\x04", tx)
    assert oda.verify_cda(icc, sdad, b"\x01\x02\x03\x04", 0x80, oda.transaction_hash(b"pdol", b"cdol1", b"answer")
                          ) == (b"\x00\x07", b"\xac" * 8)
    with pytest.raises(oda.OdaError, match="CID"):
        oda.verify_cda(icc, sdad, b"\x01\x02\x03\x04", 0x40, oda.transaction_hash(b"pdol", b"cdol1", b"answer"))


@pytest.mark.parametrize("method", ["sda", "dda"])
def test_a_tampered_certificate_fails_with_one_line(method):
    certs = issuer.certificates(PAN, "2812", STATIC, oda=method, tamper=True)
    with pytest.raises(oda.OdaError) as e:
        key = _issuer_key(certs)
        if method == "sda":
            oda.verify_sda(key, certs.ssad, STATIC)
        else:
            oda.icc_key(key, certs.icc_cert, certs.icc_remainder, certs.icc_exponent, STATIC, pan=PAN, today=TODAY)
    assert "\n" not in str(e.value)


def test_static_data_changed_after_signing_fails_sda():
    certs = issuer.certificates(PAN, "2812", STATIC, oda="sda")
    with pytest.raises(oda.OdaError, match="hash"):
        oda.verify_sda(_issuer_key(certs), certs.ssad, STATIC[:-1] + b"\x01")


def test_another_cards_number_fails_the_icc_certificate():
    certs = issuer.certificates(PAN, "2812", STATIC, oda="dda")
    with pytest.raises(oda.OdaError, match="card"):
        oda.icc_key(_issuer_key(certs), certs.icc_cert, certs.icc_remainder, certs.icc_exponent, STATIC,
                    pan="4761739001010028", today=TODAY)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=160))
def test_recovery_of_any_bytes_is_an_oda_error_or_a_key(raw):
    try:
        oda.issuer_key(CA, raw, b"", b"\x03", pan=PAN, today=TODAY)
    except oda.OdaError as e:
        assert "\n" not in str(e)


# ----------------------------------------------------------------------------- GENERATE AC answers

@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80), st.sampled_from(["AAC", "TC", "ARQC"]))
def test_any_generate_ac_answer_parses_or_is_one_typed_error(raw, asked):
    try:
        ac = genac.parse_answer(raw, asked)
    except genac.GenAcError as e:
        assert "\n" not in str(e)
    else:
        assert ac.kind in genac.ALLOWED[asked] and len(ac.iad) <= 32


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("8010" "80" "0001" "11223344556677", "runs past the end"),  # truncated
        ("8008" "80" "0001" "1122334455", "at least 11"),  # wrong length
        ("7104" "9F270180", "unexpected template 71"),  # wrong tag
        ("770B" "9F270180" "9F3602" "0001" "9F26" "00", "9F26|runs past"),
        ("770F" "9F270180" "9F360100" "9F260411223344", "9F36"),
        ("800B" "C0" "0001" "1122334455667788", "reserved"),
        ("800B" "80" "0001" "1122334455667788", "without issuer application data"),
    ],
)
def test_hostile_generate_ac_answers(raw, match):
    with pytest.raises(genac.GenAcError, match=match):
        genac.parse_answer(bytes.fromhex(raw), "TC")


# ----------------------------------------------------------------------------- DE55 and the public vector

def test_de55_carries_the_public_vector_and_no_card_number():
    """test-keys.md's Visa CVN 18 vector through our DE55 encoder: the issuer recomputes the ARQC from it."""
    tags = {0x9F02: bytes.fromhex("000000004000"), 0x9F03: bytes(6), 0x9F1A: bytes.fromhex("0124"),
            0x95: bytes.fromhex("8000048000"), 0x5F2A: bytes.fromhex("0124"), 0x9A: bytes.fromhex("191105"),
            0x9C: b"\x01", 0x9F37: bytes.fromhex("52BF4585"), 0x82: bytes.fromhex("1800"),
            0x9F36: bytes.fromhex("001C"), 0x9F10: bytes.fromhex("06011203A0B800"), 0x9F27: b"\x80",
            0x9F26: bytes.fromhex("7A788EA6B8A3E733"), 0x5A: bytes.fromhex("1234567890123456"),
            0x57: bytes.fromhex("1234567890123456D2812F"), 0x9F1F: b"1234"}
    raw = de55(tags)
    got = {t.tag: t.value for t in T.decode(raw)}
    assert not set(got) & SECRET_TAGS and list(got) == [t for t in DE55_TAGS if t in got]
    keys = issuer.card_keys("1234567890123456", 0)
    assert issuer.cryptogram(18, keys, got).hex().upper() == "7A788EA6B8A3E733"
    assert issuer.arpc(18, keys, got, got[0x9F26]).hex().upper() == "9AF514C1"


# ----------------------------------------------------------------------------- a hostile card, whole transaction

class _Direct:
    """The virtual card's own APDU handler as a transport (no pcscd): for property tests of the kernel only;
    the same cards run through pcscd + vpcd in test_emv_payment.py."""

    interface = "contact"

    def __init__(self, card):
        self.card = card

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        r = self.card.apdu(apdu)
        return r[:-2], (r[-2] << 8) | r[-1]


COMMANDS = ["SELECT AID", "GPO", "READ RECORD", "INTERNAL AUTHENTICATE", "GENERATE AC", "GENERATE AC 2",
            "GET DATA", "EXTERNAL AUTHENTICATE"]


@settings(max_examples=300, deadline=None)
@given(command=st.sampled_from(COMMANDS), raw=st.binary(max_size=60), sw=st.sampled_from(["", "9000", "6A83"]),
       profile=st.sampled_from(["cib", "nopse", "emv_velocity", "edahabia"]), issuer_91=st.binary(max_size=12))
def test_any_hostile_answer_ends_in_a_typed_error_or_an_outcome(command, raw, sw, profile, issuer_91):
    import dataclasses

    import config as cfgmod
    from agent.authorizers.card_reader import ca_lookup, emv_terminal
    from drivers.emv.kernel import IssuerAnswer, Kernel, KernelParams
    from drivers.emv.reader import EmvError, EmvReader
    from sandbox.cards.card import VirtualCard
    from sandbox.cards.profiles import PROFILES, sandbox_cards_config, sandbox_emv_config

    cfg = cfgmod.validate({"cards": sandbox_cards_config(), "emv": sandbox_emv_config()})
    answer = raw + bytes.fromhex(sw) if len(raw + bytes.fromhex(sw)) != 2 else raw
    prof = dataclasses.replace(PROFILES[profile], garbage={command: answer or b"\x6f\x00"})
    reader = EmvReader(_Direct(VirtualCard(prof)), schemes=cfg.cards.schemes, aids=cfg.cards.aids,
                       terminal=emv_terminal(cfg, 345600), hmac_key="k")
    codes = action.ActionCodes.of(tac_default="DC4000A800", tac_denial="0010000000", tac_online="DC4004F800")
    k = Kernel(reader, KernelParams(tac=codes, ca_key=ca_lookup(cfg)))
    try:
        k.start()
        if not k.outcome:
            result = k.complete(IssuerAnswer(True, "00", [T.tlv(0x91, issuer_91), T.tlv(0x8A, b"00")]))
            assert result.outcome in ("approved", "declined")
    except EmvError as e:
        assert "\n" not in str(e) and len(str(e)) < 400
    r = k.result()
    assert len(bytes.fromhex(r.tvr)) == 5 and len(bytes.fromhex(r.tsi)) == 2
