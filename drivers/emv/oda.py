"""Offline data authentication (EMV Book 2 5-6, Book 3 10.3): SDA, DDA and CDA recovery on the terminal side.

The certificates are RSA signatures with message recovery: ``pow(cert, e, n)`` gives the signed block
``6A <format> ... <SHA-1 hash> BC``. Each check below returns nothing or raises :class:`OdaError` naming what did
not hold; the kernel turns that into a TVR bit (SDA/DDA/CDA failed), never into a crashed transaction.

    issuer = issuer_key(ca, cert_90, remainder_92, exponent_9F32, pan="4111...", today=date.today())
    verify_sda(issuer, ssad_93, static_data)                               # SDA
    icc = icc_key(issuer, cert_9F46, remainder_9F48, exponent_9F47, static_data, pan=..., today=...)
    verify_dda(icc, sdad_9F4B, ddol_data)                                  # DDA: INTERNAL AUTHENTICATE answer
    verify_cda(icc, sdad_9F4B, un_9F37, cid, txn_data_hash)                # CDA: GENERATE AC answer
    verify_fdda(icc, sdad_9F4B, card_data_9F69, un_9F37, amount_9F02, currency_5F2A)  # fDDA: a tap's GPO answer

>>> choose_method(aip=bytes.fromhex("7900"), capabilities=bytes.fromhex("E0A8C8"))
'cda'
>>> choose_method(aip=bytes.fromhex("1800"), capabilities=bytes.fromhex("E0A8C8")) is None
True
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass


class OdaError(Exception):
    """A certificate or signature that does not verify (one line naming the check)."""


@dataclass(frozen=True)
class RsaKey:
    modulus: int
    exponent: int

    @property
    def size(self) -> int:
        return (self.modulus.bit_length() + 7) // 8

    @classmethod
    def from_hex(cls, modulus: str, exponent: str) -> RsaKey:
        return cls(int(modulus, 16), int(exponent, 16))


# AIP byte 1 (Book 3 C1): SDA 0x40, DDA 0x20, CDA 0x01. Terminal capabilities byte 3: SDA 0x80, DDA 0x40, CDA 0x08.
def choose_method(aip: bytes, capabilities: bytes) -> str | None:
    """The ODA method both sides support, CDA first (Book 3 10.3), or None."""
    if len(aip) < 1 or len(capabilities) < 3:
        return None
    card, term = aip[0], capabilities[2]
    if card & 0x01 and term & 0x08:
        return "cda"
    if card & 0x20 and term & 0x40:
        return "dda"
    if card & 0x40 and term & 0x80:
        return "sda"
    return None


def recover(key: RsaKey, signature: bytes, fmt: int, what: str) -> bytes:
    """``pow(sig, e, n)`` checked for the Book 2 frame: length, header 6A, format, trailer BC."""
    if len(signature) != key.size:
        raise OdaError(f"{what}: {len(signature)} bytes, the key is {key.size}")
    value = int.from_bytes(signature, "big")
    if value >= key.modulus:
        raise OdaError(f"{what}: not below the modulus")
    block = pow(value, key.exponent, key.modulus).to_bytes(key.size, "big")
    if block[0] != 0x6A or block[-1] != 0xBC:
        raise OdaError(f"{what}: recovered data has no 6A header or BC trailer")
    if block[1] != fmt:
        raise OdaError(f"{what}: format {block[1]:02X}, expected {fmt:02X}")
    return block


def _check_hash(block: bytes, extra: bytes, what: str) -> None:
    digest = hashlib.sha1(block[1:-21] + extra).digest()  # noqa: S324 - SHA-1 is what EMV Book 2 signs
    if digest != block[-21:-1]:
        raise OdaError(f"{what}: hash does not match")


def _not_expired(mmyy: bytes, today: _dt.date, what: str) -> None:
    digits = mmyy.hex()
    if not digits.isdigit() or not 1 <= int(digits[:2]) <= 12:
        raise OdaError(f"{what}: expiry date {digits} is not MMYY")
    month, year = int(digits[:2]), 2000 + int(digits[2:])
    if (today.year, today.month) > (year, month):
        raise OdaError(f"{what}: expired at the end of {month:02d}/{year}")


def _pan_prefix_matches(cn: bytes, pan: str, what: str) -> None:
    digits = cn.hex().upper().rstrip("F")
    if not digits or not pan.startswith(digits):
        raise OdaError(f"{what}: does not belong to this card number")


def issuer_key(ca: RsaKey, cert: bytes, remainder: bytes, exponent: bytes, *, pan: str, today: _dt.date) -> RsaKey:
    """The issuer public key from its certificate (90), remainder (92) and exponent (9F32) (Book 2 5.3/6.3)."""
    block = recover(ca, cert, 0x02, "issuer public key certificate (90)")
    _pan_prefix_matches(block[2:6], pan, "issuer public key certificate (90)")
    _not_expired(block[6:8], today, "issuer public key certificate (90)")
    if block[11] != 0x01 or block[12] != 0x01:
        raise OdaError("issuer public key certificate (90): unknown hash or key algorithm")
    length, exp_len = block[13], block[14]
    digits = block[15:-21]
    if length <= len(digits):
        modulus = digits[:length]
    else:
        if len(remainder) != length - len(digits):
            raise OdaError("issuer public key remainder (92) missing or of the wrong length")
        modulus = digits + remainder
    if exp_len != len(exponent):
        raise OdaError("issuer public key exponent (9F32) length differs from its certificate")
    _check_hash(block, remainder + exponent, "issuer public key certificate (90)")
    return RsaKey(int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big"))


def verify_sda(issuer: RsaKey, ssad: bytes, static_data: bytes) -> bytes:
    """Signed static application data (93); returns the data authentication code (9F45)."""
    block = recover(issuer, ssad, 0x03, "signed static application data (93)")
    if block[2] != 0x01:
        raise OdaError("signed static application data (93): unknown hash algorithm")
    _check_hash(block, static_data, "signed static application data (93)")
    return block[3:5]


def icc_key(
    issuer: RsaKey, cert: bytes, remainder: bytes, exponent: bytes, static_data: bytes, *, pan: str,
    today: _dt.date,
) -> RsaKey:
    """The ICC public key from 9F46/9F48/9F47, checked against the static data (Book 2 6.4)."""
    block = recover(issuer, cert, 0x04, "ICC public key certificate (9F46)")
    cert_pan = block[2:12].hex().upper().rstrip("F")
    if cert_pan != pan:
        raise OdaError("ICC public key certificate (9F46): not this card's number")
    _not_expired(block[12:14], today, "ICC public key certificate (9F46)")
    if block[17] != 0x01 or block[18] != 0x01:
        raise OdaError("ICC public key certificate (9F46): unknown hash or key algorithm")
    length, exp_len = block[19], block[20]
    digits = block[21:-21]
    if length <= len(digits):
        modulus = digits[:length]
    else:
        if len(remainder) != length - len(digits):
            raise OdaError("ICC public key remainder (9F48) missing or of the wrong length")
        modulus = digits + remainder
    if exp_len != len(exponent):
        raise OdaError("ICC public key exponent (9F47) length differs from its certificate")
    _check_hash(block, remainder + exponent + static_data, "ICC public key certificate (9F46)")
    return RsaKey(int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big"))


def _dynamic(icc: RsaKey, sdad: bytes, what: str) -> bytes:
    block = recover(icc, sdad, 0x05, what)
    if block[2] != 0x01:
        raise OdaError(f"{what}: unknown hash algorithm")
    return block


def verify_dda(icc: RsaKey, sdad: bytes, ddol_data: bytes) -> bytes:
    """Signed dynamic application data from INTERNAL AUTHENTICATE; returns the ICC dynamic number (9F4C)."""
    block = _dynamic(icc, sdad, "signed dynamic application data (9F4B)")
    _check_hash(block, ddol_data, "signed dynamic application data (9F4B)")
    n = block[3]
    if n < 1 or 4 + n > len(block) - 21:
        raise OdaError("signed dynamic application data (9F4B): bad ICC dynamic data length")
    return block[5 : 5 + block[4]]


def verify_cda(icc: RsaKey, sdad: bytes, unpredictable: bytes, cid: int, txn_hash: bytes) -> tuple[bytes, bytes]:
    """CDA (Book 2 6.6.2): the signature over the GENERATE AC answer; returns (ICC dynamic number, cryptogram)."""
    what = "CDA signature (9F4B)"
    block = _dynamic(icc, sdad, what)
    _check_hash(block, unpredictable, what)
    n = block[3]
    data = block[4 : 4 + n]
    if n < 30 or len(data) != n:
        raise OdaError(f"{what}: ICC dynamic data of {n} bytes")
    idn_len = data[0]
    if 1 + idn_len + 29 > n:
        raise OdaError(f"{what}: bad ICC dynamic number length")
    idn = data[1 : 1 + idn_len]
    rest = data[1 + idn_len :]
    if rest[0] != cid:
        raise OdaError(f"{what}: signed CID {rest[0]:02X} differs from the answer's {cid:02X}")
    if rest[9:29] != txn_hash:
        raise OdaError(f"{what}: transaction data hash does not match")
    return idn, rest[1:9]


def transaction_hash(pdol_data: bytes, cdol_data: bytes, answer_tlvs: bytes) -> bytes:
    """Book 2 6.6.1: SHA-1 over the PDOL data, the CDOL data and the answer's TLVs other than 9F4B."""
    return hashlib.sha1(pdol_data + cdol_data + answer_tlvs).digest()  # noqa: S324 - Book 2's hash


FDDA_VERSION = 0x01
FDDA_CARD_DATA = (7, 16)  # 9F69 of fDDA version 01: 01, the card's unpredictable number (4), CTQ (2), [RFU]


def fdda_ddol_data(card_data: bytes, unpredictable: bytes, amount: bytes, currency: bytes) -> bytes:
    """The terminal dynamic data fDDA version 01 signs (Visa CL kernel 3): 9F37 || 9F02 || 5F2A || 9F69, each
    checked for its length and 9F69 for its version.

    >>> fdda_ddol_data(bytes.fromhex("01A1B2C3D40000"), b"UN!!", bytes(6), bytes.fromhex("0012")).hex().upper()
    '554E2121000000000000001201A1B2C3D40000'
    >>> try:
    ...     fdda_ddol_data(bytes.fromhex("02A1B2C3D40000"), b"UN!!", bytes(6), bytes.fromhex("0012"))
    ... except OdaError as e:
    ...     print(e)
    card authentication related data (9F69): fDDA version 02, expected 01
    """
    low, high = FDDA_CARD_DATA
    if not low <= len(card_data) <= high:
        raise OdaError(f"card authentication related data (9F69): {len(card_data)} bytes, expected {low} to {high}")
    if card_data[0] != FDDA_VERSION:
        raise OdaError(f"card authentication related data (9F69): fDDA version {card_data[0]:02X}, expected 01")
    for what, value, size in (("unpredictable number (9F37)", unpredictable, 4),
                              ("amount (9F02)", amount, 6), ("currency (5F2A)", currency, 2)):
        if len(value) != size:
            raise OdaError(f"fDDA: {what} of {len(value)} bytes, expected {size}")
    return unpredictable + amount + currency + card_data


def verify_fdda(icc: RsaKey, sdad: bytes, card_data: bytes, unpredictable: bytes, amount: bytes,
                currency: bytes) -> bytes:
    """fDDA version 01: a tap's Signed Dynamic Application Data (9F4B) over the terminal's 9F37, 9F02, 5F2A and
    the card's 9F69 (:func:`fdda_ddol_data`); returns the ICC dynamic number (9F4C). Raises OdaError."""
    return verify_dda(icc, sdad, fdda_ddol_data(card_data, unpredictable, amount, currency))


def fdda_ctq(card_data: bytes) -> bytes:
    """The card transaction qualifiers (CTQ) the card signed: bytes 6-7 of its fDDA version 01 9F69 (checked by
    :func:`fdda_ddol_data` first). After a verified fDDA these count, not the unsigned 9F6C.

    >>> fdda_ctq(bytes.fromhex("01A1B2C3D40080")).hex()
    '0080'
    """
    return card_data[5:7]
