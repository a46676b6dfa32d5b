"""Scheme detection from the config's ``cards.schemes`` rules: AID first, then BIN prefix, then label; for a
TPE's or a ticket's masked card number, the BIN rules on the digits it shows (``scheme_for``).

The CIB and Edahabia AIDs and BIN ranges come from the acquirer, so they live in the config, not here.

>>> from config.schema import SchemeRule
>>> rules = [SchemeRule(name="CIB", aids=["A0000009990101"], bins=["999101"], labels=["CIB"]),
...          SchemeRule(name="VISA", aids=["A0000000031010"], bins=["4"])]
>>> detect_scheme(rules, aid="A0000000031010", pan="9991010000000001", label="")
'VISA'
>>> detect_scheme(rules, aid="A0000000999999", pan="4111111111111111", label="")
'VISA'
>>> detect_scheme(rules, aid="", pan="5500000000000004", label="cib test")
'CIB'
>>> detect_scheme(rules, aid="", pan="5500000000000004", label="")
'OTHER'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from config.schema import SchemeRule

OTHER = "OTHER"


def aid_matches(rule_aid: str, aid: str) -> bool:
    """Exact AID or the card's AID extending the rule's (RID + PIX prefix, EMV partial selection)."""
    return bool(aid) and aid.upper().startswith(rule_aid.upper())


def bin_matches(rule_bin: str, pan: str) -> bool:
    """``"4"`` is a prefix; ``"51-55"`` a range over the first ``len("51")`` digits."""
    if not pan:
        return False
    if "-" in rule_bin:
        lo, hi = rule_bin.split("-", 1)
        width = max(len(lo), len(hi))
        head = pan[:width]
        return len(head) == width and int(lo.ljust(width, "0")) <= int(head) <= int(hi.ljust(width, "9"))
    return pan.startswith(rule_bin)


def label_matches(rule_label: str, *labels: str) -> bool:
    want = rule_label.strip().casefold()
    return bool(want) and any(want in (lab or "").casefold() for lab in labels)


def scheme_for(pan_masked: str | None, rules: Sequence[SchemeRule]) -> str:
    """The scheme whose BIN rule matches the visible first digits of a masked PAN, else "OTHER".

    >>> scheme_for("628058******1239", [SchemeRule(name="EDAHABIA", bins=["628058"])])
    'EDAHABIA'
    >>> scheme_for("512345******0000", [SchemeRule(name="MASTERCARD", bins=["51-55"])])
    'MASTERCARD'
    """
    if not pan_masked:
        return OTHER
    shown = re.match(r"\d*", pan_masked)
    digits = shown.group() if shown else ""  # a rule needing more digits than are shown cannot match
    for rule in rules:
        if any(bin_matches(b, digits) for b in rule.bins):
            return str(rule.name)
    return OTHER


def rule_for_aid(rules: Sequence[SchemeRule], aid: str) -> SchemeRule | None:
    """The first rule naming `aid` (or a prefix of it), or None: what the selected application is, before any
    record is read (the reader's TTQ) and the first pass of :func:`detect_scheme`."""
    return next((r for r in rules if any(aid_matches(a, aid) for a in r.aids)), None)


def detect_scheme(rules: Sequence[SchemeRule], *, aid: str, pan: str, label: str, preferred_name: str = "") -> str:
    """The first rule matching by AID, else by BIN, else by label; ``"OTHER"`` if none."""
    by_aid = rule_for_aid(rules, aid)
    if by_aid is not None:
        return by_aid.name
    for rule in rules:
        if any(bin_matches(b, pan) for b in rule.bins):
            return rule.name
    for rule in rules:
        if any(label_matches(lab, label, preferred_name) for lab in rule.labels):
            return rule.name
    return OTHER
