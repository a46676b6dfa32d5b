"""The sandbox billing server: FastAPI app implementing /work/shared/contracts/billing-api.md (v1).

>>> from sandbox.billing.store import Store
>>> app = create_app(Store(":memory:"), token="t")
>>> sorted(r.path for r in app.routes if r.path.startswith("/v1/"))[:2]
['/v1/authorizations', '/v1/authorizations/{payment_id}']

Run it with ``guichet sandbox serve`` or ``sandbox.billing.server.SandboxServer``. Besides the contract it
has test-only endpoints under ``/_sandbox/`` (same token): ``GET|PUT /_sandbox/faults``,
``GET /_sandbox/payments``, ``GET /_sandbox/rejections``, ``GET|POST /_sandbox/bills``,
``GET /_sandbox/authorizations``, ``GET /_sandbox/heartbeats``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from config.money import CURRENCIES
from drivers.pan import luhn_valid, mask_pan
from sandbox.billing.faults import FaultInjector, FaultSettings, run_with_faults
from sandbox.billing.store import Store, unknown_payment_field

MAX_BATCH = 500
FEED_MAX = 5000
FEED_DEFAULT = 1000
AUTH_FIELDS = frozenset({"payment_id", "amount", "currency", "card", "emv"})
AUTH_CARD_FIELDS = frozenset({"pan", "expiry", "scheme", "aid", "pan_sequence"})
HEARTBEAT_FIELDS = frozenset({"agent_version", "queue_depth", "oldest_pending_at", "devices"})
# PANs that always decline with response code 51 (besides any --decline-pan): Luhn-valid test numbers.
DEFAULT_DECLINE_PANS = frozenset({"6280580000000058", "4111111111110055"})


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


def encode_cursor(agency: str, position: int) -> str:
    raw = json.dumps([agency, position], separators=(",", ":")).encode()
    return "c1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, agency: str) -> int:
    try:
        if not cursor.startswith("c1."):
            raise ValueError
        data = cursor[3:]
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        who, position = json.loads(raw)
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "updated_after: not a cursor this server gave") from None
    if who != agency:
        raise ApiError(400, "invalid_cursor", f"updated_after: cursor belongs to agency {who}, not {agency}")
    return position


class SandboxApp(FastAPI):
    """FastAPI with the fault injector wrapped around everything (it needs uvicorn's own ``send``)."""

    sandbox_store: Store
    faults: FaultInjector

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await run_with_faults(self.faults, scope, receive, send, super().__call__)


def create_app(
    store: Store,
    *,
    token: str,
    faults: FaultInjector | None = None,
    decline_pans: frozenset[str] | set[str] | tuple[str, ...] = (),
) -> SandboxApp:
    """Build the app around an open ``Store``. Requests need ``Authorization: Bearer <token>`` and
    ``X-Terminal-Id``. ``decline_pans`` are PANs that /v1/authorizations always declines ("51")."""
    expected_auth = f"Bearer {token}".encode()
    declining = DEFAULT_DECLINE_PANS | set(decline_pans)
    heartbeats: deque[dict[str, Any]] = deque(maxlen=200)

    async def authenticate(request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        if not token or not hmac.compare_digest(given, expected_auth):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        if not request.headers.get("x-terminal-id", "").strip():
            raise ApiError(401, "missing_terminal_id", "the X-Terminal-Id header is required")

    app = SandboxApp(
        title="guichet sandbox billing server",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(authenticate)],
    )
    app.sandbox_store = store
    app.faults = faults or FaultInjector()

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, f"{request.method} {request.url.path}: {exc.detail}")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    async def read_json(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, "invalid_json", f"body: not valid JSON ({e})") from None

    def check_query(request: Request, allowed: set[str]) -> None:
        for key in request.query_params:
            if key not in allowed:
                raise ApiError(400, "unknown_field", f"{key}: unknown query parameter")

    def require_object(body: Any, allowed: frozenset[str], where: str = "body") -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", f"{where}: must be a JSON object")
        for key in body:
            if key not in allowed:
                raise ApiError(400, "unknown_field", f"{where}.{key}: unknown field")
        return body

    # -- bills -----------------------------------------------------------------------------------------

    @app.get("/v1/bills/{reference}")
    async def get_bill(reference: str, request: Request) -> Response:
        check_query(request, set())
        bill = store.get_bill(reference)
        if bill is None:
            raise ApiError(404, "bill_not_found", f"no bill with reference {reference}")
        return json_response(bill)

    @app.get("/v1/customers/{customer_id}/bills")
    async def customer_bills(customer_id: str, request: Request) -> Response:
        check_query(request, set())
        items = store.customer_bills(customer_id)
        if items is None:
            raise ApiError(404, "customer_not_found", f"no customer {customer_id}")
        return json_response({"items": items})

    @app.get("/v1/bills")
    async def bills_feed(request: Request) -> Response:
        check_query(request, {"agency", "updated_after", "limit"})
        q = request.query_params
        agency = q.get("agency", "")
        if not agency:
            raise ApiError(400, "invalid_request", "agency: required query parameter")
        limit_text = q.get("limit", str(FEED_DEFAULT))
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= FEED_MAX:
            raise ApiError(400, "invalid_limit", f"limit: must be an integer from 1 to {FEED_MAX}")
        after = decode_cursor(q["updated_after"], agency) if "updated_after" in q else 0
        items, position = store.feed(agency, after=after, limit=int(limit_text))
        return json_response({"items": items, "next_cursor": encode_cursor(agency, position)})

    # -- payments --------------------------------------------------------------------------------------

    @app.post("/v1/payments/batch")
    async def payments_batch(request: Request) -> Response:
        check_query(request, set())
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
                    raise ApiError(400, "unknown_field", f"{bad}: unknown field")
        return json_response({"results": store.record_batch(payments)})

    @app.get("/v1/payments/{payment_id}")
    async def get_payment(payment_id: str, request: Request) -> Response:
        check_query(request, set())
        payment = store.get_payment(payment_id)
        if payment is None:
            raise ApiError(404, "payment_not_found", f"no payment {payment_id}")
        return json_response(payment)

    # -- authorizations ------------------------------------------------------------------------------

    @app.post("/v1/authorizations")
    async def authorize(request: Request) -> Response:
        check_query(request, set())
        key = request.headers.get("idempotency-key", "").strip()
        if not key:
            raise ApiError(400, "missing_idempotency_key", "the Idempotency-Key header is required")
        body = require_object(await read_json(request), AUTH_FIELDS)
        card = require_object(body.get("card"), AUTH_CARD_FIELDS, "body.card")
        payment_id = body.get("payment_id")
        if not isinstance(payment_id, str) or not payment_id:
            raise ApiError(400, "invalid_request", "payment_id: must be a non-empty string")
        if key != payment_id:
            raise ApiError(400, "idempotency_key_mismatch", "Idempotency-Key: must equal payment_id")
        amount = body.get("amount")
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount < 2**63:
            raise ApiError(400, "invalid_request", "amount: must be an integer > 0 in minor units, below 2**63")
        currency = body.get("currency")
        if currency not in CURRENCIES:
            raise ApiError(400, "invalid_request", f"currency: must be one of {', '.join(CURRENCIES)}")
        pan = card.get("pan")
        if not isinstance(pan, str) or not pan.isdigit() or not 12 <= len(pan) <= 19:
            raise ApiError(400, "invalid_request", "card.pan: must be 12 to 19 digits")
        expiry = card.get("expiry")
        if expiry is not None and (not isinstance(expiry, str) or len(expiry) != 7 or expiry[4] != "-"):
            raise ApiError(400, "invalid_request", "card.expiry: must be YYYY-MM")
        emv = body.get("emv")
        if emv is not None and (not isinstance(emv, str) or len(emv) % 2):
            raise ApiError(400, "invalid_request", "emv: must be hex TLV or null")

        first = store.authorization_request(payment_id)
        if first is not None and first != (amount, currency, mask_pan(pan)):
            # Not in contract v1 (a backward-compatible addition): a replay must be the same request.
            raise ApiError(409, "idempotency_conflict",
                           "Idempotency-Key: already used for another amount, currency or card")
        stored = store.get_authorization(payment_id)
        if stored is not None:  # same key, same request: the first answer again
            return json_response(store.save_authorization(
                payment_id, stored, amount=amount, currency=currency, pan_masked=mask_pan(pan)
            ))  # fmt: skip
        response = decide_authorization(payment_id, amount, pan, expiry, declining)
        saved = store.save_authorization(
            payment_id, response, amount=amount, currency=currency, pan_masked=mask_pan(pan)
        )
        return json_response(saved)

    @app.get("/v1/authorizations/{payment_id}")
    async def get_authorization(payment_id: str, request: Request) -> Response:
        check_query(request, set())
        found = store.get_authorization(payment_id)
        if found is None:
            raise ApiError(404, "authorization_not_found", f"no authorization for payment {payment_id}")
        return json_response(found)

    # -- heartbeat -------------------------------------------------------------------------------------

    @app.post("/v1/terminals/{terminal_id}/heartbeat")
    async def heartbeat(terminal_id: str, request: Request) -> Response:
        check_query(request, set())
        body = require_object(await read_json(request), HEARTBEAT_FIELDS)
        if "agent_version" in body and not isinstance(body["agent_version"], str):
            raise ApiError(400, "invalid_request", "agent_version: must be a string")
        depth = body.get("queue_depth", 0)
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
            raise ApiError(400, "invalid_request", "queue_depth: must be an integer >= 0")
        if "devices" in body and not isinstance(body["devices"], list):
            raise ApiError(400, "invalid_request", "devices: must be a list")
        server_time = datetime.now(UTC) + timedelta(seconds=app.faults.clock_offset)
        heartbeats.append(
            {
                "terminal_id": terminal_id,
                "header_terminal_id": request.headers.get("x-terminal-id"),
                "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "body": body,
            }
        )
        return json_response({"server_time": server_time.isoformat(timespec="seconds")})

    # -- test-only endpoints ---------------------------------------------------------------------------

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

    @app.get("/_sandbox/authorizations")
    async def sandbox_authorizations() -> Response:
        return json_response({"items": store.authorizations()})

    @app.get("/_sandbox/heartbeats")
    async def sandbox_heartbeats() -> Response:
        return json_response({"items": list(heartbeats)})

    return app


def decide_authorization(
    payment_id: str, amount: int, pan: str, expiry: str | None, declining: frozenset[str] | set[str]
) -> dict[str, Any]:
    """The sandbox acquirer's deterministic rules (documented in docs/sandbox-server.md).

    >>> decide_authorization("p1", 345600, "6280580000001239", "2030-01", set())["response_code"]
    '00'
    >>> decide_authorization("p1", 345651, "6280580000001239", "2030-01", set())["response_code"]
    '51'
    """
    digest = hashlib.sha256(payment_id.encode()).hexdigest()
    reference = "SBX" + digest[:12].upper()
    if not luhn_valid(pan):
        code = "14"  # invalid card number
    elif expiry is not None and expiry < datetime.now(UTC).strftime("%Y-%m"):
        code = "54"  # expired card
    elif amount % 100 == 51 or pan in declining:
        code = "51"  # insufficient funds
    else:
        code = "00"
    if code == "00":
        auth_code = str(int(digest[12:24], 16) % 1_000_000).rjust(6, "0")
        # 8A = ASCII "00", 91 = issuer authentication data (8 bytes, fixed in the sandbox)
        return {
            "approved": True,
            "response_code": "00",
            "code": auth_code,
            "reference": reference,
            "emv": "8A023030" + "9108" + digest[24:40].upper(),
        }
    return {
        "approved": False,
        "response_code": code,
        "code": None,
        "reference": reference,
        "emv": "8A02" + code.encode().hex().upper(),
    }
