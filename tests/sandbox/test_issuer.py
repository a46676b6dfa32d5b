"""The sandbox issuer's cryptography: test-keys.md's public vectors through our own code path, every CVN
against pyemv's independent per-CVN classes, and the ODA certificates checked by a Book 2 recovery written
here (not the issuer's code)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import cvn as pcvn
from pyemv.tools import key_check_digits

from sandbox.issuer import (
    CA_EXPONENT,
    CA_INDEX,
    CA_MODULUS,
    IMK_AC,
    IMK_SMC,
    IMK_SMI,
    IccCertificates,
    IssuerError,
    arpc,
    card_authentication_data,
    card_keys,
    certificates,
    cryptogram,
    cvn_of,
    issuer_authentication_data,
    script_command,
    script_mac,
    session_key,
    sign_cda,
    sign_dynamic,
    sign_fdda,
)

# pyemv drives 2-key TripleDES through cryptography's deprecated path; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

PAN = "1234567890123456"
VECTOR = {  # test-keys.md, Visa CVN 18
    0x9F02: bytes.fromhex("000000004000"), 0x9F03: bytes(6), 0x9F1A: bytes.fromhex("0124"),
    0x95: bytes.fromhex("8000048000"), 0x5F2A: bytes.fromhex("0124"), 0x9A: bytes.fromhex("191105"),
    0x9C: bytes.fromhex("01"), 0x9F37: bytes.fromhex("52BF4585"), 0x82: bytes.fromhex("1800"),
    0x9F36: bytes.fromhex("001C"), 0x9F10: bytes.fromhex("06011203A0B800"),
}
IADS = {
    10: bytes.fromhex("06010A03A00000"),
    18: bytes.fromhex("06011203A0B800"),
    16: bytes.fromhex("0110A00003220000000000000000000000FF"),
    20: bytes.fromhex("0114A00003220000000000000000000000FF"),
}


def kcv(key: bytes) -> str:
    return key_check_digits(key, 2).hex().upper()


# ---- test-keys.md's vectors


def test_master_keys_are_test_keys_md() -> None:
    assert kcv(IMK_AC) == "08D7"
    assert (IMK_SMI.hex().upper(), IMK_SMC.hex().upper()) == (
        "FEDCBA98765432100123456789ABCDEF", "89ABCDEF0123456776543210FEDCBA98")


def test_icc_master_key_and_session_key_check_values() -> None:
    keys = card_keys(PAN, 0)
    assert kcv(keys.ac) == "BAB0"
    assert kcv(session_key(18, keys, VECTOR)) == "22C8"


def test_cvn18_arqc_and_arpc_vector() -> None:
    keys = card_keys(PAN, 0)
    assert cvn_of(VECTOR[0x9F10]) == 18
    arqc = cryptogram(18, keys, VECTOR)
    assert arqc.hex().upper() == "7A788EA6B8A3E733"
    assert arpc(18, keys, VECTOR, arqc, csu=bytes(4)).hex().upper() == "9AF514C1"
    assert issuer_authentication_data(18, keys, VECTOR, arqc).hex().upper() == "9AF514C100000000"


def test_option_b_for_long_pans() -> None:
    # pyemv.kd's own documented option B example, under the same IMK
    assert card_keys("12345678901234567", 1).ac.hex().upper() == "AD406D7F6D7570916D75E5DCAB8CF737"
    assert card_keys("1234567890123456", 1).ac != card_keys("1234567890123456", 0).ac


# ---- every CVN against pyemv.cvn (an independent implementation of the same specs)


def reference(cvn: int, pan: str, psn: int) -> Any:
    cls: Any = {10: pcvn.VisaCVN10, 18: pcvn.VisaCVN18, 16: pcvn.MasterCardCVN16, 20: pcvn.MasterCardCVN20}[cvn]
    return cls(IMK_AC, IMK_SMI, IMK_SMC, pan, f"{psn:02d}")


@pytest.mark.parametrize("cvn", [10, 18, 16, 20])
def test_each_cvn_matches_pyemv_reference(cvn: int) -> None:
    pan, psn = "6280580000001239", 1
    tags = {**VECTOR, 0x9F10: IADS[cvn], 0x9F36: bytes.fromhex("0042"), 0x9F37: bytes.fromhex("DEADBEEF")}
    ref = reference(cvn, pan, psn)
    keys = card_keys(pan, psn)
    assert (keys.ac, keys.smi, keys.smc) == (ref.icc_mk_ac, ref.icc_mk_smi, ref.icc_mk_smc)
    args = [tags[t] for t in (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x82, 0x9F36)]
    cvr = {10: IADS[10][3:7], 18: IADS[18], 16: IADS[16][2:8], 20: IADS[20][2:8]}[cvn]
    ac = cryptogram(cvn, keys, tags)
    assert cvn_of(IADS[cvn]) == cvn
    assert ac == ref.generate_ac(*args, cvr)
    if isinstance(ref, pcvn.VisaCVN18):
        csu = b"\x00\x80\x00\x00"
        assert arpc(cvn, keys, tags, ac, csu=csu) == ref.generate_arpc(ac, tags[0x9F36], csu)
    elif isinstance(ref, pcvn.MasterCardCVN20):
        assert arpc(cvn, keys, tags, ac, b"00") == ref.generate_arpc(ac, tags[0x9F36], b"00")
    else:
        assert arpc(cvn, keys, tags, ac, b"00") == ref.generate_arpc(ac, b"00")
    assert len(issuer_authentication_data(cvn, keys, tags, ac)) == (8 if cvn == 18 else 10)


@pytest.mark.parametrize("cvn", [10, 18, 16, 20])
def test_script_mac_matches_pyemv_reference(cvn: int) -> None:
    pan, atc, arqc = "6280580000001239", bytes.fromhex("0042"), bytes.fromhex("7A788EA6B8A3E733")
    ref, keys = reference(cvn, pan, 0), card_keys(pan, 0)
    data = bytes.fromhex("05")
    apdu = script_command(cvn, keys, atc, arqc, bytes.fromhex("04DA9F14"), data)
    assert apdu[:6] == bytes.fromhex("04DA9F140905")
    assert apdu[6:] == ref.generate_command_mac(apdu[:5], arqc, atc, data)
    assert script_mac(cvn, keys, atc, arqc, apdu[:5], data) == apdu[6:]
    assert script_mac(cvn, keys, b"\x00\x43", arqc, apdu[:5], data) != apdu[6:]


@pytest.mark.parametrize("tag", [0x9F02, 0x95, 0x9F37, 0x9F36, 0x9F10])
def test_any_changed_tag_changes_the_cryptogram(tag: int) -> None:
    keys = card_keys(PAN, 0)
    changed = {**VECTOR, tag: bytes([VECTOR[tag][0] ^ 0x01]) + VECTOR[tag][1:]}
    assert cryptogram(18, keys, changed) != cryptogram(18, keys, VECTOR)


def test_arc_changes_the_method_1_arpc() -> None:
    keys, tags = card_keys(PAN), {**VECTOR, 0x9F10: IADS[10]}
    ac = cryptogram(10, keys, tags)
    assert arpc(10, keys, tags, ac, b"00") != arpc(10, keys, tags, ac, b"05")


# ---- hostile input: one typed error naming the field


@pytest.mark.parametrize(("tags", "message"), [
    ({k: v for k, v in VECTOR.items() if k != 0x9F36}, "tag 9F36 is missing"),
    ({**VECTOR, 0x9F02: b"\x00"}, "tag 9F02: 1 bytes, expected 6"),
    ({**VECTOR, 0x9F10: b""}, "tag 9F10: 0 bytes"),
    ({**VECTOR, 0x9F10: bytes(33)}, "tag 9F10: 33 bytes"),
])
def test_bad_tags_are_one_issuer_error(tags: dict[int, bytes], message: str) -> None:
    with pytest.raises(IssuerError, match=message):
        cryptogram(18, card_keys(PAN), tags)


def test_bad_cvn_pan_and_lengths() -> None:
    keys = card_keys(PAN)
    with pytest.raises(IssuerError, match="cryptogram version 17"):
        cryptogram(17, keys, VECTOR)
    with pytest.raises(IssuerError, match="too short for CVN 20"):
        cryptogram(20, keys, VECTOR)  # a Visa IAD is too short for M/Chip's CVR
    with pytest.raises(IssuerError, match="PAN"):
        card_keys("62805800000012x9")
    with pytest.raises(IssuerError, match="9F26"):
        arpc(18, keys, VECTOR, b"short")
    assert "CardKeys(...)" == repr(keys)  # never the keys in a log


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*sorted(VECTOR), 0x5F34]), st.binary(max_size=40)),
       st.sampled_from([10, 16, 18, 20, 0]))
def test_cryptogram_raises_only_issuer_error(tags: dict[int, bytes], cvn: int) -> None:
    try:
        assert len(cryptogram(cvn, card_keys(PAN), {**VECTOR, **tags})) == 8
    except IssuerError:
        pass


@given(st.binary(max_size=40))
def test_cvn_of_never_raises(iad: bytes) -> None:
    assert cvn_of(iad) in (None, 10, 16, 18, 20)


# ---- certificates: an independent Book 2 recovery


@dataclass
class Recovered:
    fmt: int
    data: bytes  # from the format byte to the end of the padded key / pad pattern (what the hash starts with)
    hash: bytes


def recover(signed: bytes, modulus: int, exponent: int) -> Recovered:
    """Book 2 5.3 / 6.3 / 6.5.2: raw RSA, then header 6A, trailer BC, SHA-1 (hash algorithm 01) before BC."""
    size = (modulus.bit_length() + 7) // 8
    assert len(signed) == size, "signature length is not the key length"
    block = pow(int.from_bytes(signed, "big"), exponent, modulus).to_bytes(size, "big")
    assert block[0] == 0x6A, "recovered data header is not 6A"
    assert block[-1] == 0xBC, "recovered data trailer is not BC"
    return Recovered(block[1], block[1:-21], block[-21:-1])


def sha1(data: bytes) -> bytes:
    return hashlib.sha1(data, usedforsecurity=False).digest()


STATIC = bytes.fromhex("5A0862805800000012395F24032812315F25032211019F0702FF00") + bytes.fromhex("3800")


def issuer_key(certs: IccCertificates, pan: str) -> int:
    assert certs.ca_index == CA_INDEX == 0xF1
    r = recover(certs.issuer_cert, CA_MODULUS, CA_EXPONENT)
    assert r.fmt == 0x02
    assert r.hash == sha1(r.data + certs.issuer_remainder + certs.issuer_exponent)
    issuer_id, expiry = r.data[1:5], r.data[5:7]
    hash_algo, pk_algo, n_len, e_len = r.data[10:14]
    assert issuer_id.hex().upper().rstrip("F") == pan[: len(issuer_id.hex().upper().rstrip("F"))]
    assert (hash_algo, pk_algo, e_len) == (1, 1, len(certs.issuer_exponent))
    assert int(expiry[1:].hex()) >= 26  # MMYY not expired for the tests' years
    leftmost = r.data[14:]
    key = (leftmost + certs.issuer_remainder)[:n_len] if certs.issuer_remainder else leftmost[:n_len]
    assert certs.issuer_remainder or set(leftmost[n_len:]) <= {0xBB}
    return int.from_bytes(key, "big")


def icc_key(certs: IccCertificates, pan: str, static: bytes) -> int:
    n_issuer = issuer_key(certs, pan)
    assert certs.icc_cert is not None and certs.icc_remainder is not None and certs.icc_exponent is not None
    r = recover(certs.icc_cert, n_issuer, certs.issuer_exponent[0])
    assert r.fmt == 0x04
    assert r.hash == sha1(r.data + certs.icc_remainder + certs.icc_exponent + static)
    assert r.data[1:11].hex().upper().rstrip("F") == pan
    assert r.data[11:13] == bytes.fromhex("1228")  # MMYY of the card's expiry
    assert (r.data[16], r.data[17], r.data[19]) == (1, 1, len(certs.icc_exponent))  # SHA-1, RSA, exponent length
    n_len = r.data[18]
    key = (r.data[20:] + certs.icc_remainder)[:n_len]
    assert int.from_bytes(key, "big") == certs.icc_modulus
    return int.from_bytes(key, "big")


def test_sda_round_trip() -> None:
    pan = "6280580000001239"
    certs = certificates(pan, "2812", STATIC, oda="sda")
    assert certs.icc_cert is None and certs.icc_private_exponent is None and certs.ssad is not None
    n_issuer = issuer_key(certs, pan)
    r = recover(certs.ssad, n_issuer, certs.issuer_exponent[0])
    assert r.fmt == 0x03 and r.data[1] == 0x01
    assert r.data[2:4] == certs.data_authentication_code
    assert r.hash == sha1(r.data + STATIC)
    assert r.hash != sha1(r.data + STATIC[:-1] + b"\x01")  # the AIP is covered


def test_dda_round_trip() -> None:
    pan = "4761739001010010"
    certs = certificates(pan, "2812", STATIC, oda="dda")
    n_icc = icc_key(certs, pan, STATIC)
    ddol = bytes.fromhex("11223344")
    sdad = sign_dynamic(certs, bytes.fromhex("0A0B"), ddol)
    r = recover(sdad, n_icc, certs.icc_exponent[0] if certs.icc_exponent else 0)
    assert (r.fmt, r.data[1], r.data[2]) == (0x05, 0x01, 3)
    assert r.data[3:6] == bytes.fromhex("020A0B")  # ICC Dynamic Number length + number
    assert set(r.data[6:]) == {0xBB}
    assert r.hash == sha1(r.data + ddol)


def test_cda_round_trip() -> None:
    pan = "5413330089020011"
    certs = certificates(pan, "2812", STATIC, oda="cda", seed=1)
    n_icc = icc_key(certs, pan, STATIC)
    ac, un, tx = bytes.fromhex("1122334455667788"), bytes.fromhex("CAFEBABE"), b"pdol|cdol1|9F2701809F3602001C"
    r = recover(sign_cda(certs, b"\x00\x1c", 0x80, ac, un, tx), n_icc, 3)
    l_dd = r.data[2]
    dynamic = r.data[3:3 + l_dd]
    assert (r.fmt, l_dd) == (0x05, 1 + 2 + 1 + 8 + 20)
    assert dynamic == b"\x02\x00\x1c" + b"\x80" + ac + sha1(tx)
    assert r.hash == sha1(r.data + un)


@pytest.mark.parametrize("oda", ["sda", "dda", "cda"])
def test_tampered_certificates_fail_recovery(oda: str) -> None:
    pan = "6280580000001239"
    certs = certificates(pan, "2812", STATIC, oda=oda, tamper=True)
    n_issuer = issuer_key(certs, pan)  # the issuer certificate itself is intact
    signed = certs.ssad if oda == "sda" else certs.icc_cert
    assert signed is not None
    with pytest.raises(AssertionError):
        r = recover(signed, n_issuer, 3)
        assert r.hash == sha1(r.data + (certs.icc_remainder or b"") + (certs.icc_exponent or b"") + STATIC) or (
            oda == "sda" and r.hash == sha1(r.data + STATIC)), "hash mismatch"


def test_certificates_are_deterministic_and_hide_keys() -> None:
    a = certificates("6280580000001239", "2812", STATIC, oda="dda", seed=2)
    from sandbox.issuer import oda

    oda._certificates.cache_clear()
    oda.keys_for_seed.cache_clear()
    b = certificates("6280580000001239", "2812", STATIC, oda="dda", seed=2)
    assert a == b
    assert str(a.icc_private_exponent) not in repr(a)
    assert certificates("6280580000001239", "2812", STATIC, oda="dda", seed=3).icc_cert != a.icc_cert


def test_bad_certificate_input() -> None:
    with pytest.raises(IssuerError, match="expiry"):
        certificates("6280580000001239", "2813", b"", oda="dda")
    with pytest.raises(IssuerError, match="ODA method"):
        certificates("6280580000001239", "2812", b"", oda="xda")
    sda = certificates("6280580000001239", "2812", b"", oda="sda")
    with pytest.raises(IssuerError, match="for SDA"):
        sign_dynamic(sda, b"\x00\x01", b"")
    dda = certificates("6280580000001239", "2812", b"", oda="dda")
    with pytest.raises(IssuerError, match="dynamic number"):
        sign_dynamic(dda, b"\x00", b"")


def test_fdda_round_trip() -> None:
    """Visa fDDA v01: a DDA signature whose hash covers 9F37 || 9F02 || 5F2A || 9F69 (independent recovery)."""
    pan = "4761739001010010"
    certs = certificates(pan, "2812", STATIC, oda="dda")
    n_icc = icc_key(certs, pan, STATIC)
    cad = card_authentication_data(bytes.fromhex("A1B2C3D4"), bytes.fromhex("0080"))
    assert cad == bytes.fromhex("01A1B2C3D40080")
    un, amount, currency = bytes.fromhex("CAFEBABE"), bytes.fromhex("000000030000"), bytes.fromhex("0012")
    r = recover(sign_fdda(certs, bytes.fromhex("A1B2C3D4"), un, amount, currency, cad), n_icc, 3)
    assert (r.fmt, r.data[1], r.data[2]) == (0x05, 0x01, 5) and r.data[3:8] == bytes.fromhex("04A1B2C3D4")
    assert r.hash == sha1(r.data + un + amount + currency + cad)
    assert r.hash != sha1(r.data + un + bytes.fromhex("000000030001") + currency + cad)  # the amount is covered


def test_bad_fdda_input() -> None:
    dda = certificates("6280580000001239", "2812", b"", oda="dda")
    good = (bytes(4), bytes(6), bytes(2), card_authentication_data(bytes(4)))
    for i, bad in enumerate((bytes(3), bytes(5), bytes(3), b"\x02" + bytes(6))):
        args = list(good)
        args[i] = bad
        with pytest.raises(IssuerError, match="9F37|9F02|5F2A|9F69"):
            sign_fdda(dda, b"\x00\x01", *args)
    with pytest.raises(IssuerError, match="unpredictable"):
        card_authentication_data(bytes(3))
    with pytest.raises(IssuerError, match="9F6C"):
        card_authentication_data(bytes(4), b"\x00")
