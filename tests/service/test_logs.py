"""Logs: journald format, structured fields, and the card-number scrubber (property-tested)."""

from __future__ import annotations

import io
import logging
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.logs import PanScrubber, find_pans, scrub_pans, setup_logging
from drivers.pan import luhn_check_digit, luhn_valid


@st.composite
def pans(draw) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    pan = body + luhn_check_digit(body)
    assert luhn_valid(pan)
    return pan


def grouped(pan: str, sep: str, sizes: list[int]) -> str:
    out, i = [], 0
    for size in sizes:
        if i >= len(pan):
            break
        out.append(pan[i : i + size])
        i += size
    if i < len(pan):
        out.append(pan[i:])
    return sep.join(out)


# Surrounding text: anything, digits included (a PAN glued to other digits must still go).
_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)
# Next to a grouped PAN: anything that does not run into its first/last group.
_word_edge = st.text(st.characters(blacklist_categories=["Cs", "Nd"]), max_size=20).map(lambda s: s + " ")


def digits_only(s: str) -> str:
    return re.sub(r"\D", "", s)


@settings(max_examples=400, deadline=None)
@given(pans(), _text, _text)
def test_no_plain_pan_survives_whatever_surrounds_it(pan, before, after):
    out = scrub_pans(before + pan + after)
    assert pan not in out
    assert pan not in re.sub(r"[ -]", "", out)


_layouts = st.sampled_from([[4, 4, 4, 4, 3], [4, 6, 5], [4, 6, 4], [4, 4, 4, 4, 4]])


@settings(max_examples=400, deadline=None)
@given(pans(), st.sampled_from([" ", "-"]), _layouts, _word_edge, _word_edge)
def test_no_grouped_pan_survives(pan, sep, sizes, before, after):
    text = before.lstrip() + grouped(pan, sep, sizes) + " " + after
    out = scrub_pans(text)
    assert pan not in re.sub(r"[ -]", "", out)


@settings(max_examples=300, deadline=None)
@given(st.lists(pans() | st.integers(0, 10**12 - 1).map(str), min_size=1, max_size=5),
       st.sampled_from([" ", "-", ", ", "", "/"]))
@example(["999999999998", "4483", "0000000000000"], " ")  # the kept last 4 met the digits beside them
def test_nothing_luhn_valid_is_left_after_scrubbing(parts, sep):
    out = scrub_pans(sep.join(parts))
    assert find_pans(out) == []
    for run in re.findall(r"\d{13,}", out):  # plain runs left: none is a card number
        windows = (run[i:j] for i in range(len(run)) for j in range(i + 13, min(i + 19, len(run)) + 1))
        assert not any(luhn_valid(w) for w in windows)
    assert scrub_pans(out) == out


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**12 - 1), st.integers(0, 99_999_999_999))
def test_amounts_and_bill_references_survive(amount, ref):
    reference = f"{ref:012d}"
    for text in (
        f"paid {amount} DZD for bill {reference}",
        f"bills {reference} {reference} {reference}",
        f"bills {reference}, {reference}",
        f"amount={amount} ref={reference} at 2026-11-22T09:14:03+01:00",
        f"{amount:,}".replace(",", " ") + " DA",
    ):
        assert scrub_pans(text) == text


def test_known_forms():
    assert scrub_pans("card 4111 1111 1111 1111 refused") == "card 411111******1111 refused"
    assert scrub_pans("amex 3782-822463-10005.") == "amex 378282*****0005."
    assert scrub_pans("pan=6280580000001239;") == "pan=628058******1239;"
    plain = "receipt ORAN-07-G2-000123, bill 410726095518"
    assert scrub_pans(plain) == plain


def test_filter_scrubs_args_exceptions_and_fields():
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream, journald=False)
    log = logging.getLogger("agent.test")
    try:
        raise ValueError("bad card 4111111111111111")
    except ValueError:
        fields = {"payment_id": "p-1", "state": "authorizing"}
        log.exception("read %s failed", "4111-1111-1111-1111", extra=fields)
    log.info("track %s", "6280580000001239", extra={"bill_reference": "4111111111111111"})
    text = stream.getvalue()
    assert "4111111111111111" not in digits_only(text.replace("411111******1111", ""))
    assert "6280580000001239" not in text
    assert "read 411111******1111 failed payment_id=p-1 state=authorizing" in text
    assert "ValueError: bad card 411111******1111" in text


def test_journald_format_has_priorities_and_no_timestamp():
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream, journald=True)
    log = logging.getLogger("agent.sync")
    log.debug("d")
    log.info("uploaded", extra={"payment_id": "0b7e", "state": "uploaded"})
    log.warning("w")
    log.error("e")
    log.critical("c")
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.error("boom", exc_info=True)
    lines = stream.getvalue().splitlines()
    assert lines[:5] == [
        "<7>agent.sync: d",
        "<6>agent.sync: uploaded payment_id=0b7e state=uploaded",
        "<4>agent.sync: w",
        "<3>agent.sync: e",
        "<2>agent.sync: c",
    ]
    assert all(line.startswith("<3>") for line in lines[5:])  # each traceback line keeps its priority
    assert lines[-1] == "<3>ZeroDivisionError: division by zero"
    assert not re.search(r"\d{4}-\d\d-\d\d", stream.getvalue())


def test_console_format_has_a_timestamp():
    stream = io.StringIO()
    setup_logging("INFO", stream=stream, journald=False)
    logging.getLogger("agent.x").warning("link down", extra={"state": "unknown"})
    pattern = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d WARNING agent.x: link down state=unknown\n"
    assert re.fullmatch(pattern, stream.getvalue())


def test_scrubber_never_drops_a_record_with_a_broken_format():
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "pan %d", ("4111111111111111",), None)
    assert PanScrubber().filter(rec)
    assert "4111111111111111" not in rec.getMessage()
