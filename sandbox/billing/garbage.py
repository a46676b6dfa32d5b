"""The catalogue of broken answers: what a sick server, a proxy or a captive portal may send back.

Each kind builds one broken HTTP answer from the request and, when the handler ran, the real answer. The
fault injector (``faults.py``) picks a kind when the ``garbage`` fault fires; ``GARBAGE_KINDS`` lists them
all and docs/sandbox-server.md describes each. Kinds whose name starts with ``batch_``, ``feed_``, ``bill_``,
``heartbeat_`` or ``auth_`` apply only to those endpoints; the others apply to any ``/v1`` request.

>>> "batch_error_string" in GARBAGE_KINDS and len(GARBAGE_KINDS) >= 25
True
>>> applies("feed_version_huge", "GET", "/v1/bills"), applies("feed_version_huge", "GET", "/v1/bills/1")
(True, False)
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

GARBAGE_BODY = b"\x00\x1f\x8b<<truncated upstream answer>>\xff\xfe"
PORTAL_BODY = (
    b"<!DOCTYPE html><html><head><title>Portail</title></head>"
    b"<body><h1>Connexion requise</h1><p>Veuillez vous identifier.</p></body></html>"
)
BAD_GATEWAY_BODY = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
FAKE_BILL = {
    "reference": "000000000000", "contract": "00-000-00000", "customer_name": "Z. Garbage", "service": "water",
    "period": "2026-T3", "issued_on": "2026-10-05", "due_on": "2026-11-15", "amount_due": 100,
    "currency": "DZD", "status": "unpaid", "agency_id": "ORAN-07", "customer_id": "C-0000000", "version": 1,
}  # fmt: skip
DRIP_STEP = 0.25  # seconds between two writes of slow_drip: far below any per-read timeout


@dataclass
class Broken:
    """One broken answer. ``chunks`` (streamed, ``delay`` s apart) replaces ``body`` when set; ``length``
    is the Content-Length to declare (None: none, the body is sent chunked); ``abort`` cuts the connection
    after the last chunk instead of finishing the answer."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: Iterator[bytes] | None = None
    delay: float = 0.0
    length: int | None = -1  # -1: len(body)
    abort: bool = False


@dataclass
class Context:
    """What a kind may look at: the request, and the real answer when the handler ran (else None)."""

    method: str
    path: str
    request: Any  # the request's JSON, None when it had none or it was not JSON
    status: int | None
    raw: bytes | None
    rng: random.Random
    drip_seconds: float = 20.0
    huge_bytes: int = 8 * 1024 * 1024

    def answer(self) -> Any:
        """The real answer's JSON; for a batch the handler did not run, the answer it would have given."""
        if self.raw is not None:
            try:
                return json.loads(self.raw)
            except ValueError:
                pass
        payments = self.request.get("payments") if isinstance(self.request, dict) else None
        if isinstance(payments, list):
            return {"results": [_accepted(p) for p in payments]}
        return {}

    def results(self) -> list[Any]:
        """The batch results of the answer (synthesised from the request when the answer has none)."""
        found = self.answer()
        if isinstance(found, dict) and isinstance(found.get("results"), list):
            return list(found["results"])
        payments = self.request.get("payments") if isinstance(self.request, dict) else None
        return [_accepted(p) for p in payments] if isinstance(payments, list) else []

    def raw_answer(self) -> bytes:
        return self.raw if self.raw is not None else _dumps(self.answer())


def _accepted(p: Any) -> dict[str, Any]:
    pid = p.get("payment_id") if isinstance(p, dict) else None
    receipt = p.get("receipt_number") if isinstance(p, dict) else None
    return {"payment_id": pid, "status": "accepted", "receipt_number": receipt}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _json(value: Any, status: int = 200) -> Broken:
    return Broken(status, _dumps(value))


def _map(value: Any, leaf: Callable[[Any], Any], top: bool = True) -> Any:
    """``value`` with ``leaf`` applied to every scalar (keys kept)."""
    if isinstance(value, dict):
        return {k: _map(v, leaf, False) for k, v in value.items()}
    if isinstance(value, list):
        return [_map(v, leaf, False) for v in value]
    return leaf(value)


def _ints(f: Callable[[int], Any]) -> Callable[[Any], Any]:
    return lambda v: f(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _containers_to_strings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("[object Object]" if isinstance(v, dict | list) else v) for k, v in value.items()}
    return value


def _bills(value: Any, change: Callable[[dict[str, Any]], Any]) -> Any:
    """Apply ``change`` to every bill of a bill answer (one bill, or ``items``); a feed with none gets one."""
    if isinstance(value, dict) and isinstance(value.get("items"), list):
        if not value["items"]:
            value["items"] = [dict(FAKE_BILL)]
        for b in value["items"]:
            if isinstance(b, dict):
                change(b)
    elif isinstance(value, dict):
        change(value if "reference" in value else value.setdefault("bill", dict(FAKE_BILL)))
    return value


def _drip(ctx: Context) -> Broken:
    steps = max(1, int(ctx.drip_seconds / DRIP_STEP))
    body = ctx.raw_answer()
    # Valid JSON in the end (leading spaces are allowed): only the pace is hostile.
    chunks = iter([b" "] * (steps - 1) + [body])
    return Broken(200, chunks=chunks, delay=DRIP_STEP, length=steps - 1 + len(body))


def _huge(ctx: Context) -> Broken:
    def chunks() -> Iterator[bytes]:
        sent, piece = 0, b"x" * 65536
        yield b'{"results":[],"pad":"'
        while sent < ctx.huge_bytes:
            yield piece
            sent += len(piece)
        yield b'"}'

    return Broken(200, chunks=chunks(), length=None)


def _short_read(ctx: Context) -> Broken:
    body = ctx.raw_answer()
    return Broken(200, chunks=iter([body[: max(1, len(body) // 2)]]), length=len(body) + 10, abort=True)


def _truncated(ctx: Context) -> Broken:
    body = ctx.raw_answer()
    return Broken(200, body[: max(1, len(body) // 2)] if len(body) > 1 else b'{"')


def _batch_reordered(ctx: Context) -> Broken:
    results = ctx.results()
    if len(results) > 1:
        results.reverse()
    else:  # one payment: a result for another payment first, then ours
        results = [{"payment_id": str(uuid.UUID(int=ctx.rng.getrandbits(128))), "status": "accepted"}, *results]
    return _json({"results": results})


def _set(d: dict[str, Any], **changes: Any) -> dict[str, Any]:
    d.update(changes)
    return d


def _bill_objects(b: dict[str, Any]) -> None:
    b["customer_name"] = {"first": "B.", "last": str(b.get("customer_name"))}
    b["period"] = ["2026", "T3"]


def _bill_extra(b: dict[str, Any]) -> None:
    b.update({"loyalty": {"points": [1, 2, 3], "tier": {"name": "gold"}}, "notes": "x" * 300, "amount_eur": 12.5})


_GENERIC: dict[str, Callable[[Context], Broken]] = {
    "not_json": lambda c: Broken(200, GARBAGE_BODY),
    "html_portal": lambda c: Broken(200, PORTAL_BODY, "text/html; charset=utf-8"),
    "text_plain_json": lambda c: Broken(200, c.raw_answer(), "text/plain"),
    "empty_body": lambda c: Broken(200, b""),
    "truncated_json": _truncated,
    "short_read": _short_read,
    "deep_json": lambda c: Broken(200, b"[" * 100_000 + b"]" * 100_000),
    "huge_body": _huge,
    "slow_drip": _drip,
    "retry_after_huge": lambda c: Broken(
        503,
        _dumps({"error": {"code": "unavailable", "message": "come back later"}}),
        headers=[(b"retry-after", b"999999")],
    ),
    "retry_after_date": lambda c: Broken(
        429,
        _dumps({"error": {"code": "too_many_requests", "message": "slow down"}}),
        headers=[(b"retry-after", b"Fri, 31 Dec 9999 23:59:59 GMT")],
    ),
    "retry_after_garbage": lambda c: Broken(
        503, _dumps({"error": {"code": "unavailable", "message": "later"}}), headers=[(b"retry-after", b"soon; -5")]
    ),
    "redirect": lambda c: Broken(
        302, b"", None, headers=[(b"location", b"http://127.0.0.1:9/moved" + c.path.encode("ascii", "replace"))]
    ),
    "redirect_loop": lambda c: Broken(307, b"", None, headers=[(b"location", c.path.encode("ascii", "replace"))]),
    "no_content_204": lambda c: Broken(204, b"", None, length=None),
    "teapot_418": lambda c: _json({"error": {"code": "teapot", "message": "I'm a teapot"}}, 418),
    "ok_error_body": lambda c: _json({"error": {"code": "internal_error", "message": "something broke"}}),
    "null_body": lambda c: Broken(200, b"null"),
    "array_body": lambda c: _json([c.answer()]),
    "nulls_everywhere": lambda c: _json(_map(c.answer(), lambda v: None)),
    "negative_numbers": lambda c: _json(_map(c.answer(), _ints(lambda v: -abs(v) - 1))),
    "huge_numbers": lambda c: _json(_map(c.answer(), _ints(lambda v: 2**70 + v))),
    "float_numbers": lambda c: _json(_map(c.answer(), _ints(lambda v: v + 0.5))),
    "nan_numbers": lambda c: Broken(200, json.dumps(_map(c.answer(), _ints(lambda v: float("nan")))).encode()),
    "strings_for_objects": lambda c: _json(_containers_to_strings(c.answer())),
    "objects_for_strings": lambda c: _json(_map(c.answer(), lambda v: {"value": v} if isinstance(v, str) else v)),
    "invalid_utf8": lambda c: Broken(200, b'{"results":[],"items":[],"server_time":"\xc3\x28\xff\xfe"}'),
    "utf16_json": lambda c: Broken(200, c.raw_answer().decode().encode("utf-16"), "application/json; charset=utf-16"),
    "content_encoding_lie": lambda c: Broken(200, c.raw_answer(), headers=[(b"content-encoding", b"gzip")]),
    "bad_gateway_html": lambda c: Broken(502, BAD_GATEWAY_BODY, "text/html"),
    "unknown_2xx": lambda c: Broken(299, c.raw_answer()),
}

_SPECIFIC: dict[str, Callable[[Context], Broken]] = {
    "batch_error_string": lambda c: _json(
        {
            "results": [
                _set(dict(r), status="rejected", error="idempotency_conflict") if isinstance(r, dict) else r
                for r in c.results()
            ]
        }
    ),
    "batch_short": lambda c: _json({"results": c.results()[:-1]}),
    "batch_long": lambda c: _json(
        {"results": [*c.results(), {"payment_id": str(uuid.UUID(int=c.rng.getrandbits(128))), "status": "accepted"}]}
    ),
    "batch_reordered": _batch_reordered,
    "batch_unknown_status": lambda c: _json(
        {"results": [_set(dict(r), status="maybe_later") if isinstance(r, dict) else r for r in c.results()]}
    ),
    "batch_results_object": lambda c: _json(
        {"results": {str(r.get("payment_id")): r for r in c.results() if isinstance(r, dict)}}
    ),
    "batch_wrong_ids": lambda c: _json(
        {
            "results": [
                _set(dict(r), payment_id=str(uuid.UUID(int=c.rng.getrandbits(128)))) if isinstance(r, dict) else r
                for r in c.results()
            ]
        }
    ),
    "feed_version_huge": lambda c: _json(_bills(c.answer(), lambda b: _set(b, version=2**70))),
    "feed_cursor_not_string": lambda c: _json(_set(c.answer(), next_cursor={"position": 12})),
    "bill_extra_fields": lambda c: _json(_bills(c.answer(), _bill_extra)),
    "bill_object_for_string": lambda c: _json(_bills(c.answer(), _bill_objects)),
    "heartbeat_bad_time": lambda c: _json({"server_time": "yesterday at noon", "last_receipt_number": None}),
    "heartbeat_receipt_object": lambda c: _json(
        {"server_time": "2026-11-22T09:14:05+01:00", "last_receipt_number": {"n": 123}}
    ),
    "auth_approved_string": lambda c: _json(_set(c.answer(), approved="yes", response_code=0)),
    # A whole-request refusal in the contract's own shape, for every batch: a client must wait it out and
    # never take it as the payments' fault (rejected is final).
    "batch_contract_4xx": lambda c: _json({"error": {"code": "invalid_json", "message": "body: not well formed"}}, 400),
}

_BUILDERS = {**_GENERIC, **_SPECIFIC}
GARBAGE_KINDS: tuple[str, ...] = tuple(_BUILDERS)


def applies(kind: str, method: str, path: str) -> bool:
    """Whether ``kind`` makes sense for this request (endpoint-specific kinds only on their endpoint)."""
    if kind.startswith("batch_"):
        return method == "POST" and path == "/v1/payments/batch"
    if kind.startswith("feed_"):
        return method == "GET" and path == "/v1/bills"
    if kind.startswith("bill_"):
        return method == "GET" and (
            path.startswith("/v1/bills") or (path.startswith("/v1/customers/") and path.endswith("/bills"))
        )
    if kind.startswith("heartbeat_"):
        return method == "POST" and path.startswith("/v1/terminals/") and path.endswith("/heartbeat")
    if kind.startswith("auth_"):
        return path.startswith("/v1/authorizations")
    return kind in _GENERIC


def build(kind: str, ctx: Context) -> Broken:
    """The broken answer of ``kind`` for this request."""
    return _BUILDERS[kind](ctx)


def claims_success(b: Broken, request: Any) -> bool:
    """Whether ``b`` is a well-formed "accepted"/"duplicate" for every payment of the batch ``request``: an
    answer no client can tell from the truth, so a server that gives it must have recorded the batch (some kinds
    change nothing in a batch answer, which has no number to spoil).

    >>> req = {"payments": [{"payment_id": "p1"}]}
    >>> claims_success(Broken(200, b'{"results": [{"payment_id": "p1", "status": "accepted"}]}'), req)
    True
    >>> claims_success(Broken(200, b'{"results": [{"payment_id": "p1", "status": "accepted "}]}'), req)
    False
    """
    if b.status not in (200, 202) or b.abort or b.chunks is not None:
        return False
    try:
        answer = json.loads(b.body)
    except (ValueError, RecursionError):
        return False
    payments = request.get("payments") if isinstance(request, dict) else None
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(payments, list) or not isinstance(results, list) or len(payments) != len(results):
        return False
    return all(
        isinstance(p, dict) and isinstance(r, dict) and r.get("payment_id") == p.get("payment_id")
        and r.get("status") in ("accepted", "duplicate")
        for p, r in zip(payments, results, strict=True)
    )
