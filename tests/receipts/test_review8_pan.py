"""Review 8, finding 12: a card number split by no-break or thin spaces, dots or zero-width characters, or
written in another script's digits, is found (drivers.pan.find_pans) and so refused by the print queue."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.printing import PrintQueue, PrintQueueError
from drivers.pan import find_pans, luhn_valid, scrub_pans

PAN = "6280580000001239"
ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
SEPARATORS = [" ", "-", ".", "\u00a0", "\u202f", "\u200b", "\u2009", "\u200d", "\ufeff"]


def _grouped(pan: str, sep: str) -> str:
    return sep.join(pan[i:i + 4] for i in range(0, len(pan), 4))


@pytest.mark.parametrize("text", [
    _grouped(PAN, "."), _grouped(PAN, "\u00a0"), _grouped(PAN, "\u202f"), "\u200b".join(PAN),
    PAN.translate(ARABIC), PAN.translate(FULLWIDTH), _grouped(PAN.translate(ARABIC), "\u00a0"),
])
def test_the_print_queue_refuses_a_split_card_number(tmp_path: Path, text: str) -> None:
    q = PrintQueue.open(tmp_path)
    with pytest.raises(PrintQueueError, match="card number"):
        q.add("N-1", {"bills": [{"reference": "R", "amount": 1, "customer": f"M. X {text}"}]})
    assert q.count() == 0
    q.close()


@st.composite
def pans(draw: st.DrawFn) -> str:
    body = draw(st.text("0123456789", min_size=15, max_size=15))
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


@given(pans(), st.sampled_from(SEPARATORS), st.sampled_from([None, ARABIC, FULLWIDTH]),
       st.text(alphabet="abc XYZ:", max_size=10), st.text(alphabet="abc XYZ:", max_size=10))
@settings(deadline=None)
def test_any_written_form_of_a_card_number_is_found_and_scrubbed(
    pan: str, sep: str, digits: dict[int, int] | None, before: str, after: str
) -> None:
    written = _grouped(pan.translate(digits) if digits else pan, sep)
    text = f"{before} {written} {after}"
    spans = find_pans(text)
    assert spans, text
    start, end = spans[0]
    assert text.index(written) <= start < end <= text.index(written) + len(written)
    scrubbed = scrub_pans(text)
    assert not find_pans(scrubbed), scrubbed
    assert scrubbed.startswith(before) and scrubbed.endswith(after)


@pytest.mark.parametrize("text", ["v1.2.3 at 12.30", "1 234 567.89 DZD", "2026-11-30T22:24:57.123456Z",
                                  "127.0.0.1:9100"])
def test_ordinary_dotted_numbers_are_not_card_numbers(text: str) -> None:
    assert find_pans(text) == [] and scrub_pans(text) == text
