"""Virtual card profiles: every case the reader must handle, with clearly fake CIB/Edahabia values.

The public record has no AID or BIN for CIB or Edahabia. The values below are TEST VALUES, invented for
the sandbox (RID ``A000000999`` and BINs ``999101``/``999201``); the production ones come from the
acquirer and go in the config. ``TEST_SCHEMES`` is the matching ``cards.schemes`` for tests and the demo.

    from sandbox.cards.profiles import PROFILES, TEST_PANS, sandbox_cards_config
    PROFILES["cib"].pan, PROFILES["cib"].expected_apdus
"""

from __future__ import annotations

import dataclasses
from typing import Any

from drivers.emv import tlv as T
from drivers.pan import luhn_check_digit
from sandbox import issuer
from sandbox.cards.card import App, Profile
from sandbox.cards.emvapp import CDOL1, CDOL2_M1, CDOL2_M2, DDOL, Emv

# Test values only (see module docstring).
CIB_TEST_AID = "A0000009990101"
EDAHABIA_TEST_AID = "A0000009990201"
CIB_TEST_BIN = "999101"
EDAHABIA_TEST_BIN = "999201"
VISA_AID = "A0000000031010"
MASTERCARD_AID = "A0000000041010"

TEST_SCHEMES: list[dict[str, Any]] = [
    {"name": "CIB", "aids": [CIB_TEST_AID], "bins": [CIB_TEST_BIN], "labels": ["CIB"], "cvn": 18},
    {"name": "EDAHABIA", "aids": [EDAHABIA_TEST_AID], "bins": [EDAHABIA_TEST_BIN], "labels": ["EDAHABIA"],
     "cvn": 18},
    {"name": "VISA", "aids": ["A0000000031010", "A0000000032010"], "bins": ["4"], "labels": []},
    {"name": "MASTERCARD", "aids": ["A0000000041010", "A0000000043060"], "bins": ["51-55", "2221-2720"]},
]
TEST_AIDS = ["A0000000031010", "A0000000032010", "A0000000041010", "A0000000043060", CIB_TEST_AID, EDAHABIA_TEST_AID]


def sandbox_cards_config(**extra: Any) -> dict[str, Any]:
    """The ``[cards]`` section the tests use (pass to ``config.validate({"cards": ...})``)."""
    return {"hmac_key": "test-hmac-key-not-for-production", "aids": TEST_AIDS, "schemes": TEST_SCHEMES, **extra}


TEST_RIDS = sorted({aid[:10] for aid in TEST_AIDS})


def sandbox_emv_config(**extra: Any) -> dict[str, Any]:
    """The ``[emv]`` section of the sandbox: the test CA (test-keys.md, index F1) trusted for every test RID."""
    ca = [{"rid": rid, "index": f"{issuer.CA_INDEX:02X}", "modulus": f"{issuer.CA_MODULUS:X}",
           "exponent": f"{issuer.CA_EXPONENT:02X}"} for rid in TEST_RIDS]
    return {"ca_keys": ca, **extra}


def luhn_pan(prefix: str, length: int = 16) -> str:
    body = prefix.ljust(length - 1, "0")
    return body + luhn_check_digit(body)


# ---------------------------------------------------------------------------- encoders


def cn(digits: str) -> bytes:
    """Compressed numeric: BCD, padded with F on the right."""
    return bytes.fromhex(digits + ("F" if len(digits) % 2 else ""))


def track2(pan: str, yymm: str, service: str = "201") -> bytes:
    digits = f"{pan}D{yymm}{service}0000000000"
    return bytes.fromhex(digits + ("F" if len(digits) % 2 else ""))


def record(*items: T.TLV) -> bytes:
    return T.encode(T.tlv(0x70, list(items)))


def yymmdd(expiry: str) -> bytes:
    """``"2028-05"`` -> 5F24 value for the last day (31 is what issuers write)."""
    return bytes.fromhex(expiry[2:4] + expiry[5:7] + "31")


def atr_t1(hist: bytes) -> bytes:
    """A contact T=1 ATR: TD1=81 (T=1), TD2=31, TA3=FE (IFSC), TB3=45, TCK."""
    body = bytes([0x80 | len(hist), 0x81, 0x31, 0xFE, 0x45]) + hist
    return b"\x3b" + body + bytes([_xor(body)])


def atr_t0_t1(hist: bytes) -> bytes:
    """A contact ATR offering T=0 (TD1=80) then T=1 (TD2=31, TA3=FE, TB3=45), TCK: most EMV chips."""
    body = bytes([0x80 | len(hist), 0x80, 0x31, 0xFE, 0x45]) + hist
    return b"\x3b" + body + bytes([_xor(body)])


def atr_contactless(hist: bytes) -> bytes:
    """PC/SC part 3 ATR a reader builds for an ISO 14443-4 card: 3B 8n 80 01 hist TCK."""
    body = bytes([0x80 | len(hist), 0x80, 0x01]) + hist
    return b"\x3b" + body + bytes([_xor(body)])


def _xor(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


EDAHABIA_ATR = bytes.fromhex("3BF91300FF10008064200101048290 00".replace(" ", ""))
HIST = b"\x80\x31\x80\x65\xb0\x84\x41\x12\x0f\xfe\x82\x90\x00"
T1_ATR = atr_t1(HIST)  # T=1 only
CONTACT_ATR = atr_t0_t1(HIST)  # T=0 and T=1
CL_ATR = atr_contactless(b"\x80\x73\xc8\x21\x13\x66\x05\x00")

CONTACT_PDOL = bytes.fromhex("9F02069F1A025F2A029A039F3704")
VISA_CL_PDOL = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")


def _std_records(pan: str, expiry: str, *, country: str = "0012", with_5a: bool = True) -> dict[tuple[int, int], bytes]:
    """SFI 1 record 1: track 2 + name; SFI 1 record 2: PAN, dates, country; SFI 2 record 1: > 127 bytes."""
    yymm = expiry[2:4] + expiry[5:7]
    rec2 = [T.tlv(0x5F24, yymmdd(expiry)), T.tlv(0x5F25, bytes.fromhex("230101")),
            T.tlv(0x5F28, bytes.fromhex(country)), T.tlv(0x5F34, b"\x01"), T.tlv(0x9F07, b"\xff\x00"),
            T.tlv(0x8E, bytes(8) + b"\x42\x03\x1e\x03\x1f\x03")]
    if with_5a:
        rec2.insert(0, T.tlv(0x5A, cn(pan)))
    return {
        (1, 1): record(T.tlv(0x57, track2(pan, yymm)), T.tlv(0x5F20, b"TEST/CARDHOLDER")),
        (1, 2): record(*rec2),
        # An issuer public key certificate makes this record longer than 127 bytes (81 xx lengths).
        (2, 1): record(T.tlv(0x8F, b"\x92"), T.tlv(0x90, bytes(range(144))), T.tlv(0x9F32, b"\x03")),
    }


AFL_STD = bytes.fromhex("08010200" "10010101")  # SFI 1 rec 1-2, SFI 2 rec 1
AFL_ODA = bytes.fromhex("08010202" "10010200")  # SFI 1 rec 1-2 (both signed for ODA), SFI 2 rec 1-2 (certificates)
CVM_LIST = bytes(8) + bytes.fromhex("4103" "4203" "1E03" "1F03")  # offline PIN, online PIN, signature, no CVM
# Issuer action codes of the test cards: nothing denied by the issuer; online/default on ODA failures, expiry,
# floor limit and velocity (Book 3 C5 bits).
IAC_DENIAL = "0000000000"
IAC_ONLINE = "FC50808800"
IAC_DEFAULT = "FC50A08800"
AIP_BITS = {None: 0x18, "sda": 0x58, "dda": 0x38, "cda": 0x39}  # + CVM (10) and terminal risk management (08)


def payment_app(
    aid: str, label: str, pan: str, expiry: str, emv: Emv, *, country: str = "0012", currency: str = "0012",
    issuer_auth: bool = False, cvm_list: bytes = CVM_LIST, iac_denial: str = IAC_DENIAL, **app: Any,
) -> App:
    """A payment application: its records carry CDOL1/2, the IACs, the CVM list and, with ODA, real certificates
    under the test CA (``sandbox.issuer``) over the records the AFL signs plus the AIP (9F4A = 82)."""
    yymm = expiry[2:4] + expiry[5:7]
    aip = bytes([AIP_BITS[emv.oda] | (0x04 if issuer_auth else 0), 0x00])
    rec1 = record(T.tlv(0x57, track2(pan, yymm)), T.tlv(0x5F20, b"TEST/CARDHOLDER"))
    items = [T.tlv(0x5A, cn(pan)), T.tlv(0x5F24, yymmdd(expiry)), T.tlv(0x5F25, bytes.fromhex("230101")),
             T.tlv(0x5F28, bytes.fromhex(country)), T.tlv(0x9F42, bytes.fromhex(currency)),
             T.tlv(0x5F34, b"\x01"), T.tlv(0x9F07, b"\xff\x00"), T.tlv(0x9F08, b"\x00\x02"), T.tlv(0x8E, cvm_list),
             T.tlv(0x8C, CDOL1), T.tlv(0x8D, CDOL2_M2 if emv.cvn == 18 else CDOL2_M1),
             T.tlv(0x9F0D, bytes.fromhex(IAC_DEFAULT)), T.tlv(0x9F0E, bytes.fromhex(iac_denial)),
             T.tlv(0x9F0F, bytes.fromhex(IAC_ONLINE))]
    if emv.lcol is not None and emv.ucol is not None:
        items += [T.tlv(0x9F14, bytes([emv.lcol])), T.tlv(0x9F23, bytes([emv.ucol]))]
    if emv.oda is None:
        records = {(1, 1): rec1, (1, 2): record(*items),
                   (2, 1): record(T.tlv(0x8F, b"\x92"), T.tlv(0x90, bytes(range(144))), T.tlv(0x9F32, b"\x03"))}
        app.setdefault("afl", AFL_STD)
        return App(aid=bytes.fromhex(aid), label=label, aip=aip, records=records, emv=emv, pan=pan, psn=1, **app)
    items += [T.tlv(0x9F4A, b"\x82"), T.tlv(0x9F49, DDOL)]
    rec2 = record(*items)
    static = _value(rec1) + _value(rec2) + aip
    certs = issuer.certificates(pan, yymm, static, oda=emv.oda, tamper=emv.tamper)
    cert_rec = [T.tlv(0x8F, bytes([certs.ca_index])), T.tlv(0x90, certs.issuer_cert),
                T.tlv(0x9F32, certs.issuer_exponent)]
    if certs.issuer_remainder:
        cert_rec.append(T.tlv(0x92, certs.issuer_remainder))
    if emv.oda == "sda":
        icc_rec = [T.tlv(0x93, certs.ssad or b"")]
    else:
        icc_rec = [T.tlv(0x9F46, certs.icc_cert or b""), T.tlv(0x9F47, certs.icc_exponent or b"")]
        if certs.icc_remainder:
            icc_rec.append(T.tlv(0x9F48, certs.icc_remainder))
    records = {(1, 1): rec1, (1, 2): rec2, (2, 1): record(*cert_rec), (2, 2): record(*icc_rec)}
    return App(aid=bytes.fromhex(aid), label=label, afl=AFL_ODA, aip=aip, records=records, emv=emv, certs=certs,
               pan=pan, psn=1, **app)


def _value(rec: bytes) -> bytes:
    """The value of a 70 template (what ODA signs of an SFI 1-10 record)."""
    return b"".join(T.encode(c) for c in T.decode(rec)[0].children)


def _profiles() -> dict[str, Profile]:
    p: dict[str, Profile] = {}

    pan = luhn_pan(CIB_TEST_BIN + "00001234")
    p["cib"] = Profile(
        name="cib",
        description="CIB contact card (TEST AID/BIN), PSE, PDOL with country 012, GPO format 2, 4 records; "
        "EMV: DDA, CVN 18, offline PIN 1234 / signature",
        atr=CONTACT_ATR, pan=pan, expiry="2028-05", scheme="CIB",
        apps=[payment_app(CIB_TEST_AID, "CIB TEST", pan, "2028-05", Emv(cvn=18, oda="dda"), priority=1,
                          language="frar", pdol=CONTACT_PDOL, gpo_format=2)],
        expected_apdus=9,
    )

    pan = luhn_pan(EDAHABIA_TEST_BIN + "00005678")
    p["edahabia"] = Profile(
        name="edahabia",
        description="Edahabia contact card (real ATR, T=0: 61XX), TEST AID/BIN, PSE, GPO format 1; "
        "EMV: SDA, CVN 18, GENERATE AC format 1",
        atr=EDAHABIA_ATR, pan=pan, expiry="2027-11", scheme="EDAHABIA", t0=True,
        apps=[payment_app(EDAHABIA_TEST_AID, "EDAHABIA TEST", pan, "2027-11", Emv(cvn=18, oda="sda", format1=True),
                          language="arfr", preferred_name="Edahabia")],
        expected_apdus=12,
    )

    pan = "4111111111111111"
    p["visa_cl"] = Profile(
        name="visa_cl",
        description="Visa contactless (PPSE only), PDOL with TTQ, GPO format 2 carrying Track 2",
        atr=CL_ATR, pan=pan, expiry="2029-12", scheme="VISA", interface="contactless", pse=False, ppse=True,
        apps=[App(aid=bytes.fromhex(VISA_AID), label="VISA CREDIT", priority=1, pdol=VISA_CL_PDOL, gpo_format=2,
                  afl=bytes.fromhex("10010100"), aip=b"\x20\x40", emv=Emv(cvn=18, one_tap=True), pan=pan, psn=0,
                  gpo_extra=[T.tlv(0x57, track2(pan, "2912")), T.tlv(0x5F34, b"\x00"),
                             T.tlv(0x9F10, bytes.fromhex("06011203A00000")), T.tlv(0x9F26, bytes(8)),
                             T.tlv(0x9F27, b"\x80"), T.tlv(0x9F36, b"\x00\x01")],
                  records={(2, 1): record(T.tlv(0x5F28, b"\x08\x40"), T.tlv(0x9F07, b"\xff\x00"),
                                          T.tlv(0x5F24, yymmdd("2029-12")))})],
        expected_apdus=4,
    )

    p["visa_cl_cdcvm"] = dataclasses.replace(
        p["visa_cl"], name="visa_cl_cdcvm",
        description="Visa contactless on a phone: the CTQ (9F6C) says the phone verified the cardholder (CDCVM)",
        apps=[dataclasses.replace(p["visa_cl"].apps[0], gpo_extra=[*p["visa_cl"].apps[0].gpo_extra,
                                                                    T.tlv(0x9F6C, b"\x00\x80")])])

    # qVSDC with fDDA and an offline balance (9F5D): a tap approved offline when the TTQ allows it (docs/emv.md).
    def fdda_card(name: str, description: str, tail: str, emv: Emv) -> Profile:
        pan = luhn_pan("4000000000" + tail)
        aip = b"\x20\x40"  # DDA (fDDA) supported
        signed = record(T.tlv(0x5F28, b"\x08\x40"), T.tlv(0x9F07, b"\xff\x00"), T.tlv(0x5F24, yymmdd("2029-12")))
        certs = issuer.certificates(pan, "2912", _value(signed) + aip, oda="dda")
        issuer_rec = [T.tlv(0x8F, bytes([certs.ca_index])), T.tlv(0x90, certs.issuer_cert),
                      T.tlv(0x9F32, certs.issuer_exponent)]
        if certs.issuer_remainder:
            issuer_rec.append(T.tlv(0x92, certs.issuer_remainder))
        icc_rec = [T.tlv(0x9F46, certs.icc_cert or b""), T.tlv(0x9F47, certs.icc_exponent or b""),
                   T.tlv(0x9F4A, b"\x82")]
        if certs.icc_remainder:
            icc_rec.append(T.tlv(0x9F48, certs.icc_remainder))
        app = App(aid=bytes.fromhex(VISA_AID), label="VISA CREDIT", priority=1, pdol=VISA_CL_PDOL, gpo_format=2,
                  afl=bytes.fromhex("10010101" "18010200"), aip=aip, emv=emv, certs=certs, pan=pan, psn=0,
                  gpo_extra=[T.tlv(0x57, track2(pan, "2912")), T.tlv(0x5F34, b"\x00")],
                  records={(2, 1): signed, (3, 1): record(*issuer_rec), (3, 2): record(*icc_rec)})
        return Profile(name=name, description=description, atr=CL_ATR, pan=pan, expiry="2029-12", scheme="VISA",
                       interface="contactless", pse=False, ppse=True, apps=[app], expected_apdus=6)

    p["visa_fdda"] = fdda_card(
        "visa_fdda", "Visa qVSDC with fDDA and an offline balance of 500.00 (9F5D): a tap the TTQ lets go offline "
        "is approved by the card (TC + fDDA signature)", "0091",
        Emv(cvn=18, one_tap=True, fdda=True, offline_balance=50_000))
    p["visa_tap"] = fdda_card(
        "visa_tap", "Visa contactless of the demo (`card insert visa_tap`): fDDA and an offline balance of "
        "100,000.00, so a tap while the link is down is approved offline by the card", "0094",
        Emv(cvn=18, one_tap=True, fdda=True, offline_balance=10_000_000))
    p["visa_fdda_tampered"] = fdda_card(
        "visa_fdda_tampered", "Visa qVSDC whose fDDA signature (9F4B) is tampered: its offline TC is declined",
        "0092", Emv(cvn=18, one_tap=True, fdda=True, fdda_tamper=True, offline_balance=50_000))
    p["visa_fdda_empty"] = fdda_card(
        "visa_fdda_empty", "Visa qVSDC with fDDA and an empty offline balance (9F5D 0): always an ARQC",
        "0093", Emv(cvn=18, one_tap=True, fdda=True, offline_balance=0, offline_limit=50_000))

    pan = "5555555555554444"
    p["mastercard_cl"] = Profile(
        name="mastercard_cl",
        description="Mastercard contactless (PPSE only), no PDOL, GPO format 1, records in 2 SFIs",
        atr=CL_ATR, pan=pan, expiry="2030-01", scheme="MASTERCARD", interface="contactless", pse=False, ppse=True,
        apps=[payment_app(MASTERCARD_AID, "MASTERCARD", pan, "2030-01", Emv(cvn=20), priority=1,
                          country="0250", currency="0978")],
        expected_apdus=6,
    )

    pan = "5454545454545454"
    p["nopse"] = Profile(
        name="nopse",
        description="contact card without PSE: found through the configured AID list (3rd AID); "
        "EMV: Mastercard CVN 20, CDA, EXTERNAL AUTHENTICATE",
        atr=CONTACT_ATR, pan=pan, expiry="2028-02", scheme="MASTERCARD", pse=False,
        apps=[payment_app(MASTERCARD_AID, "DEBIT MASTERCARD", pan, "2028-02", Emv(cvn=20, oda="cda"),
                          country="0788", currency="0788", issuer_auth=True)],
        expected_apdus=9,
    )

    pan = "4000056655665556"
    p["t0"] = Profile(
        name="t0",
        description="T=0 card: 61XX on SELECT/GPO (GET RESPONSE), 6CXX on READ RECORD with Le=00 (resend)",
        atr=EDAHABIA_ATR, pan=pan, expiry="2027-06", scheme="VISA", t0=True, strict_le=True,
        apps=[App(aid=bytes.fromhex(VISA_AID), label="VISA DEBIT", priority=1, pdol=CONTACT_PDOL,
                  afl=bytes.fromhex("08010200"), records=_std_records(pan, "2027-06"))],
        expected_apdus=13,
    )

    pan = "4012888888881881"
    p["track2"] = Profile(
        name="track2",
        description="PAN and expiry only in the Track 2 equivalent (57): no 5A, no 5F24",
        atr=T1_ATR, pan=pan, expiry="2029-09", scheme="VISA",
        apps=[App(aid=bytes.fromhex(VISA_AID), label="VISA", afl=bytes.fromhex("08010100"),
                  records={(1, 1): record(T.tlv(0x57, track2(pan, "2909")), T.tlv(0x5F28, b"\x00\x12"))})],
        expected_apdus=6,
    )

    pan = luhn_pan(CIB_TEST_BIN + "00009876")
    p["twoapps"] = Profile(
        name="twoapps",
        description="two applications in the PSE: Visa (priority 2) listed first, CIB TEST (priority 1) chosen",
        atr=CONTACT_ATR, pan=pan, expiry="2028-08", scheme="CIB",
        apps=[
            App(aid=bytes.fromhex(VISA_AID), label="VISA", priority=2, afl=AFL_STD,
                records=_std_records(pan, "2028-08")),
            payment_app(CIB_TEST_AID, "CIB TEST", pan, "2028-08", Emv(cvn=18), priority=1, pdol=CONTACT_PDOL,
                        afl=bytes.fromhex("08010200")),
        ],
        expected_apdus=8,
    )

    pan = luhn_pan(CIB_TEST_BIN + "00009877")
    p["confirm"] = Profile(
        name="confirm",
        description="two applications: CIB TEST (priority 1, asks for the cardholder's confirmation: 87 = 81) "
        "and Visa (priority 2): without a way to ask, the terminal takes Visa",
        atr=CONTACT_ATR, pan=pan, expiry="2028-08", scheme="VISA",
        apps=[
            payment_app(VISA_AID, "VISA", pan, "2028-08", Emv(cvn=18), priority=2),
            payment_app(CIB_TEST_AID, "CIB TEST", pan, "2028-08", Emv(cvn=18), priority=0x81, pdol=CONTACT_PDOL),
        ],
        expected_apdus=9,
    )

    pan = "5105105105105100"
    p["expired"] = Profile(
        name="expired",
        description="expired Mastercard contact card (2019-08): read, flagged expired",
        atr=CONTACT_ATR, pan=pan, expiry="2019-08", scheme="MASTERCARD",
        apps=[payment_app(MASTERCARD_AID, "MASTERCARD", pan, "2019-08", Emv(cvn=20),
                          afl=bytes.fromhex("08010200"))],
        expected_apdus=7,
    )

    pan = luhn_pan(CIB_TEST_BIN + "00004321")
    p["pulled"] = Profile(
        name="pulled",
        description="CIB TEST card pulled out of the reader at the 5th APDU (GET PROCESSING OPTIONS)",
        atr=CONTACT_ATR, pan=pan, expiry="2028-05", scheme="CIB", pull_after=5,
        apps=[App(aid=bytes.fromhex(CIB_TEST_AID), label="CIB TEST", afl=AFL_STD,
                  records=_std_records(pan, "2028-05"))],
        expect_error="CardRemoved",
    )

    # Garbage cards: a reader must fail with a clear, typed error, never crash.
    def garbage(name: str, description: str, answers: dict[str, bytes], error: str, *, pse: bool = True) -> Profile:
        pan = "4111111111111111"
        app = App(aid=bytes.fromhex(VISA_AID), label="VISA", afl=AFL_STD, records=_std_records(pan, "2029-01"))
        return Profile(name=name, description=description, atr=CONTACT_ATR, apps=[app], pan=pan, expiry="2029-01",
                       scheme="VISA", pse=pse, garbage=answers, expect_error=error)

    p["garbage_truncated"] = garbage(
        "garbage_truncated", "answers GPO with a truncated template (77 0A, 8 bytes sent)",
        {"GPO": bytes.fromhex("770A82021800940408010200")[:10]}, "CardDataError")
    p["garbage_overrun"] = garbage(
        "garbage_overrun", "no PSE; a record whose inner length runs past the end of 70",
        {"READ RECORD": bytes.fromhex("70065A2047617390")}, "CardDataError", pse=False)
    p["garbage_6f00"] = garbage(
        "garbage_6f00", "answers 6F00 (no precise diagnosis) to SELECT PSE", {"SELECT PSE": b"\x6f\x00"},
        "CardStatusError")
    p["garbage_wrong_tag"] = garbage(
        "garbage_wrong_tag", "answers GPO with a 71 template instead of 80 or 77",
        {"GPO": bytes.fromhex("710A82021800940408010200")}, "CardDataError")
    p["garbage_wrong_length"] = garbage(
        "garbage_wrong_length", "answers GPO in format 1 with 5 bytes (AIP + an AFL that is not 4-byte entries)",
        {"GPO": bytes.fromhex("80051800080102")}, "CardDataError")

    # Hostile cards: each one asks for more than a reader may give, and must be refused, bounded and typed.
    pan = luhn_pan(CIB_TEST_BIN + "00007001")
    p["pdol_huge"] = Profile(
        name="pdol_huge",
        description="a PDOL asking for 271 bytes: more than a GET PROCESSING OPTIONS carries (refused unsent)",
        atr=CONTACT_ATR, pan=pan, expiry="2028-05", scheme="CIB",
        apps=[App(aid=bytes.fromhex(CIB_TEST_AID), label="CIB TEST", priority=1,
                  pdol=CONTACT_PDOL + bytes.fromhex("DF017F" "DF027F"), afl=AFL_STD,
                  records=_std_records(pan, "2028-05"))],
        expect_error="CardDataError",
    )

    pan = luhn_pan(CIB_TEST_BIN + "00007002")
    flood = bytes(b for sfi in range(63) for b in ((sfi % 30 + 1) << 3, 1, 255, 0))  # 63 x 255 records
    p["afl_flood"] = Profile(
        name="afl_flood",
        description="an AFL listing 16065 records (63 entries of 255), every one of which answers 9000",
        atr=CONTACT_ATR, pan=pan, expiry="2028-05", scheme="CIB",
        apps=[App(aid=bytes.fromhex(CIB_TEST_AID), label="CIB TEST", priority=1, afl=flood,
                  records=_std_records(pan, "2028-05"),
                  default_record=record(T.tlv(0x5F20, b"TEST/CARDHOLDER")))],
        expect_error="CardLimitError",
    )

    pan = luhn_pan(CIB_TEST_BIN + "00007003")
    p["bytes_flood"] = Profile(
        name="bytes_flood",
        description="T=0 card sending 7.5 KB of FCI and 7.5 KB of GPO answer (61XX chains), then 10 records",
        atr=EDAHABIA_ATR, pan=pan, expiry="2028-05", scheme="CIB", t0=True,
        apps=[App(aid=bytes.fromhex(CIB_TEST_AID), label="CIB TEST", priority=1, gpo_format=2,
                  afl=bytes.fromhex("08010A00"), records=_std_records(pan, "2028-05"),
                  fci_extra=[T.tlv(0xDF20, bytes(7500))], gpo_extra=[T.tlv(0xDF21, bytes(7500))],
                  default_record=record(T.tlv(0xDF22, bytes(240))))],
        expect_error="CardLimitError",
    )

    pan = luhn_pan(CIB_TEST_BIN + "00007004")
    p["dol_zero_length"] = Profile(
        name="dol_zero_length",
        description="a PDOL with a zero-length entry (9F02 00): it asks for nothing, and nothing is sent for it",
        atr=CONTACT_ATR, pan=pan, expiry="2028-05", scheme="CIB",
        apps=[payment_app(CIB_TEST_AID, "CIB TEST", pan, "2028-05", Emv(cvn=18), priority=1,
                          pdol=bytes.fromhex("9F0200" "9F1A02" "5F2A02" "9A03" "9F3704"))],
        expected_apdus=8,
    )

    pan = luhn_pan(CIB_TEST_BIN + "00007005")
    p["slow"] = Profile(
        name="slow",
        description="a CIB TEST card that thinks 0.15 s before every answer (deadline and cancel tests)",
        atr=CONTACT_ATR, pan=pan, expiry="2028-05", scheme="CIB", apdu_delay=0.15,
        apps=[payment_app(CIB_TEST_AID, "CIB TEST", pan, "2028-05", Emv(cvn=18), priority=1, pdol=CONTACT_PDOL)],
        expected_apdus=8,
    )

    pan = luhn_pan(CIB_TEST_BIN + "00007006")
    p["stall"] = Profile(
        name="stall",
        description="a CIB TEST card that thinks 3 s before every answer: one command outlasts a short "
        "read_timeout (the read stops waiting for it; the command ends when the card answers: docs/cards.md)",
        atr=CONTACT_ATR, pan=pan, expiry="2028-05", scheme="CIB", apdu_delay=3.0,
        apps=[payment_app(CIB_TEST_AID, "CIB TEST", pan, "2028-05", Emv(cvn=18), priority=1, pdol=CONTACT_PDOL)],
        expected_apdus=8, expect_error="ReadTimeout",
    )

    pan = luhn_pan("476173" + "00007007")
    p["aid_is_pan"] = Profile(
        name="aid_is_pan",
        description="its PSE directory lists an application whose AID is the card number, which it then refuses "
        "to select: the reader's error quotes what the card sent",
        atr=CONTACT_ATR, pan=pan, expiry="2028-05", scheme="VISA",
        apps=[App(aid=bytes.fromhex(pan), label="VISA", afl=AFL_STD, records=_std_records(pan, "2028-05"))],
        garbage={"SELECT AID": bytes.fromhex("6A82")}, expect_error="NoApplication",
    )
    # EMV behaviours (issue 14): each a CIB, Visa or Mastercard TEST card with a real payment application.
    def emv_card(name: str, description: str, tail: str, emv: Emv, *, aid: str = CIB_TEST_AID,
                 bin_: str = CIB_TEST_BIN, scheme: str = "CIB", **extra: Any) -> Profile:
        pan = luhn_pan(bin_ + tail) if len(bin_) < 15 else bin_
        pull = extra.pop("pull_at_second_ac", False)
        app = payment_app(aid, f"{scheme} TEST", pan, "2029-06", emv, priority=1, pdol=CONTACT_PDOL, gpo_format=2,
                          **extra)
        return Profile(name=name, description=description, atr=CONTACT_ATR, pan=pan, expiry="2029-06",
                       scheme=scheme, apps=[app], expected_apdus=9 if emv.oda else 8, pull_at_second_ac=pull)

    p["emv_visa10"] = emv_card("emv_visa10", "Visa CVN 10, SDA, approves", "", Emv(cvn=10, oda="sda"),
                               aid=VISA_AID, bin_="4761739001010010", scheme="VISA")
    p["emv_visa18"] = emv_card("emv_visa18", "Visa CVN 18, DDA, approves", "", Emv(cvn=18, oda="dda"),
                               aid=VISA_AID, bin_="4000000000000002", scheme="VISA")
    p["emv_decline"] = emv_card("emv_decline", "CIB TEST: declines offline (AAC at the first GENERATE AC)",
                                "00008001", Emv(cvn=18, behaviour="decline_offline"))
    p["emv_aac_second"] = emv_card("emv_aac_second", "CIB TEST: AAC at the second GENERATE AC after the issuer "
                                   "approved (a reversal follows)", "00008002", Emv(cvn=18, behaviour="aac_second"))
    p["emv_pin_blocked"] = emv_card("emv_pin_blocked", "CIB TEST: PIN try counter at 0 (PIN blocked)", "00008003",
                                    Emv(cvn=18, pin_tries=0))
    p["emv_pulled"] = emv_card("emv_pulled", "CIB TEST: pulled out of the reader at the second GENERATE AC",
                               "00008004", Emv(cvn=18), pull_at_second_ac=True)
    p["emv_velocity"] = emv_card("emv_velocity", "CIB TEST: 16 offline transactions since the last online one "
                                 "(LCOL 2, UCOL 4 exceeded)", "00008005",
                                 Emv(cvn=18, lcol=2, ucol=4, atc=0x0020, last_online_atc=0x0010))
    p["emv_lcol"] = emv_card("emv_lcol", "CIB TEST: over its lower consecutive offline limit only (LCOL 2, UCOL 30): "
                             "online wanted, an offline TC still allowed", "00008008",
                             Emv(cvn=18, oda="dda", lcol=2, ucol=30, atc=0x0020, last_online_atc=0x0010))
    p["emv_tampered"] = emv_card("emv_tampered", "CIB TEST: DDA with a tampered ICC certificate (ODA fails; the "
                                 "issuer's IAC-denial declines it offline)", "00008006",
                                 Emv(cvn=18, oda="dda", tamper=True), iac_denial="0C00000000")
    p["emv_pin_only"] = emv_card("emv_pin_only", "CIB TEST: offline PIN is the only CVM (no fallback)",
                                 "00008007", Emv(cvn=18), cvm_list=bytes(8) + bytes.fromhex("0100"))
    p["emv_mc20"] = emv_card("emv_mc20", "Mastercard CVN 20, CDA, EXTERNAL AUTHENTICATE", "",
                             Emv(cvn=20, oda="cda"), aid=MASTERCARD_AID, bin_="5413330089020011",
                             scheme="MASTERCARD", issuer_auth=True)
    return p


PROFILES: dict[str, Profile] = _profiles()

# Every test PAN of every profile (the PCI scan test looks for these in logs, journal and output).
TEST_PANS: list[str] = sorted({prof.pan for prof in PROFILES.values()})
