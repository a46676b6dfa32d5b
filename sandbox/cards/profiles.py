"""Virtual card profiles: every case the reader must handle, with clearly fake CIB/Edahabia values.

The public record has no AID or BIN for CIB or Edahabia. The values below are TEST VALUES, invented for
the sandbox (RID ``A000000999`` and BINs ``999101``/``999201``); the production ones come from the
acquirer and go in the config. ``TEST_SCHEMES`` is the matching ``cards.schemes`` for tests and the demo.

    from sandbox.cards.profiles import PROFILES, TEST_PANS, sandbox_cards_config
    PROFILES["cib"].pan, PROFILES["cib"].expected_apdus
"""

from __future__ import annotations

from typing import Any

from drivers.emv import tlv as T
from drivers.pan import luhn_check_digit
from sandbox.cards.card import App, Profile

# Test values only (see module docstring).
CIB_TEST_AID = "A0000009990101"
EDAHABIA_TEST_AID = "A0000009990201"
CIB_TEST_BIN = "999101"
EDAHABIA_TEST_BIN = "999201"
VISA_AID = "A0000000031010"
MASTERCARD_AID = "A0000000041010"

TEST_SCHEMES: list[dict[str, Any]] = [
    {"name": "CIB", "aids": [CIB_TEST_AID], "bins": [CIB_TEST_BIN], "labels": ["CIB"]},
    {"name": "EDAHABIA", "aids": [EDAHABIA_TEST_AID], "bins": [EDAHABIA_TEST_BIN], "labels": ["EDAHABIA"]},
    {"name": "VISA", "aids": ["A0000000031010", "A0000000032010"], "bins": ["4"], "labels": []},
    {"name": "MASTERCARD", "aids": ["A0000000041010", "A0000000043060"], "bins": ["51-55", "2221-2720"]},
]
TEST_AIDS = ["A0000000031010", "A0000000032010", "A0000000041010", "A0000000043060", CIB_TEST_AID, EDAHABIA_TEST_AID]


def sandbox_cards_config(**extra: Any) -> dict[str, Any]:
    """The ``[cards]`` section the tests use (pass to ``config.validate({"cards": ...})``)."""
    return {"hmac_key": "test-hmac-key-not-for-production", "aids": TEST_AIDS, "schemes": TEST_SCHEMES, **extra}


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


def _profiles() -> dict[str, Profile]:
    p: dict[str, Profile] = {}

    pan = luhn_pan(CIB_TEST_BIN + "00001234")
    p["cib"] = Profile(
        name="cib",
        description="CIB contact card (TEST AID/BIN), PSE, PDOL with country 012, GPO format 2, 3 records",
        atr=CONTACT_ATR, pan=pan, expiry="2028-05", scheme="CIB",
        apps=[App(aid=bytes.fromhex(CIB_TEST_AID), label="CIB TEST", priority=1, language="frar",
                  pdol=CONTACT_PDOL, gpo_format=2, afl=AFL_STD, records=_std_records(pan, "2028-05"))],
        expected_apdus=8,
    )

    pan = luhn_pan(EDAHABIA_TEST_BIN + "00005678")
    p["edahabia"] = Profile(
        name="edahabia",
        description="Edahabia contact card (real ATR, T=0: 61XX), TEST AID/BIN, PSE, GPO format 1",
        atr=EDAHABIA_ATR, pan=pan, expiry="2027-11", scheme="EDAHABIA", t0=True,
        apps=[App(aid=bytes.fromhex(EDAHABIA_TEST_AID), label="EDAHABIA TEST", language="arfr",
                  preferred_name="Edahabia", afl=AFL_STD, records=_std_records(pan, "2027-11"))],
        expected_apdus=11,
    )

    pan = "4111111111111111"
    p["visa_cl"] = Profile(
        name="visa_cl",
        description="Visa contactless (PPSE only), PDOL with TTQ, GPO format 2 carrying Track 2",
        atr=CL_ATR, pan=pan, expiry="2029-12", scheme="VISA", interface="contactless", pse=False, ppse=True,
        apps=[App(aid=bytes.fromhex(VISA_AID), label="VISA CREDIT", priority=1, pdol=VISA_CL_PDOL, gpo_format=2,
                  afl=bytes.fromhex("10010100"), aip=b"\x20\x40",
                  gpo_extra=[T.tlv(0x57, track2(pan, "2912")), T.tlv(0x5F34, b"\x00"),
                             T.tlv(0x9F10, bytes.fromhex("06011203A00000")), T.tlv(0x9F26, bytes(8)),
                             T.tlv(0x9F27, b"\x80"), T.tlv(0x9F36, b"\x00\x01")],
                  records={(2, 1): record(T.tlv(0x5F28, b"\x08\x40"), T.tlv(0x9F07, b"\xff\x00"),
                                          T.tlv(0x5F24, yymmdd("2029-12")))})],
        expected_apdus=4,
    )

    pan = "5555555555554444"
    p["mastercard_cl"] = Profile(
        name="mastercard_cl",
        description="Mastercard contactless (PPSE only), no PDOL, GPO format 1, records in 2 SFIs",
        atr=CL_ATR, pan=pan, expiry="2030-01", scheme="MASTERCARD", interface="contactless", pse=False, ppse=True,
        apps=[App(aid=bytes.fromhex(MASTERCARD_AID), label="MASTERCARD", priority=1, afl=AFL_STD,
                  records=_std_records(pan, "2030-01", country="0250"))],
        expected_apdus=6,
    )

    pan = "5454545454545454"
    p["nopse"] = Profile(
        name="nopse",
        description="contact card without PSE: found through the configured AID list (3rd AID)",
        atr=CONTACT_ATR, pan=pan, expiry="2028-02", scheme="MASTERCARD", pse=False,
        apps=[App(aid=bytes.fromhex(MASTERCARD_AID), label="DEBIT MASTERCARD", afl=AFL_STD,
                  records=_std_records(pan, "2028-02", country="0788"))],
        expected_apdus=8,
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
            App(aid=bytes.fromhex(CIB_TEST_AID), label="CIB TEST", priority=1, pdol=CONTACT_PDOL,
                afl=bytes.fromhex("08010200"), records=_std_records(pan, "2028-08")),
        ],
        expected_apdus=8,
    )

    pan = "5105105105105100"
    p["expired"] = Profile(
        name="expired",
        description="expired Mastercard contact card (2019-08): read, flagged expired",
        atr=CONTACT_ATR, pan=pan, expiry="2019-08", scheme="MASTERCARD",
        apps=[App(aid=bytes.fromhex(MASTERCARD_AID), label="MASTERCARD", afl=bytes.fromhex("08010200"),
                  records=_std_records(pan, "2019-08"))],
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
        apps=[App(aid=bytes.fromhex(CIB_TEST_AID), label="CIB TEST", priority=1,
                  pdol=bytes.fromhex("9F0200" "9F1A02" "5F2A02" "9A03" "9F3704"), afl=AFL_STD,
                  records=_std_records(pan, "2028-05"))],
        expected_apdus=8,
    )

    pan = luhn_pan(CIB_TEST_BIN + "00007005")
    p["slow"] = Profile(
        name="slow",
        description="a CIB TEST card that thinks 0.15 s before every answer (deadline and cancel tests)",
        atr=CONTACT_ATR, pan=pan, expiry="2028-05", scheme="CIB", apdu_delay=0.15,
        apps=[App(aid=bytes.fromhex(CIB_TEST_AID), label="CIB TEST", priority=1, pdol=CONTACT_PDOL,
                  afl=AFL_STD, records=_std_records(pan, "2028-05"))],
        expected_apdus=8,
    )

    pan = luhn_pan(CIB_TEST_BIN + "00007006")
    p["stall"] = Profile(
        name="stall",
        description="a CIB TEST card that thinks 3 s before every answer: one command outlasts a short "
        "read_timeout (the read stops waiting for it; the command ends when the card answers: docs/cards.md)",
        atr=CONTACT_ATR, pan=pan, expiry="2028-05", scheme="CIB", apdu_delay=3.0,
        apps=[App(aid=bytes.fromhex(CIB_TEST_AID), label="CIB TEST", priority=1, pdol=CONTACT_PDOL,
                  afl=AFL_STD, records=_std_records(pan, "2028-05"))],
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
    return p


PROFILES: dict[str, Profile] = _profiles()

# Every test PAN of every profile (the PCI scan test looks for these in logs, journal and output).
TEST_PANS: list[str] = sorted({prof.pan for prof in PROFILES.values()})
