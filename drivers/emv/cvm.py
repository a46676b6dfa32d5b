"""Cardholder verification (EMV Book 3 10.5): the CVM list (8E) walked rule by rule, as Book 3 says.

A rule whose condition is not satisfied (or not understood) is skipped. A satisfied rule that the terminal cannot
perform (online PIN; a PIN with no PIN pad; enciphered offline PIN) or that fails moves on to the next rule only
when its "apply succeeding CVM" bit (0x40) is set; otherwise cardholder verification has failed. The PIN itself is
performed by a :class:`PinPerformer` (the reader's PIN pad: ``drivers.emv.pinpad``); it never passes through us.

>>> rules = bytes(8) + bytes.fromhex("4203" "1E03" "1F03")   # online PIN (we cannot), signature, no CVM
>>> ctx = CvmContext(amount=1000, currency_matches=True, capabilities=bytes.fromhex("E0A8C8"), pin_pad=False)
>>> out = run(rules, ctx, lambda method: PinResult.OK)
>>> out.results.hex().upper(), out.method, out.signature
('1E0300', 'signature', True)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.emv import tvr as T

# Methods (byte 1, b6-b1)
FAIL = 0x00
PLAIN_PIN = 0x01
ONLINE_PIN = 0x02
PLAIN_PIN_SIGNATURE = 0x03
ENC_PIN = 0x04
ENC_PIN_SIGNATURE = 0x05
SIGNATURE = 0x1E
NO_CVM = 0x1F
APPLY_NEXT = 0x40
KNOWN = {FAIL, PLAIN_PIN, ONLINE_PIN, PLAIN_PIN_SIGNATURE, ENC_PIN, ENC_PIN_SIGNATURE, SIGNATURE, NO_CVM}
NAMES = {FAIL: "fail", PLAIN_PIN: "offline_pin", ONLINE_PIN: "online_pin", PLAIN_PIN_SIGNATURE: "offline_pin_signature",
         ENC_PIN: "enciphered_pin", ENC_PIN_SIGNATURE: "enciphered_pin_signature", SIGNATURE: "signature",
         NO_CVM: "no_cvm"}

# Terminal capabilities (9F33) byte 2 (Book 4 A2)
CAP_PLAIN_PIN = 0x80
CAP_ONLINE_PIN = 0x40
CAP_SIGNATURE = 0x20
CAP_ENC_PIN = 0x10
CAP_NO_CVM = 0x08

RESULT_UNKNOWN, RESULT_FAILED, RESULT_OK = 0x00, 0x01, 0x02
NOT_PERFORMED = bytes.fromhex("3F0000")


class PinResult(enum.Enum):
    OK = "ok"
    WRONG = "wrong"  # 63Cx: x tries left (a new entry may follow)
    BLOCKED = "blocked"  # 6983/6984, or the try counter at 0
    NOT_ENTERED = "not_entered"  # the customer cancelled or the pad timed out
    PAD_FAILED = "pad_failed"  # the PIN pad did not work


PinPerformer = Callable[[int], PinResult]


@dataclass(frozen=True)
class CvmContext:
    amount: int  # minor units, transaction currency
    currency_matches: bool  # 9F42 == 5F2A: the X/Y conditions apply only then
    capabilities: bytes  # 9F33
    pin_pad: bool  # the reader has a working PIN pad (PC/SC part 10 FEATURE_VERIFY_PIN_DIRECT)
    unattended_cash: bool = False
    manual_cash: bool = False
    cashback: bool = False


@dataclass
class CvmOutcome:
    results: bytes  # 9F34
    method: str  # what was performed: "offline_pin", "signature", "no_cvm", "none" (failed), ...
    signature: bool = False  # the receipt needs the cardholder's signature
    pin: PinResult | None = None
    tvr_bits: list[T.Bit] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.results[2:3] != bytes([RESULT_FAILED])


def parse(cvm_list: bytes) -> tuple[int, int, list[tuple[int, int]]]:
    """(X, Y, [(code, condition), ...]); a list of odd length keeps its whole rules (the last byte is ignored)."""
    if len(cvm_list) < 8:
        raise ValueError(f"CVM list (8E) of {len(cvm_list)} bytes: shorter than its amounts X and Y")
    x = int.from_bytes(cvm_list[:4], "big")
    y = int.from_bytes(cvm_list[4:8], "big")
    body = cvm_list[8:]
    return x, y, [(body[i], body[i + 1]) for i in range(0, len(body) - 1, 2)]


def condition_met(cond: int, method: int, x: int, y: int, ctx: CvmContext) -> bool | None:
    """Book 3 table 40; None when the condition code is not understood (the rule is skipped)."""
    if cond == 0x00:
        return True
    if cond == 0x01:
        return ctx.unattended_cash
    if cond == 0x02:
        return not (ctx.unattended_cash or ctx.manual_cash or ctx.cashback)
    if cond == 0x03:
        return supported(method, ctx)
    if cond == 0x04:
        return ctx.manual_cash
    if cond == 0x05:
        return ctx.cashback
    if 0x06 <= cond <= 0x09:
        if not ctx.currency_matches:
            return False
        limit = x if cond in (0x06, 0x07) else y
        return ctx.amount < limit if cond in (0x06, 0x08) else ctx.amount > limit
    return None


def supported(method: int, ctx: CvmContext) -> bool:
    cap = ctx.capabilities[1] if len(ctx.capabilities) > 1 else 0
    if method in (PLAIN_PIN, PLAIN_PIN_SIGNATURE):
        pin_ok = bool(cap & CAP_PLAIN_PIN) and ctx.pin_pad
        return pin_ok and (method == PLAIN_PIN or bool(cap & CAP_SIGNATURE))
    if method == ONLINE_PIN:
        return bool(cap & CAP_ONLINE_PIN)
    if method in (ENC_PIN, ENC_PIN_SIGNATURE):
        return False  # enciphered offline PIN: not implemented by this terminal (9F33 never claims it here)
    if method == SIGNATURE:
        return bool(cap & CAP_SIGNATURE)
    if method == NO_CVM:
        return bool(cap & CAP_NO_CVM)
    return method == FAIL


def run(cvm_list: bytes | None, ctx: CvmContext, perform_pin: PinPerformer, tvr: T.Tvr | None = None) -> CvmOutcome:
    """Walk the list; set TVR bits on ``tvr`` (when given) and return the CVM results (9F34)."""
    bits: list[T.Bit] = []

    def done(out: CvmOutcome) -> CvmOutcome:
        out.tvr_bits = bits
        if tvr is not None:
            for b in bits:
                tvr.set(b)
        return out

    if not cvm_list:
        bits.append(T.ICC_DATA_MISSING)
        return done(CvmOutcome(NOT_PERFORMED, "none"))
    try:
        x, y, rules = parse(cvm_list)
    except ValueError:
        bits.append(T.ICC_DATA_MISSING)
        return done(CvmOutcome(NOT_PERFORMED, "none"))
    last_failed: tuple[int, int] | None = None
    pin_seen: PinResult | None = None
    for code, cond in rules:
        method = code & 0x3F
        met = condition_met(cond, method, x, y, ctx)
        if not met:
            continue
        ok: bool
        if method not in KNOWN:
            bits.append(T.UNRECOGNISED_CVM)
            ok = False
        elif not supported(method, ctx):
            if method in (PLAIN_PIN, PLAIN_PIN_SIGNATURE, ONLINE_PIN, ENC_PIN, ENC_PIN_SIGNATURE) and not ctx.pin_pad:
                bits.append(T.PIN_PAD_MISSING)
            ok = False
        elif method == FAIL:
            last_failed = (code, cond)
            ok = False
        elif method in (PLAIN_PIN, PLAIN_PIN_SIGNATURE):
            pin_seen = perform_pin(method)
            if pin_seen is PinResult.OK:
                signature = method == PLAIN_PIN_SIGNATURE
                return done(CvmOutcome(bytes([code, cond, RESULT_UNKNOWN if signature else RESULT_OK]),
                                       NAMES[method], signature=signature, pin=pin_seen))
            if pin_seen is PinResult.BLOCKED:
                bits.append(T.PIN_TRY_LIMIT_EXCEEDED)
            elif pin_seen is PinResult.NOT_ENTERED:
                bits.append(T.PIN_NOT_ENTERED)
            elif pin_seen is PinResult.PAD_FAILED:
                bits.append(T.PIN_PAD_MISSING)
            last_failed = (code, cond)
            ok = False
        elif method == SIGNATURE:
            return done(CvmOutcome(bytes([code, cond, RESULT_UNKNOWN]), "signature", signature=True, pin=pin_seen))
        elif method == NO_CVM:
            return done(CvmOutcome(bytes([code, cond, RESULT_OK]), "no_cvm", pin=pin_seen))
        else:  # pragma: no cover - every supported method is handled above
            ok = False
        if not ok and not code & APPLY_NEXT:
            break
    bits.append(T.CVM_FAILED)
    results = bytes([*last_failed, RESULT_FAILED]) if last_failed else bytes.fromhex("3F0001")
    return done(CvmOutcome(results, "none", pin=pin_seen))
