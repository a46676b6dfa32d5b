"""The billing API's answers as typed models (shared/contracts/billing-api.md v1.1): the agent's network edge.

Every answer the client takes from the server is validated into one of these before anyone uses it:

>>> body = {"reference": "410726095518", "amount_due": 345600, "currency": "DZD", "status": "unpaid",
...         "version": 7, "note": "a field the contract does not define"}
>>> bill = Bill.model_validate(body)              # raises pydantic.ValidationError
>>> bill.to_api()["amount_due"], "note" in bill.to_api()    # only the contract's fields: what the cache keeps
(345600, False)
>>> from pydantic import ValidationError
>>> try:
...     Bill.model_validate(dict(body, version=2**63))
... except ValidationError as exc:
...     print(where(exc, "bills[3]"))
bills[3].version: integer above 2**63-1

Strict: no int from a string, a bool is not an int, no float for money; money and versions are integers in
0..2**63-1 (SQLite's INTEGER); every string is length-bounded. Unknown fields are ignored (the contract lets the
server add fields) and never kept: a model holds only what the contract defines.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

INT63_MAX = 2**63 - 1
MAX_ITEMS = 5000  # the feed's largest `limit`
PAN_MASKED = r"^[0-9]{0,6}[*Xx#]{3,}[0-9]{0,4}$"  # the YAML's PanMasked (8..23 characters)
DATE_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"

Int63 = Annotated[int, Field(ge=0, le=INT63_MAX)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


def _none_to_empty(v: Any) -> Any:
    return "" if v is None else v


def _truncate(limit: int) -> Any:
    # Human text from the server (error messages) is cut rather than refused: its length is not a fault.
    return BeforeValidator(lambda v: v[:limit] if isinstance(v, str) else v)


# Bounded strings (Text64: at most 64 characters); Opt*: absent or null becomes "".
Text4 = Annotated[str, StringConstraints(max_length=4)]
Text7 = Annotated[str, StringConstraints(max_length=7)]
Text16 = Annotated[str, StringConstraints(max_length=16)]
Text32 = Annotated[str, StringConstraints(max_length=32)]
Text64 = Annotated[str, StringConstraints(max_length=64)]
Text128 = Annotated[str, StringConstraints(max_length=128)]
Text200 = Annotated[str, StringConstraints(max_length=200)]
Text1024 = Annotated[str, StringConstraints(max_length=1024)]
OptText32 = Annotated[str, BeforeValidator(_none_to_empty), StringConstraints(max_length=32)]
OptText200 = Annotated[str, BeforeValidator(_none_to_empty), StringConstraints(max_length=200)]


class _Answer(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


def _or_none(pattern: str, max_length: int) -> Any:
    # A value the contract leaves open that we could only misuse (a masked number that is not one may hold a
    # full PAN; a receipt number longer than any we issue): dropped, not refused, so the answer still counts.
    rx = re.compile(pattern)
    return BeforeValidator(lambda v: v if not isinstance(v, str) or (len(v) <= max_length and rx.fullmatch(v))
                           else None)


# Strings the contract leaves unbounded in answers: cut to a length we keep, never refused for their length.
Cut16 = Annotated[str, _truncate(16)]
Cut64 = Annotated[str, _truncate(64)]
Cut200 = Annotated[str, _truncate(200)]
Cut500 = Annotated[str, _truncate(500)]


class ErrorDetail(_Answer):
    """A batch result's `error`: the YAML asks a string code and a message, nothing more."""

    code: Cut200
    message: Cut500


class ErrorCode(_Answer):
    code: Annotated[str, _truncate(200), StringConstraints(pattern=r"^[a-z0-9_]+$")]
    message: Cut500


class ErrorBody(_Answer):
    """`{"error": {"code": "snake_case", "message": ...}}` of every 4xx, as strict as the YAML's Error."""

    error: ErrorCode


class Bill(_Answer):
    reference: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    amount_due: Int63
    currency: Currency
    status: Literal["unpaid", "partially_paid", "paid", "cancelled"]
    version: Int63
    contract: OptText200 = ""
    customer_name: OptText200 = ""
    service: OptText32 = ""
    period: OptText200 = ""
    issued_on: OptText32 = ""
    due_on: OptText32 = ""
    agency_id: OptText200 = ""
    customer_id: OptText200 = ""

    def to_api(self) -> dict[str, Any]:
        """The bill as the contract's JSON object: every contract field, nothing else."""
        return self.model_dump()


class BillList(_Answer):
    """`GET /v1/customers/{id}/bills`; items are validated one by one (a bad one is skipped)."""

    items: Annotated[list[Any], Field(max_length=MAX_ITEMS)]


class BillPage(_Answer):
    """`GET /v1/bills` (the delta feed); items are validated one by one (a bad one is skipped)."""

    items: Annotated[list[Any], Field(max_length=MAX_ITEMS)]
    next_cursor: Annotated[str, StringConstraints(max_length=1000)]


class BatchResult(_Answer):
    # null or a long string (the YAML allows both) never matches a payment sent: the client refuses the batch
    payment_id: Cut64 | None
    status: Literal["accepted", "duplicate", "rejected"]
    receipt_number: Cut200 | None = None
    error: ErrorDetail | None = None
    notice: Cut64 | None = None


class BatchResults(_Answer):
    """`POST /v1/payments/batch`: one result per payment sent, same order (checked by the client)."""

    results: Annotated[list[BatchResult], Field(max_length=500)]


class CardRecord(_Answer):
    """A recorded payment's `card`: the YAML leaves it an open object, so nothing in it refuses the record."""

    scheme: Cut64 | None = None
    pan_masked: Annotated[str | None, _or_none(PAN_MASKED, 23)] = None
    pan_token: Annotated[str | None, _or_none(r"([0-9a-fA-F]{2})+", 128)] = None
    expiry: Cut16 | None = None
    aid: Cut64 | None = None
    entry_mode: Cut16 | None = None


class AuthorizationRecord(_Answer):
    code: Cut200 | None = None
    reference: Cut200 | None = None
    approved_at: Cut64 | None = None


class PaymentRecord(_Answer):
    """`GET /v1/payments/{id}`: the payment as the server recorded it."""

    payment_id: Cut64  # longer is no id of ours: cut, it matches none
    status: Literal["recorded"]
    transaction_id: Cut64 | None = None
    bill_reference: Cut200 | None = None
    amount: Int63
    currency: Currency
    method: Literal["card_terminal", "card_reader", "cash"]
    card: CardRecord | None = None
    authorization: AuthorizationRecord | None = None
    stamp_duty: Int63 | None = None
    agency_id: Cut200 | None = None
    terminal_id: Cut200 | None = None
    cashier_id: Cut200 | None = None
    receipt_number: Cut200 | None = None
    captured_at: Cut64 | None = None
    captured_offline: bool | None = None


class AuthorizationAnswer(_Answer):
    """`POST /v1/authorizations` and `GET /v1/authorizations/{id}`."""

    approved: bool
    response_code: Cut16  # shown to the cashier (code 51...): any string the YAML allows, cut
    code: Cut200 | None = None
    reference: Cut200 | None = None
    emv: Annotated[str | None, _or_none(r"([0-9a-fA-F]{2})*", 4096)] = None  # only hex TLV goes to a card
    approved_at: Cut64 | None = None
    payment_id: Cut200 | None = None


class ReversalAnswer(_Answer):
    """`POST /v1/authorizations/{id}/reversal` [1.1]: 200 `{"payment_id": ..., "reversed": true}` every time
    (idempotent); a 404 (no approval) is an ApiError, not an answer.

    >>> ReversalAnswer.model_validate({"payment_id": "p1", "reversed": True}).reversed
    True
    """

    payment_id: Cut200
    reversed: Literal[True]


class HeartbeatAnswer(_Answer):
    """`POST /v1/terminals/{id}/heartbeat`. `last_receipt_number`: the highest receipt the server holds for
    this terminal (optional, the server's view of the journal's high-water mark)."""

    server_time: Annotated[str, StringConstraints(pattern=DATE_TIME)]
    # Longer than any receipt number we issue: it cannot be ahead of our journal, and must not be cut into one.
    last_receipt_number: Annotated[str | None, _or_none(r"(?s).*", 200)] = None


def _loc(loc: tuple[int | str, ...], root: str) -> str:
    out = root
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _reason(err: Any) -> str:
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    if kind == "less_than_equal" and ctx.get("le") == INT63_MAX:
        return "integer above 2**63-1"
    if kind == "missing":
        return "missing"
    if kind == "literal_error":
        return "not one of " + str(ctx.get("expected", "the allowed values"))
    if kind in ("string_too_long", "too_long"):
        return "too long"
    # pydantic's text never repeats the input value (which could be anything the server sent).
    return str(err.get("msg", kind)).replace("Input should", "should")


def where(exc: ValidationError, root: str = "") -> str:
    """The first fault of a validation error as one line naming the field: ``bills[3].version: ...``."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return f"{root or 'body'}: invalid"
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{_loc(tuple(first.get('loc', ())), root)}: {_reason(first)}{more}"
