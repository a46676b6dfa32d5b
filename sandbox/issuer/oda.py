"""Offline data authentication material for virtual cards (EMV Book 2): the issuer and ICC public key
certificates under the test CA, the SDA signature, and the DDA/CDA signatures a card makes.

EMV uses raw RSA with its own framing (header 6A, format byte, SHA-1 hash, trailer BC), so signing is plain
``pow(m, d, n)``; `cryptography` only generates the keys. Keys are test keys: they are generated once per seed
and kept in ``sandbox/issuer/keys/seed-<n>.json`` (README there), so certificates are the same on every run.

>>> certs = certificates("4761739001010010", "2812", bytes.fromhex("5A0847617390010100105F24032812317C00"), oda="dda")
>>> certs.ca_index == 0xF1, len(certs.issuer_cert), len(certs.icc_cert or b""), certs.ssad
(True, 144, 128, None)
>>> sdad = sign_dynamic(certs, bytes.fromhex("1234"), bytes.fromhex("01020304"))
>>> m = pow(int.from_bytes(sdad, "big"), 3, certs.icc_modulus or 0).to_bytes(len(sdad), "big")
>>> m[:4].hex().upper(), m[-1:].hex().upper()      # header, format 05 (DDA), SHA-1, L_DD 3
('6A050103', 'BC')
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.issuer.errors import IssuerError
from sandbox.issuer.master import CA_EXPONENT, CA_INDEX, CA_MODULUS, CA_PRIVATE_EXPONENT, check_pan

KEYS_DIR = Path(__file__).resolve().parent / "keys"
KEY_BITS = 1024  # issuer and ICC keys: the least `cryptography` makes; the issuer's (128 B) < the CA's (144 B)
EXPONENT = 3
HASH_SHA1 = 0x01
PK_RSA = 0x01
ISSUER_CERT_EXPIRY = "1249"  # MMYY: December 2049, beyond any test card
MAX_SEED = 1_000
Oda = Literal["sda", "dda", "cda"]


@dataclass(frozen=True)
class RsaKey:
    """A raw RSA key pair (test only)."""

    modulus: int
    private_exponent: int
    exponent: int = EXPONENT

    @property
    def size(self) -> int:
        return (self.modulus.bit_length() + 7) // 8

    def __repr__(self) -> str:
        return f"RsaKey({self.modulus.bit_length()} bits)"


@dataclass(frozen=True)
class IccCertificates:
    """What an ODA card carries (tags 8F 90 9F32 92, 93 for SDA, 9F46 9F47 9F48 for DDA/CDA) and, for DDA/CDA,
    the ICC private key the card signs with. ``issuer_remainder`` / ``icc_remainder`` may be b"" (then the card
    carries no 92 / 9F48)."""

    ca_index: int
    issuer_cert: bytes
    issuer_exponent: bytes
    issuer_remainder: bytes
    ssad: bytes | None
    icc_cert: bytes | None
    icc_exponent: bytes | None
    icc_remainder: bytes | None
    icc_modulus: int | None
    icc_private_exponent: int | None
    data_authentication_code: bytes = b"\xda\xc0"  # 9F45, inside the SSAD (SDA)

    def __repr__(self) -> str:  # the private exponent stays out of logs
        return f"IccCertificates(ca_index={self.ca_index:#04x}, oda={'sda' if self.icc_cert is None else 'dda/cda'})"


@functools.lru_cache(maxsize=64)
def _crt(modulus: int, private_exponent: int, exponent: int) -> tuple[int, int, int, int, int] | None:
    """(p, q, d mod p-1, d mod q-1, q^-1 mod p): signing by CRT is ~4x faster (a card signs per transaction)."""
    try:
        p, q = rsa.rsa_recover_prime_factors(modulus, exponent, private_exponent)
    except ValueError:
        return None  # not a key we can factor (e.g. the CA's, exponent unknown here): plain pow
    return p, q, rsa.rsa_crt_dmp1(private_exponent, p), rsa.rsa_crt_dmq1(private_exponent, q), rsa.rsa_crt_iqmp(p, q)


def _sign(modulus: int, private_exponent: int, message: bytes, exponent: int = EXPONENT) -> bytes:
    """Raw RSA of an EMV-framed block (6A .. BC, exactly the key's length)."""
    size = (modulus.bit_length() + 7) // 8
    if len(message) != size or message[0] != 0x6A or message[-1] != 0xBC:
        raise IssuerError(f"RSA: message of {len(message)} bytes for a {size}-byte key, or not framed 6A..BC")
    m = int.from_bytes(message, "big")
    crt = _crt(modulus, private_exponent, exponent)
    if crt is None:
        return pow(m, private_exponent, modulus).to_bytes(size, "big")
    p, q, dp, dq, qinv = crt
    m1, m2 = pow(m, dp, p), pow(m, dq, q)
    return (m2 + (qinv * (m1 - m2) % p) * q).to_bytes(size, "big")


def _frame(body: bytes, hashed_tail: bytes) -> bytes:
    """6A || body || SHA-1(body || hashed_tail) || BC (Book 2: the hash covers everything from the format byte)."""
    return b"\x6a" + body + hashlib.sha1(body + hashed_tail, usedforsecurity=False).digest() + b"\xbc"


def _split_key(modulus: int, room: int) -> tuple[bytes, bytes, int]:
    """(the leftmost `room` bytes padded with BB, the remainder, the key's length in bytes)."""
    size = (modulus.bit_length() + 7) // 8
    raw = modulus.to_bytes(size, "big")
    if size <= room:
        return raw + b"\xbb" * (room - size), b"", size
    return raw[:room], raw[room:], size


def _write_keys(path: Path, keys: dict[str, RsaKey]) -> None:
    data = {name: {"modulus": f"{k.modulus:X}", "private_exponent": f"{k.private_exponent:X}",
                   "exponent": k.exponent} for name, k in keys.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".seed-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.lru_cache(maxsize=64)
def keys_for_seed(seed: int) -> dict[str, RsaKey]:
    """The issuer and ICC RSA keys of `seed`: read from keys/seed-<seed>.json, else generated once and kept there
    (or in memory only, when the directory is read-only)."""
    if not (isinstance(seed, int) and 0 <= seed < MAX_SEED):
        raise IssuerError(f"seed {seed!r}: not 0 to {MAX_SEED - 1}")
    path = KEYS_DIR / f"seed-{seed}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {name: RsaKey(int(v["modulus"], 16), int(v["private_exponent"], 16), int(v["exponent"]))
                for name, v in raw.items()}
    except FileNotFoundError:
        pass
    keys = {}
    for name in ("issuer", "icc"):
        private = rsa.generate_private_key(public_exponent=EXPONENT, key_size=KEY_BITS)
        keys[name] = RsaKey(private.public_key().public_numbers().n, private.private_numbers().d, EXPONENT)
    try:
        _write_keys(path, keys)
    except OSError:
        pass  # a read-only install: these keys live for this process only
    return keys


def _mmyy(expiry_yymm: str) -> bytes:
    if not (len(expiry_yymm) == 4 and expiry_yymm.isascii() and expiry_yymm.isdigit()
            and 1 <= int(expiry_yymm[2:]) <= 12):
        raise IssuerError(f"expiry {expiry_yymm!r}: not YYMM")
    return bytes.fromhex(expiry_yymm[2:] + expiry_yymm[:2])


def _issuer_cert(pan: str, issuer: RsaKey, serial: bytes) -> tuple[bytes, bytes]:
    """(tag 8F, tag 92) the CA's certificate of the issuer key (Book 2 table 6, format 02)."""
    ca_size = (CA_MODULUS.bit_length() + 7) // 8
    leftmost, remainder, size = _split_key(issuer.modulus, ca_size - 36)
    exponent = issuer.exponent.to_bytes(1, "big")
    issuer_id = bytes.fromhex(pan[:6] + "FF")  # the BIN, right-padded with F
    body = (b"\x02" + issuer_id + bytes.fromhex(ISSUER_CERT_EXPIRY) + serial
            + bytes([HASH_SHA1, PK_RSA, size, len(exponent)]) + leftmost)
    signed = _sign(CA_MODULUS, CA_PRIVATE_EXPONENT, _frame(body, remainder + exponent), CA_EXPONENT)
    return signed, remainder


def _icc_cert(pan: str, expiry: bytes, issuer: RsaKey, icc: RsaKey, serial: bytes,
              static_data: bytes) -> tuple[bytes, bytes]:
    """(tag 9F46, tag 9F48) the issuer's certificate of the ICC key (Book 2 table 14, format 04)."""
    leftmost, remainder, size = _split_key(icc.modulus, issuer.size - 42)
    exponent = icc.exponent.to_bytes(1, "big")
    pan_field = bytes.fromhex(pan.ljust(20, "F"))
    body = (b"\x04" + pan_field + expiry + serial + bytes([HASH_SHA1, PK_RSA, size, len(exponent)]) + leftmost)
    signed = _sign(issuer.modulus, issuer.private_exponent,
                   _frame(body, remainder + exponent + static_data))
    return signed, remainder


def _ssad(issuer: RsaKey, dac: bytes, static_data: bytes) -> bytes:
    """Tag 93, the Signed Static Application Data (Book 2 table 7, format 03)."""
    body = b"\x03" + bytes([HASH_SHA1]) + dac + b"\xbb" * (issuer.size - 26)
    return _sign(issuer.modulus, issuer.private_exponent, _frame(body, static_data))


def _tamper(data: bytes) -> bytes:
    i = len(data) // 2  # a middle byte: the recovered block loses its 6A/BC framing or its hash
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


def certificates(pan: str, expiry_yymm: str, static_data: bytes, *, oda: Oda | str, tamper: bool = False,
                 seed: int = 0) -> IccCertificates:
    """The ODA data of the card `pan` expiring `expiry_yymm` (YYMM, as 5F24 without the day), for `oda`.

    `oda` is "sda", "dda" or "cda" (anything else: IssuerError).
    `static_data` is Book 3 10.3's static data to be authenticated: the values (or, for records not in tag 70,
    the whole records) of the AFL records flagged for ODA, then the value of 82 (AIP) when 9F4A lists it.
    The issuer certificate (8F) is signed under the test CA (index F1); the SSAD (93, SDA) or the ICC certificate
    (9F46, DDA/CDA, its hash covering `static_data`) under the issuer key of `seed`. `tamper=True` flips one byte
    of the SSAD (SDA) or of the ICC certificate (DDA/CDA), so the terminal's ODA fails and nothing else does.
    Deterministic: the same arguments give the same bytes (keys per seed are fixed, see module doc); cached.
    """
    if not isinstance(static_data, bytes | bytearray):
        raise IssuerError("static data: not bytes")
    return _certificates(pan, expiry_yymm, bytes(static_data), oda, tamper, seed)


@functools.lru_cache(maxsize=256)
def _certificates(pan: str, expiry_yymm: str, static_data: bytes, oda: str, tamper: bool,
                  seed: int) -> IccCertificates:
    check_pan(pan)
    if oda not in ("sda", "dda", "cda"):
        raise IssuerError(f"ODA method {oda!r}: not sda, dda or cda")
    expiry = _mmyy(expiry_yymm)
    keys = keys_for_seed(seed)
    issuer, icc = keys["issuer"], keys["icc"]
    serial = (seed + 1).to_bytes(3, "big")
    issuer_cert, issuer_remainder = _issuer_cert(pan, issuer, serial)
    common = {"ca_index": CA_INDEX, "issuer_cert": issuer_cert,
              "issuer_exponent": issuer.exponent.to_bytes(1, "big"), "issuer_remainder": issuer_remainder}
    if oda == "sda":
        ssad = _ssad(issuer, b"\xda\xc0", static_data)
        return IccCertificates(**common, ssad=_tamper(ssad) if tamper else ssad, icc_cert=None,  # type: ignore[arg-type]
                               icc_exponent=None, icc_remainder=None, icc_modulus=None, icc_private_exponent=None)
    icc_cert, icc_remainder = _icc_cert(pan, expiry, issuer, icc, serial, static_data)
    return IccCertificates(**common, ssad=None, icc_cert=_tamper(icc_cert) if tamper else icc_cert,  # type: ignore[arg-type]
                           icc_exponent=icc.exponent.to_bytes(1, "big"), icc_remainder=icc_remainder,
                           icc_modulus=icc.modulus, icc_private_exponent=icc.private_exponent)


def _icc_key(certs: IccCertificates) -> tuple[int, int]:
    if certs.icc_modulus is None or certs.icc_private_exponent is None:
        raise IssuerError("no ICC key: these certificates are for SDA")
    return certs.icc_modulus, certs.icc_private_exponent


def _sdad(certs: IccCertificates, icc_dynamic_data: bytes, hashed_tail: bytes) -> bytes:
    """Book 2 table 17 (format 05): 6A 05 01 L_DD ICC-dynamic-data BB.. SHA-1 BC, signed by the ICC key."""
    modulus, private_exponent = _icc_key(certs)
    size = (modulus.bit_length() + 7) // 8
    pad = size - len(icc_dynamic_data) - 25
    if pad < 0:
        raise IssuerError(f"ICC dynamic data: {len(icc_dynamic_data)} bytes, too long for a {size}-byte key")
    body = b"\x05" + bytes([HASH_SHA1, len(icc_dynamic_data)]) + icc_dynamic_data + b"\xbb" * pad
    return _sign(modulus, private_exponent, _frame(body, hashed_tail))


def _dynamic_number(number: bytes) -> bytes:
    if not 2 <= len(number) <= 8:
        raise IssuerError(f"ICC dynamic number: {len(number)} bytes, expected 2 to 8")
    return bytes([len(number)]) + number


def sign_dynamic(certs: IccCertificates, dynamic_data: bytes, ddol_data: bytes) -> bytes:
    """The Signed Dynamic Application Data (9F4B) of DDA that INTERNAL AUTHENTICATE answers.

    `dynamic_data` is the ICC Dynamic Number (9F4C, 2 to 8 bytes, e.g. from the ATC or a random): the signed
    ICC Dynamic Data is its length byte then it (Book 2 table 17). `ddol_data` is the command's data field (the
    DDOL values the terminal sent, e.g. 9F37), which the hash covers.
    """
    return _sdad(certs, _dynamic_number(dynamic_data), ddol_data)


def sign_cda(certs: IccCertificates, dynamic_number: bytes, cid: int, ac: bytes, unpredictable_number: bytes,
             transaction_data: bytes) -> bytes:
    """The Signed Dynamic Application Data (9F4B) a CDA card returns with GENERATE AC (Book 2 6.6.1, format 05).

    The ICC Dynamic Data signed is: len(`dynamic_number`) || `dynamic_number` (9F4C, 2 to 8 bytes) || `cid`
    (9F27, one byte) || `ac` (9F26, 8 bytes) || the Transaction Data Hash Code, SHA-1 of `transaction_data`;
    the signature's hash also covers `unpredictable_number` (9F37, 4 bytes, the terminal's).
    `transaction_data` is, in this order: the PDOL values sent in GPO, the CDOL1 values (and, at the second
    GENERATE AC, the CDOL2 values), then the TLV-coded data the card returns in this GENERATE AC response
    except 9F4B itself (Book 2 6.6.1, step 13 of 6.6.2).

    >>> certs = certificates("4761739001010010", "2812", b"", oda="cda")
    >>> sdad = sign_cda(certs, b"\\x00\\x01", 0x80, bytes(8), b"\\x01\\x02\\x03\\x04", b"pdol+cdol1+answer")
    >>> m = pow(int.from_bytes(sdad, "big"), 3, certs.icc_modulus or 0).to_bytes(128, "big")
    >>> m[:4].hex().upper(), m[7] == 0x80       # L_DD 32 = 1 + 2 + 1 + 8 + 20; the CID after the dynamic number
    ('6A050120', True)
    """
    if not 0 <= cid <= 0xFF:
        raise IssuerError(f"tag 9F27: {cid!r} is not one byte")
    if len(ac) != 8:
        raise IssuerError(f"tag 9F26: {len(ac)} bytes, expected 8")
    if len(unpredictable_number) != 4:
        raise IssuerError(f"tag 9F37: {len(unpredictable_number)} bytes, expected 4")
    hash_code = hashlib.sha1(transaction_data, usedforsecurity=False).digest()
    dynamic = _dynamic_number(dynamic_number) + bytes([cid]) + ac + hash_code
    return _sdad(certs, dynamic, unpredictable_number)


FDDA_VERSION = 0x01  # Visa fDDA version 01: the terminal dynamic data is 9F37 || 9F02 || 5F2A || 9F69


def card_authentication_data(card_unpredictable_number: bytes, ctq: bytes = bytes(2)) -> bytes:
    """Card Authentication Related Data (9F69) of fDDA version 01: 01 || the card's unpredictable number (4) ||
    its CTQ (9F6C, 2).

    >>> card_authentication_data(bytes.fromhex("A1B2C3D4")).hex().upper()
    '01A1B2C3D40000'
    """
    if len(card_unpredictable_number) != 4:
        raise IssuerError(f"card unpredictable number: {len(card_unpredictable_number)} bytes, expected 4")
    if len(ctq) != 2:
        raise IssuerError(f"tag 9F6C: {len(ctq)} bytes, expected 2")
    return bytes([FDDA_VERSION]) + card_unpredictable_number + ctq


def sign_fdda(certs: IccCertificates, dynamic_number: bytes, unpredictable_number: bytes, amount: bytes,
              currency: bytes, card_data: bytes) -> bytes:
    """The Signed Dynamic Application Data (9F4B) of a qVSDC card's offline approval (Visa fDDA version 01).

    A DDA signature (Book 2 table 17, format 05) whose hash covers the fDDA DDOL data: `unpredictable_number`
    (9F37, the terminal's, 4) || `amount` (9F02, 6) || `currency` (5F2A, 2) || `card_data` (9F69, from
    :func:`card_authentication_data`). `dynamic_number` is the ICC Dynamic Number (2 to 8 bytes).

    >>> certs = certificates("4761739001010010", "2812", b"", oda="dda")
    >>> idn, un, amount, cur = (bytes.fromhex(h) for h in ("11223344", "01020304", "000000001000", "0012"))
    >>> cad = card_authentication_data(idn)
    >>> sdad = sign_fdda(certs, idn, un, amount, cur, cad)
    >>> sdad == sign_dynamic(certs, idn, un + amount + cur + cad)     # DDA's signature over the fDDA DDOL's data
    True
    """
    for name, value, size in (("9F37", unpredictable_number, 4), ("9F02", amount, 6), ("5F2A", currency, 2)):
        if len(value) != size:
            raise IssuerError(f"tag {name}: {len(value)} bytes, expected {size}")
    if len(card_data) < 7 or card_data[0] != FDDA_VERSION:
        raise IssuerError("tag 9F69: not fDDA version 01 card authentication data")
    return sign_dynamic(certs, dynamic_number, unpredictable_number + amount + currency + card_data)
