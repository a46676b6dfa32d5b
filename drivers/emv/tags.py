"""EMV tag dictionary (EMV Book 3 annex A, the tags a reader meets), for DOL padding and dumps.

>>> TAGS[0x5F24].name, TAGS[0x5F24].fmt
('Application Expiration Date', 'n')
>>> describe(0x9F38)
'9F38 Processing Options Data Object List (PDOL)'
>>> sorted(f"{t:X}" for t in SECRET_TAGS)
['56', '57', '5A', '5F20', '99', '9F1F', '9F20', '9F6B']
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.emv.tlv import tag_name


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    fmt: str  # b binary, n numeric BCD (left-padded), cn compressed numeric (F-padded right), an/ans text
    sensitive: bool = False  # cardholder data: never printed


def _t(name: str, fmt: str = "b", sensitive: bool = False) -> Tag:
    return Tag(name, fmt, sensitive)


TAGS: dict[int, Tag] = {
    0x42: _t("Issuer Identification Number (IIN)", "n"),
    0x4F: _t("Application Identifier (AID)"),
    0x50: _t("Application Label", "ans"),
    0x56: _t("Track 1 Data", "ans", True),
    0x57: _t("Track 2 Equivalent Data", "b", True),
    0x5A: _t("Application PAN", "cn", True),
    0x5F20: _t("Cardholder Name", "ans", True),
    0x5F24: _t("Application Expiration Date", "n"),
    0x5F25: _t("Application Effective Date", "n"),
    0x5F28: _t("Issuer Country Code", "n"),
    0x5F2A: _t("Transaction Currency Code", "n"),
    0x5F2D: _t("Language Preference", "an"),
    0x5F30: _t("Service Code", "n"),
    0x5F34: _t("PAN Sequence Number", "n"),
    0x5F36: _t("Transaction Currency Exponent", "n"),
    0x5F50: _t("Issuer URL", "ans"),
    0x61: _t("Application Template"),
    0x6F: _t("File Control Information (FCI) Template"),
    0x70: _t("READ RECORD Response Template"),
    0x77: _t("Response Message Template Format 2"),
    0x80: _t("Response Message Template Format 1"),
    0x82: _t("Application Interchange Profile (AIP)"),
    0x83: _t("Command Template"),
    0x84: _t("Dedicated File (DF) Name"),
    0x87: _t("Application Priority Indicator"),
    0x88: _t("Short File Identifier (SFI)"),
    0x8C: _t("CDOL1"),
    0x8D: _t("CDOL2"),
    0x8E: _t("CVM List"),
    0x8F: _t("Certification Authority Public Key Index"),
    0x90: _t("Issuer Public Key Certificate"),
    0x92: _t("Issuer Public Key Remainder"),
    0x93: _t("Signed Static Application Data"),
    0x94: _t("Application File Locator (AFL)"),
    0x95: _t("Terminal Verification Results"),
    0x99: _t("Transaction PIN Data", "b", True),
    0x9A: _t("Transaction Date", "n"),
    0x9C: _t("Transaction Type", "n"),
    0x9D: _t("DDF Name"),
    0xA5: _t("FCI Proprietary Template"),
    0xBF0C: _t("FCI Issuer Discretionary Data"),
    0x9F01: _t("Acquirer Identifier", "n"),
    0x9F02: _t("Amount, Authorised (Numeric)", "n"),
    0x9F03: _t("Amount, Other (Numeric)", "n"),
    0x9F07: _t("Application Usage Control"),
    0x9F08: _t("Application Version Number (card)"),
    0x9F09: _t("Application Version Number (terminal)"),
    0x9F0D: _t("Issuer Action Code - Default"),
    0x9F0E: _t("Issuer Action Code - Denial"),
    0x9F0F: _t("Issuer Action Code - Online"),
    0x9F10: _t("Issuer Application Data"),
    0x9F11: _t("Issuer Code Table Index", "n"),
    0x9F12: _t("Application Preferred Name", "ans"),
    0x9F15: _t("Merchant Category Code", "n"),
    0x9F16: _t("Merchant Identifier", "ans"),
    0x9F1A: _t("Terminal Country Code", "n"),
    0x9F1C: _t("Terminal Identification", "an"),
    0x9F1F: _t("Track 1 Discretionary Data", "ans", True),
    0x9F20: _t("Track 2 Discretionary Data", "cn", True),
    0x9F21: _t("Transaction Time", "n"),
    0x9F26: _t("Application Cryptogram"),
    0x9F27: _t("Cryptogram Information Data"),
    0x9F32: _t("Issuer Public Key Exponent"),
    0x9F33: _t("Terminal Capabilities"),
    0x9F34: _t("CVM Results"),
    0x9F35: _t("Terminal Type", "n"),
    0x9F36: _t("Application Transaction Counter (ATC)"),
    0x9F37: _t("Unpredictable Number"),
    0x9F38: _t("Processing Options Data Object List (PDOL)"),
    0x9F40: _t("Additional Terminal Capabilities"),
    0x9F42: _t("Application Currency Code", "n"),
    0x9F44: _t("Application Currency Exponent", "n"),
    0x9F46: _t("ICC Public Key Certificate"),
    0x9F47: _t("ICC Public Key Exponent"),
    0x9F48: _t("ICC Public Key Remainder"),
    0x9F49: _t("DDOL"),
    0x9F4A: _t("Static Data Authentication Tag List"),
    0x9F4E: _t("Merchant Name and Location", "ans"),
    0x9F66: _t("Terminal Transaction Qualifiers (TTQ)"),
    0x9F6B: _t("Track 2 Data (contactless)", "b", True),
    0x9F6C: _t("Card Transaction Qualifiers"),
    0x9F6E: _t("Form Factor Indicator"),
    0x9F7C: _t("Customer Exclusive Data"),
}

# PCI DSS, the one home of this rule: the cardholder's data (PAN, track data and their discretionary data, name)
# and PIN data. CardData alone carries the PAN; none of these is stored, logged, shown or sent in DE55, and the
# sandbox acquirer refuses a DE55 that holds one.
SECRET_TAGS = frozenset(t for t, d in TAGS.items() if d.sensitive)


def describe(tag: int) -> str:
    t = TAGS.get(tag)
    return f"{tag_name(tag)} {t.name}" if t else f"{tag_name(tag)} (unknown tag)"


def fmt(tag: int) -> str:
    t = TAGS.get(tag)
    return t.fmt if t else "b"
