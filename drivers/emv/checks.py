"""What `guichet doctor` asks of the EMV setup: does the reader have a PIN pad, and does every scheme rule have
a CA public key for offline data authentication.

    ca_key_gaps(config)            # [] or ["VISA: no CA public key for RID A000000003 ([[emv.ca_keys]])", ...]
    reader_pin_pad("Virtual PCD 00 00")   # True / False / None (cannot tell: pcscd down, reader gone)

>>> import config
>>> ca_key_gaps(config.validate({}))[0]
'VISA: no CA public key for RID A000000003 ([[emv.ca_keys]]): offline data authentication is not performed'
"""

from __future__ import annotations

from typing import Any

from drivers.emv.pinpad import CM_IOCTL_GET_FEATURE_REQUEST, FEATURE_VERIFY_PIN_DIRECT, PinPadError, parse_features


def ca_key_gaps(config: Any) -> list[str]:
    """One line per scheme rule RID without any configured CA key (rules without AIDs say nothing)."""
    have = {k.rid for k in config.emv.ca_keys}
    out: list[str] = []
    for rule in config.cards.schemes:
        for rid in sorted({aid[:10].upper() for aid in rule.aids}):
            if rid not in have:
                out.append(f"{rule.name}: no CA public key for RID {rid} ([[emv.ca_keys]]): offline data "
                           "authentication is not performed")
    return out


def reader_pin_pad(reader: str) -> bool | None:
    """Whether ``reader`` lists FEATURE_VERIFY_PIN_DIRECT (PC/SC part 10), asked in direct mode (no card needed);
    None when it cannot be asked."""
    try:
        from smartcard import scard
    except ImportError:
        return None
    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hr != scard.SCARD_S_SUCCESS:
        return None
    try:
        hr, card, _proto = scard.SCardConnect(ctx, reader, scard.SCARD_SHARE_DIRECT, 0)
        if hr != scard.SCARD_S_SUCCESS:
            return None
        try:
            hr, resp = scard.SCardControl(card, CM_IOCTL_GET_FEATURE_REQUEST, [])
            if hr != scard.SCARD_S_SUCCESS:
                return False  # a reader (or driver, like vpcd's) without part 10 features
            try:
                return FEATURE_VERIFY_PIN_DIRECT in parse_features(bytes(resp))
            except PinPadError:
                return False
        finally:
            scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
    finally:
        scard.SCardReleaseContext(ctx)
