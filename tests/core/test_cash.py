"""The cash rules: stamp duty at its edges (slice boundaries, minimum, maximum, rounding), change due, the
drawer count, and the `[cash]` section's refusals. Integers only; totals add up to the cent."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.cash import basket_due, change_due, check_count, count_total, stamp_duty
from agent.errors import InvalidAmount
from config.cash import DEFAULT_DENOMINATIONS, CashConfig, StampDutyConfig

amounts = st.integers(min_value=0, max_value=10**10)


@st.composite
def rules(draw: st.DrawFn) -> StampDutyConfig:
    minimum = draw(st.integers(0, 10**6))
    maximum = draw(st.one_of(st.just(0), st.integers(minimum, 10**8)))
    return StampDutyConfig(
        enabled=True,
        per_slice=draw(st.integers(1, 10**5)),
        slice=draw(st.integers(1, 10**7)),
        minimum=minimum,
        maximum=maximum,
        rounding=draw(st.sampled_from(["up", "down", "nearest"])),
        rounding_unit=draw(st.sampled_from([1, 5, 10, 100, 1000])),
    )


def test_off_by_default_and_no_figure_built_in() -> None:
    rule = CashConfig().stamp_duty
    assert not rule.enabled and rule.per_slice == 0 and rule.minimum == 0
    assert stamp_duty(345600, "cash", rule) == 0


@given(amount=st.integers(1, 10**10), rule=rules())
def test_duty_is_within_minimum_and_maximum(amount: int, rule: StampDutyConfig) -> None:
    duty = stamp_duty(amount, "cash", rule)
    assert isinstance(duty, int)
    assert duty >= rule.minimum
    if rule.maximum:
        assert duty <= rule.maximum


@given(k=st.integers(1, 10**4), per=st.integers(1, 10**4), size=st.integers(1, 10**6))
@example(k=1, per=100, size=10000)
def test_slice_boundaries_no_rounding(k: int, per: int, size: int) -> None:
    """Exactly k slices costs k; one minor unit more starts slice k+1; one less is still k."""
    rule = StampDutyConfig(enabled=True, per_slice=per, slice=size)
    assert stamp_duty(k * size, "cash", rule) == k * per
    assert stamp_duty(k * size + 1, "cash", rule) == (k + 1) * per
    if k * size - 1 > (k - 1) * size:
        assert stamp_duty(k * size - 1, "cash", rule) == k * per


@given(a=amounts, b=amounts, rule=rules())
def test_duty_never_falls_as_the_amount_rises(a: int, b: int, rule: StampDutyConfig) -> None:
    lo, hi = sorted((a, b))
    assert stamp_duty(lo, "cash", rule) <= stamp_duty(hi, "cash", rule) or lo == 0


@given(amount=st.integers(1, 10**10), rule=rules())
def test_rounding_lands_on_the_unit_unless_a_bound_holds_it(amount: int, rule: StampDutyConfig) -> None:
    duty = stamp_duty(amount, "cash", rule)
    raw = -(-amount // rule.slice) * rule.per_slice
    if duty not in (rule.minimum, rule.maximum):
        assert duty % rule.rounding_unit == 0
        assert abs(duty - raw) < rule.rounding_unit
        if rule.rounding == "up":
            assert duty >= raw
        if rule.rounding == "down":
            assert duty <= raw


def test_minimum_and_maximum_edges() -> None:
    rule = StampDutyConfig(enabled=True, per_slice=100, slice=10000, minimum=500, maximum=250000)
    assert stamp_duty(1, "cash", rule) == 500  # one slice is 1,00 DA: the 5,00 DA minimum
    assert stamp_duty(50000, "cash", rule) == 500  # 5 slices = the minimum exactly
    assert stamp_duty(50001, "cash", rule) == 600
    assert stamp_duty(250000 * 100, "cash", rule) == 250000  # the maximum exactly
    assert stamp_duty(250000 * 100 + 1, "cash", rule) == 250000  # held at it
    assert stamp_duty(0, "cash", rule) == 0  # nothing paid, nothing due


def test_only_the_listed_methods() -> None:
    rule = StampDutyConfig(enabled=True, per_slice=100, slice=10000, methods=["cash"])
    assert stamp_duty(10000, "card_terminal", rule) == 0
    with pytest.raises(ValidationError, match="cash only"):
        StampDutyConfig(enabled=True, per_slice=100, slice=10000, methods=["cash", "card_terminal"])
    assert stamp_duty(10000, "cash", rule) == 100


@given(items=st.lists(st.integers(1, 10**9), min_size=1, max_size=10), rule=rules())
def test_basket_totals_add_up_to_the_cent(items: list[int], rule: StampDutyConfig) -> None:
    due = basket_due(items, "cash", rule)
    assert due.subtotal == sum(items)
    assert due.duty == sum(stamp_duty(a, "cash", rule) for a in items)
    assert due.total == due.subtotal + due.duty
    assert len(due.duties) == len(items)


@given(due=amounts, extra=amounts)
def test_change_due(due: int, extra: int) -> None:
    assert change_due(due + extra, due) == extra
    if due:
        with pytest.raises(InvalidAmount, match="less than"):
            change_due(due - 1, due)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "100"])
def test_hostile_amounts_are_one_typed_error(bad: object) -> None:
    rule = StampDutyConfig(enabled=True, per_slice=1, slice=1)
    with pytest.raises(InvalidAmount):
        stamp_duty(bad, "cash", rule)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount):
        change_due(bad, 0)  # type: ignore[arg-type]


@given(counts=st.dictionaries(st.sampled_from(DEFAULT_DENOMINATIONS["DZD"]), st.integers(0, 1000)))
def test_count_total(counts: dict[int, int]) -> None:
    sheet = check_count(counts, DEFAULT_DENOMINATIONS["DZD"])
    assert list(sheet) == DEFAULT_DENOMINATIONS["DZD"]
    assert count_total(sheet) == sum(d * n for d, n in counts.items())


@pytest.mark.parametrize("counts", [{12345: 1}, {100: -1}, {100: 10**9}, {100: 1.0}])
def test_count_refuses_what_is_not_a_drawer(counts: dict[int, object]) -> None:
    with pytest.raises(InvalidAmount):
        check_count(counts, DEFAULT_DENOMINATIONS["DZD"])  # type: ignore[arg-type]


def test_config_refusals_name_the_key() -> None:
    with pytest.raises(ValidationError, match="maximum"):
        StampDutyConfig(enabled=True, per_slice=1, minimum=10, maximum=5)
    with pytest.raises(ValidationError, match="charges nothing"):
        StampDutyConfig(enabled=True)
    with pytest.raises(ValidationError, match="slice"):
        StampDutyConfig(slice=0)
    with pytest.raises(ValidationError, match="listed twice"):
        CashConfig(denominations={"DZD": [100, 100]})
    with pytest.raises(ValidationError, match="ISO 4217"):
        CashConfig(denominations={"dzd": [100]})
    with pytest.raises(ValidationError, match="positive"):
        CashConfig(denominations={"DZD": [0]})
    assert CashConfig(denominations={"DZD": [100, 20000]}).denominations == {"DZD": [20000, 100]}


@pytest.mark.parametrize(("key", "bad"), [("per_slice", True), ("per_slice", "100"), ("minimum", 5.0),
                                          ("rounding_unit", True), ("slice", "10000")])
def test_the_stamp_duty_rule_is_strict(key: str, bad: object) -> None:
    # Review 5, finding 14: true -> 1 and "100" -> 100 were taken silently; money is never guessed.
    with pytest.raises(ValidationError, match=key):
        StampDutyConfig.model_validate({key: bad})
    with pytest.raises(ValidationError, match=key):
        CashConfig.model_validate({"stamp_duty": {key: bad}})
