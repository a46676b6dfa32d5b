"""The sandbox billing server: FastAPI app implementing the billing API contract (shared/contracts/billing-api.md v1.1).

>>> from sandbox.billing.store import Store
>>> app = create_app(Store(":memory:"), token="t")
>>> sorted(r.path for r in app.routes if r.path.startswith("/v1/"))[:2]
['/v1/authorizations', '/v1/authorizations/{payment_id}']

Run it with ``guichet sandbox serve`` or ``sandbox.billing.server.SandboxServer``. ``GET /openapi.json`` serves
the contract (contract/billing-api.yaml) without a token. Besides the contract it has test-only endpoints
under ``/_sandbox/`` that need the ADMIN token: ``GET|PUT /_sandbox/faults``, ``GET /_sandbox/payments``,
``GET /_sandbox/rejections``, ``GET|POST /_sandbox/bills``, ``GET /_sandbox/authorizations``,
``GET /_sandbox/heartbeats``, ``GET /_sandbox/receipts``, ``GET|PUT /_sandbox/issuer``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from collections import deque
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import contract
from config.money import CURRENCIES
from drivers.pan import mask_pan
from sandbox.billing.acquirer import (
    Acquirer,
    ChipData,
    ChipDataError,
    IssuerBehaviour,
    check_against_request,
    decide,
    declined,
    parse_chip_data,
)
from sandbox.billing.auth import Auth, AuthError, Caller
from sandbox.billing.faults import FaultInjector, FaultSettings, run_with_faults
from sandbox.billing.limits import MAX_BODY, BadJson, parse_json
from sandbox.billing.store import (
    ENTRY_MODES,
    MAX_MONEY,
    Store,
    _is_hex,
    _is_int,
    _is_text,
    is_rfc3339,
    unknown_payment_field,
)

MAX_BATCH = 500
FEED_MAX = 5000
FEED_DEFAULT = 1000
AUTH_FIELDS = frozenset({"payment_id", "amount", "currency", "card", "emv"})
AUTH_CARD_FIELDS = frozenset({"pan", "expiry", "scheme", "aid", "pan_sequence", "entry_mode"})
HEARTBEAT_FIELDS = frozenset(
    {"agent_version", "queue_depth", "oldest_pending_at", "devices", "last_receipt_number"}
)  # fmt: skip
DEVICE_FIELDS = frozenset({"kind", "name", "state"})
MAX_DEVICES = 64
REVERSAL_REASONS = ("card_declined_after_approval", "card_removed", "cancelled", "timeout")
RECEIPT_FIELDS = frozenset({"channel", "to", "language"})
LANGUAGES = ("fr", "ar", "en")
# One address, whole (\A..\Z: no trailing newline), ASCII: no comma, quote or angle bracket that an SMTP
# header would read as a second recipient. The agent's rule (agent.outbox.parse_address) is stricter.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"\A[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.-]{{1,64}}@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}\Z", re.ASCII)
_PHONE = re.compile(r"\A\+[1-9][0-9]{7,14}\Z", re.ASCII)
_EXPIRY = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
# PANs that always decline with response code 51 (besides any --decline-pan): Luhn-valid test numbers.
DEFAULT_DECLINE_PANS = frozenset({"6280580000000058", "4111111111110055"})
CRYPTOGRAM_FAILED = "N7"  # the response code of an ARQC that does not verify (contract: N7 or 82)


class ApiError(Exception):
    """Answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def encode_cursor(agency: str, position: int, kind: str = "c1") -> str:
    raw = json.dumps([agency, position], separators=(",", ":")).encode()
    return f"{kind}." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, agency: str, kind: str = "c1", field: str = "updated_after") -> int:
    """The position in an opaque cursor this server gave for ``agency`` (or a terminal's day); 400 otherwise."""
    try:
        if not cursor.startswith(f"{kind}.") or len(cursor) > 1000:
            raise ValueError
        data = cursor[len(kind) + 1 :]
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        who, position = json.loads(raw)
        if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position <= MAX_MONEY:
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid_cursor", f"{field}: not a cursor this server gave") from None
    if who != agency:
        raise ApiError(400, "invalid_cursor", f"{field}: cursor belongs to {str(who)[:64]}, not {agency}")
    return position


class SandboxApp(FastAPI):
    """FastAPI with the fault injector wrapped around everything (it needs uvicorn's own ``send``)."""

    sandbox_store: Store
    faults: FaultInjector
    auth: Auth
    acquirer: Acquirer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await run_with_faults(self.faults, scope, receive, send, super().__call__)


def create_app(
    store: Store,
    *,
    token: str | None = None,
    terminals: Mapping[str, tuple[str, str]] | None = None,
    agency: str = "ORAN-07",
    admin_token: str | None = None,
    faults: FaultInjector | None = None,
    decline_pans: frozenset[str] | set[str] | tuple[str, ...] = (),
    issuer: IssuerBehaviour | None = None,
    issuer_pans: tuple[str, ...] = (),
) -> SandboxApp:
    """Build the app around an open ``Store``.

    ``terminals`` maps a terminal id to ``(token, agency_id)`` (contract 1.1: a token is one terminal's).
    ``token`` is a shared token standing for whichever terminal ``X-Terminal-Id`` names, in ``agency`` (the
    contract 1.0 way, kept for tests and the demo). ``admin_token`` opens ``/_sandbox/`` (random when not
    given: ``app.auth.admin_token``). ``decline_pans`` are PANs that /v1/authorizations always declines ("51").
    ``issuer`` sets the sandbox issuer's behaviour (CVN per scheme, bad ARPC, scripts; ``PUT /_sandbox/issuer``
    changes it later); ``issuer_pans`` are cards whose offline TCs it can verify besides the virtual cards'.
    """
    declining = DEFAULT_DECLINE_PANS | set(decline_pans)
    heartbeats: deque[dict[str, Any]] = deque(maxlen=200)
    auth = Auth(terminals, shared_token=token, shared_agency=agency,
                admin_token=admin_token or secrets.token_urlsafe(16))  # fmt: skip
    spec_body = json.dumps(contract.openapi(), ensure_ascii=False, separators=(",", ":")).encode()

    async def authenticate(request: Request) -> None:
        path = request.url.path
        if path == "/openapi.json":
            return
        try:
            request.state.caller = auth.identify(
                request.headers.get("authorization", ""),
                request.headers.get("x-terminal-id"),
                admin_path=path.startswith("/_sandbox/"),
            )
        except AuthError as e:
            headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
            raise ApiError(e.status, e.code, e.message, headers) from None

    app = SandboxApp(
        title="guichet sandbox billing server",
        version="1.1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # FastAPI's generated description would not be the contract: /openapi.json is
        dependencies=[Depends(authenticate)],
    )
    app.sandbox_store = store
    app.faults = faults or FaultInjector()
    app.auth = auth
    acquirer = Acquirer(issuer, pans=issuer_pans, store=store)
    app.acquirer = acquirer

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, f"{request.method} {request.url.path[:200]}: {exc.detail}")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> Response:
        # Never a plain-text 500: the contract's error body, the exception's type only (no internals).
        return error_response(500, "internal_error", f"sandbox: {type(exc).__name__}")

    def caller(request: Request) -> Caller:
        found: Caller = request.state.caller
        return found

    async def read_json(request: Request) -> Any:
        """The request's JSON: 413 past MAX_BODY (checked while reading), 400 invalid_json when malformed."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise ApiError(413, "body_too_large", f"body: {declared} bytes, at most {MAX_BODY}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise ApiError(413, "body_too_large", f"body: more than {MAX_BODY} bytes")
            chunks.append(chunk)
        try:
            return parse_json(b"".join(chunks))
        except BadJson as e:
            raise ApiError(400, "invalid_json", str(e)) from None

    def check_query(request: Request, allowed: set[str]) -> None:
        for key in request.query_params:
            if key not in allowed:
                raise ApiError(400, "unknown_field", f"{key[:64]}: unknown query parameter")

    def require_object(body: Any, allowed: frozenset[str], where: str = "body") -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", f"{where}: must be a JSON object")
        for key in body:
            if key not in allowed:
                raise ApiError(400, "unknown_field", f"{where}.{key[:64]}: unknown field")
        return body

    def own_terminal(request: Request, terminal_id: str) -> Caller:
        who = caller(request)
        if terminal_id != who.terminal_id:
            raise ApiError(403, "forbidden", f"terminal {terminal_id[:64]}: not this token's terminal")
        return who

    def parse_limit(request: Request) -> int:
        text = request.query_params.get("limit", str(FEED_DEFAULT))
        if not text.isdigit() or not 1 <= int(text) <= FEED_MAX:
            raise ApiError(400, "invalid_limit", f"limit: must be an integer from 1 to {FEED_MAX}")
        return int(text)

    # -- the contract ----------------------------------------------------------------------------------

    @app.get("/openapi.json")
    async def openapi_json() -> Response:
        return Response(spec_body, media_type="application/json")

    # -- bills -----------------------------------------------------------------------------------------

    @app.get("/v1/bills/{reference}")
    async def get_bill(reference: str, request: Request) -> Response:
        check_query(request, set())
        bill = store.get_bill(reference)
        if bill is None or bill["agency_id"] != caller(request).agency_id:  # another agency's: not ours to show
            raise ApiError(404, "bill_not_found", f"no bill with reference {reference[:64]}")
        return json_response(bill)

    @app.get("/v1/customers/{customer_id}/bills")
    async def customer_bills(customer_id: str, request: Request) -> Response:
        check_query(request, set())
        agency_id = caller(request).agency_id
        items = store.customer_bills(customer_id, agency_id)
        if items is None:
            raise ApiError(404, "customer_not_found", f"no customer {customer_id[:64]}")
        return json_response({"items": items})

    @app.get("/v1/bills")
    async def bills_feed(request: Request) -> Response:
        check_query(request, {"agency", "updated_after", "limit"})
        q = request.query_params
        agency_id = q.get("agency", "")
        if not agency_id:
            raise ApiError(400, "invalid_request", "agency: required query parameter")
        if agency_id != caller(request).agency_id:
            raise ApiError(403, "forbidden", f"agency {agency_id[:64]}: not this terminal's agency")
        limit = parse_limit(request)
        after = decode_cursor(q["updated_after"], agency_id) if "updated_after" in q else 0
        items, position = store.feed(agency_id, after=after, limit=limit)
        return json_response({"items": items, "next_cursor": encode_cursor(agency_id, position)})

    # -- payments --------------------------------------------------------------------------------------

    @app.post("/v1/payments/batch")
    async def payments_batch(request: Request) -> Response:
        check_query(request, set())
        who = caller(request)
        body = require_object(await read_json(request), frozenset({"payments"}))
        payments = body.get("payments")
        if not isinstance(payments, list):
            raise ApiError(400, "invalid_request", "payments: required list of payments")
        if not payments:
            raise ApiError(400, "batch_empty", "payments: at least 1 payment is required")
        if len(payments) > MAX_BATCH:
            raise ApiError(400, "batch_too_large", f"payments: {len(payments)} items, at most {MAX_BATCH} per batch")
        for i, p in enumerate(payments):
            if isinstance(p, dict):
                bad = unknown_payment_field(p, f"payments[{i}]")
                if bad:
                    raise ApiError(400, "unknown_field", f"{bad[:120]}: unknown field")
        for i, p in enumerate(payments):
            tid = p.get("terminal_id") if isinstance(p, dict) else None
            if isinstance(tid, str) and tid != who.terminal_id:
                raise ApiError(403, "forbidden", f"payments[{i}].terminal_id: {tid[:64]} is not this token's terminal")
        # Off the event loop: a batch's TC checks run 3DES; other requests go on meanwhile.
        results = await run_in_threadpool(store.record_batch, payments, acquirer.check_payment)
        return json_response({"results": results})

    @app.get("/v1/payments/{payment_id}")
    async def get_payment(payment_id: str, request: Request) -> Response:
        check_query(request, set())
        payment = store.get_payment(payment_id, caller(request).terminal_id)
        if payment is None:
            raise ApiError(404, "payment_not_found", f"no payment {payment_id[:64]}")
        return json_response(payment)

    # -- authorizations ------------------------------------------------------------------------------

    @app.post("/v1/authorizations")
    async def authorize(request: Request) -> Response:
        check_query(request, set())
        who = caller(request)
        key = request.headers.get("idempotency-key", "").strip()
        if not key:
            raise ApiError(400, "missing_idempotency_key", "the Idempotency-Key header is required")
        body = require_object(await read_json(request), AUTH_FIELDS)
        card = require_object(body.get("card"), AUTH_CARD_FIELDS, "body.card")
        payment_id = body.get("payment_id")
        if not isinstance(payment_id, str) or not payment_id or len(payment_id) > 200:
            raise ApiError(400, "invalid_request", "payment_id: must be a non-empty string")
        if key != payment_id:
            raise ApiError(400, "idempotency_key_mismatch", "Idempotency-Key: must equal payment_id")
        amount = body.get("amount")
        if not _is_int(amount) or not 0 < amount <= MAX_MONEY:
            raise ApiError(400, "invalid_request", "amount: must be an integer > 0 in minor units, below 2**63")
        currency = body.get("currency")
        if not isinstance(currency, str) or currency not in CURRENCIES:
            raise ApiError(400, "invalid_request", f"currency: must be one of {', '.join(CURRENCIES)}")
        pan = card.get("pan")
        if not isinstance(pan, str) or not pan.isascii() or not pan.isdigit() or not 12 <= len(pan) <= 19:
            raise ApiError(400, "invalid_request", "card.pan: must be 12 to 19 digits")
        expiry = card.get("expiry")
        if expiry is not None and (not isinstance(expiry, str) or not _EXPIRY.match(expiry)):
            raise ApiError(400, "invalid_request", "card.expiry: must be YYYY-MM")
        scheme = card.get("scheme")
        if scheme is not None and not _is_text(scheme, 40):
            raise ApiError(400, "invalid_request", "card.scheme: must be a non-empty string or null")
        aid = card.get("aid")
        if aid is not None and (not _is_hex(aid, 32) or len(aid) < 10):
            raise ApiError(400, "invalid_request", "card.aid: must be 5 to 16 bytes of hex or null")
        seq = card.get("pan_sequence")
        if seq is not None and (not isinstance(seq, str) or not re.fullmatch(r"[0-9]{1,3}", seq)):
            raise ApiError(400, "invalid_request", "card.pan_sequence: must be 1 to 3 digits or null")
        mode = card.get("entry_mode")
        if mode is not None and mode not in ENTRY_MODES[:2]:
            raise ApiError(400, "invalid_request", "card.entry_mode: must be chip, contactless or null")
        emv = body.get("emv")
        chip: ChipData | None = None
        if emv is not None:  # contract 1.1: the first GENERATE AC's chip data; null for a card read alone
            try:
                chip = parse_chip_data(emv)
                check_against_request(chip, amount, currency)
            except ChipDataError as e:
                raise ApiError(400, "invalid_request", str(e)) from None
            if chip.cryptogram_type != "ARQC":
                raise ApiError(400, "invalid_request",
                               f"emv: tag 9F27 is {chip.cid:02X} ({chip.cryptogram_type}): only an ARQC goes online")

        owner = store.authorization_terminal(payment_id)
        if owner is not None and owner != who.terminal_id:
            raise ApiError(403, "forbidden", "Idempotency-Key: used by another terminal")
        psn = int(seq) if seq is not None else None
        card_id = acquirer.card_id(pan, chip.pan_sequence if chip and chip.pan_sequence is not None else (psn or 0))
        emv_hash = None if emv is None else hashlib.sha256(emv.upper().encode()).hexdigest()
        first = store.authorization_request(payment_id)
        if first is not None and (first[:3] != (amount, currency, mask_pan(pan))
                                  or first[3] not in (None, card_id) or first[4] != emv_hash):
            # Contract: a replay must be the same request (same card, same chip data).
            raise ApiError(
                409, "idempotency_conflict", "Idempotency-Key: already used for another amount, currency, card or emv"
            )
        stored = store.get_authorization(payment_id)
        record = None
        if stored is not None:
            response = stored
        elif chip is None:
            if mode in ("chip", "contactless") and acquirer.behaviour.require_chip_data:
                # A chip card read without its cryptogram: nothing the issuer could check.
                response = declined(payment_id, CRYPTOGRAM_FAILED)
                record = {"verified": False, "reason": f"emv: required for entry_mode {mode}"}
            else:
                response = decide(payment_id, amount, pan, expiry, declining)
        else:
            # Off the event loop (3DES, the card book); the card is learnt only if its ARQC verifies.
            verification = await run_in_threadpool(acquirer.authorize_arqc, pan, scheme, chip, psn, payment_id)
            record = verification.record(chip)
            if verification.ok:
                response = decide(payment_id, amount, pan, expiry, declining)
                response["emv"] = acquirer.response_emv(pan, chip, verification, response["response_code"],
                                                        amount, psn)
            else:
                response = declined(payment_id, CRYPTOGRAM_FAILED)
        saved = store.save_authorization(
            payment_id, response, amount=amount, currency=currency, pan_masked=mask_pan(pan),
            terminal_id=who.terminal_id, chip=record, card_id=card_id, emv_hash=emv_hash,
        )  # fmt: skip
        return json_response(saved)

    @app.get("/v1/authorizations/{payment_id}")
    async def get_authorization(payment_id: str, request: Request) -> Response:
        check_query(request, set())
        found = store.get_authorization(payment_id, caller(request).terminal_id)
        if found is None:
            raise ApiError(404, "authorization_not_found", f"no authorization for payment {payment_id[:64]}")
        return json_response(found)

    @app.post("/v1/authorizations/{payment_id}/reversal")
    async def reversal(payment_id: str, request: Request) -> Response:
        check_query(request, set())
        body = require_object(await read_json(request), frozenset({"reason"}))
        reason = body.get("reason")
        if reason not in REVERSAL_REASONS:
            raise ApiError(400, "invalid_request", f"reason: must be one of {', '.join(REVERSAL_REASONS)}")
        if not store.reverse_authorization(payment_id, caller(request).terminal_id, reason):
            raise ApiError(404, "authorization_not_found", f"no approval for payment {payment_id[:64]}")
        return json_response({"payment_id": payment_id, "reversed": True})

    # -- receipts --------------------------------------------------------------------------------------

    @app.post("/v1/receipts/{receipt_number}/send")
    async def send_receipt(receipt_number: str, request: Request) -> Response:
        check_query(request, set())
        who = caller(request)
        body = require_object(await read_json(request), RECEIPT_FIELDS)
        channel, to, language = body.get("channel"), body.get("to"), body.get("language")
        if channel not in ("email", "sms"):
            raise ApiError(400, "invalid_request", "channel: must be email or sms")
        if not isinstance(to, str) or not to or len(to) > 254:
            raise ApiError(400, "invalid_request", "to: must be an e-mail address or a phone number")
        if "language" in body and language not in LANGUAGES:
            raise ApiError(400, "invalid_request", f"language: must be one of {', '.join(LANGUAGES)}")
        if not (_EMAIL if channel == "email" else _PHONE).match(to):
            what = "an e-mail address" if channel == "email" else "an international phone number (+213...)"
            raise ApiError(400, "invalid_address", f"to: not {what}")
        if not store.receipt_known(receipt_number, who.terminal_id):
            raise ApiError(404, "receipt_not_found", f"no payment of receipt {receipt_number[:64]} recorded yet")
        store.queue_receipt(receipt_number, channel, to, language, who.terminal_id)
        # Really sent when the server was given a relay/gateway (sandbox.billing.sender); the answer does not wait
        sender = getattr(request.app.state, "receipt_sender", None)
        if sender is not None:
            from sandbox.billing.sender import message_for, transaction_payments

            payments = transaction_payments(store, receipt_number, who.terminal_id)
            sender.submit(message_for(receipt_number, channel, to, language, payments))
        return json_response({"receipt_number": receipt_number, "status": "queued"}, 202)

    # -- terminals ---------------------------------------------------------------------------------------

    @app.get("/v1/terminals/{terminal_id}/payments")
    async def business_day(terminal_id: str, request: Request) -> Response:
        check_query(request, {"business_day", "cursor", "limit"})
        own_terminal(request, terminal_id)
        q = request.query_params
        day = q.get("business_day", "")
        try:
            if len(day) != 10:
                raise ValueError
            date.fromisoformat(day)
        except ValueError:
            raise ApiError(400, "invalid_request", "business_day: required date YYYY-MM-DD") from None
        limit = parse_limit(request)
        after = decode_cursor(q["cursor"], f"{terminal_id}/{day}", "d1", "cursor") if "cursor" in q else 0
        items, more, totals = store.business_day(terminal_id, day, after=after, limit=limit)
        cursor = None if more is None else encode_cursor(f"{terminal_id}/{day}", more, "d1")
        return json_response({"items": items, "next_cursor": cursor, "totals": totals})

    @app.post("/v1/terminals/{terminal_id}/heartbeat")
    async def heartbeat(terminal_id: str, request: Request) -> Response:
        check_query(request, set())
        own_terminal(request, terminal_id)
        body = require_object(await read_json(request), HEARTBEAT_FIELDS)
        check_heartbeat(body)
        server_time = datetime.now(UTC) + timedelta(seconds=app.faults.clock_offset)
        heartbeats.append(
            {
                "terminal_id": terminal_id,
                "header_terminal_id": request.headers.get("x-terminal-id"),
                "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "body": body,
            }
        )
        mark = store.note_receipt(terminal_id, body.get("last_receipt_number"))
        return json_response({"server_time": server_time.isoformat(timespec="seconds"), "last_receipt_number": mark})

    def check_heartbeat(body: dict[str, Any]) -> None:
        version = body.get("agent_version")
        if "agent_version" in body and (not isinstance(version, str) or len(version) > 200):
            raise ApiError(400, "invalid_request", "agent_version: must be a string")
        depth = body.get("queue_depth", 0)
        if not _is_int(depth) or not 0 <= depth <= MAX_MONEY:
            raise ApiError(400, "invalid_request", "queue_depth: must be an integer >= 0")
        oldest = body.get("oldest_pending_at")
        if oldest is not None and not is_rfc3339(oldest):
            raise ApiError(400, "invalid_request", "oldest_pending_at: must be an RFC 3339 time with an offset or null")
        devices = body.get("devices", [])
        if not isinstance(devices, list) or len(devices) > MAX_DEVICES:
            raise ApiError(400, "invalid_request", f"devices: must be a list of at most {MAX_DEVICES}")
        for i, d in enumerate(devices):
            d = require_object(d, DEVICE_FIELDS, f"devices[{i}]")
            kind = d.get("kind")
            if not isinstance(kind, str) or len(kind) > 40:
                raise ApiError(400, "invalid_request", f"devices[{i}].kind: must be a string")
            for key in ("name", "state"):
                v = d.get(key)
                if v is not None and (not isinstance(v, str) or len(v) > 200):
                    raise ApiError(400, "invalid_request", f"devices[{i}].{key}: must be a string or null")
        last = body.get("last_receipt_number")
        if last is not None and not _is_text(last):
            raise ApiError(400, "invalid_request", "last_receipt_number: must be a receipt number or null")

    # -- test-only endpoints (admin token) ---------------------------------------------------------------

    @app.get("/_sandbox/faults")
    async def get_faults() -> Response:
        return json_response(app.faults.status())

    @app.put("/_sandbox/faults")
    async def put_faults(request: Request) -> Response:
        """Replace the fault profile (omitted keys take their defaults: ``{}`` clears all faults)."""
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "body: must be a JSON object")
        try:
            settings = FaultSettings.from_dict(body)
        except KeyError as e:
            raise ApiError(400, "unknown_field", f"{e.args[0]}: unknown field") from None
        except (ValueError, TypeError) as e:
            raise ApiError(400, "invalid_request", str(e)) from None
        app.faults.set(settings)
        return json_response(app.faults.status())

    @app.get("/_sandbox/payments")
    async def sandbox_payments() -> Response:
        items = store.recorded_payments()
        return json_response({"items": items, "total": len(items)})

    @app.get("/_sandbox/rejections")
    async def sandbox_rejections() -> Response:
        return json_response({"items": store.rejections()})

    @app.get("/_sandbox/bills")
    async def sandbox_bills(request: Request) -> Response:
        q = request.query_params
        limit = int(q["limit"]) if q.get("limit", "").isdigit() else None
        refs = store.references(agency=q.get("agency"), status=q.get("status"), limit=limit)
        return json_response({"items": [store.get_bill(r) for r in refs]})

    @app.post("/_sandbox/bills")
    async def sandbox_put_bill(request: Request) -> Response:
        """Create a bill or change fields of one: ``{"reference": "...", "status": "cancelled"}``."""
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "body: must be a JSON object")
        try:
            return json_response(store.put_bill(body))
        except ValueError as e:
            code = "unknown_field" if str(e).endswith("unknown field") else "invalid_request"
            raise ApiError(400, code, str(e)) from None

    @app.get("/_sandbox/issuer")
    async def get_issuer() -> Response:
        return json_response(acquirer.behaviour.status())

    @app.put("/_sandbox/issuer")
    async def put_issuer(request: Request) -> Response:
        """Change the issuer's behaviour: ``{"bad_arpc": true}``, ``{"scripts": true}``, ``{"bad_script_mac": true}``,
        ``{"strict_atc": false}``, ``{"require_chip_data": false}``, ``{"scheme_cvns": {"CIB": 10}}``; omitted keys
        stay as they are (sandbox.billing.acquirer.IssuerBehaviour)."""
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "body: must be a JSON object")
        try:
            acquirer.behaviour = IssuerBehaviour.from_dict(body, acquirer.behaviour)
        except ValueError as e:
            code = "unknown_field" if str(e).endswith("unknown field") else "invalid_request"
            raise ApiError(400, code, str(e)) from None
        return json_response(acquirer.behaviour.status())

    @app.get("/_sandbox/authorizations")
    async def sandbox_authorizations() -> Response:
        return json_response({"items": store.authorizations()})

    @app.get("/_sandbox/heartbeats")
    async def sandbox_heartbeats() -> Response:
        return json_response({"items": list(heartbeats)})

    @app.get("/_sandbox/receipts")
    async def sandbox_receipts() -> Response:
        return json_response({"items": store.receipt_sends()})

    return app

