"""Every payment the journal can produce, uploaded, keeps the contract (issue 12: "make the class impossible").

Hypothesis drives the real PaymentFlow and Journal on real SQLite files: every method (cash, card_terminal,
card_reader), DZD and TND, baskets of bills sharing a transaction, partial amounts, offline capture, every
outcome a device can give, and unknown outcomes settled by a person (any text as who settles, any text typed
off the ticket) from the TPE's ticket or from the server's authorization record. The agent is killed as a
power cut would: each payment and each settle runs in a process of its own (forked) with one of the
journal's crash points armed (agent/crashpoints.py: it SIGKILLs itself there, as GUICHET_CRASHPOINT makes
`guichet` do; tests/core/test_crash.py), or dies while the device holds the amount; the journal is then
reopened from its files and recovered, and a settle the kill cut short is done again.

Each payment waiting for upload, as `Payment.to_api()` gives it and wrapped as the batch request, must
validate against the request schema of POST /v1/payments/batch in contract/billing-api.yaml (JSON Schema
Draft 2020-12, $refs resolved in the document), carry `settlement` when a person settled it, and be taken by
the sandbox billing server over real HTTP: accepted, then duplicate when posted again, never rejected.

Devices are stood in at their wire: the TPE's answer is real Concert E+ bytes decoded by the real driver and
mapped by the real TpeAuthorizer; the card reader's request goes to the sandbox acquirer over HTTP and its
answer is mapped by the real ReaderAuthorizer.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

import agent.journal
import config
import contract
from agent import crashpoints
from agent.authorize import AuthOutcome, AuthRequest, CashAuthorizer, StatusCallback
from agent.authorizers.card_reader import ReaderAuthorizer
from agent.authorizers.tpe import TpeAuthorizer
from agent.billing import BillingClient
from agent.bills import Bill, BillCache
from agent.cash import stamp_duty
from agent.errors import GuichetError
from agent.journal import Journal, Payment
from agent.payments import PaymentFlow
from agent.states import State
from drivers.concert import Approved, Cancelled, Refused, Timeout
from drivers.concert.eplus_codec import Response, encode_response
from drivers.pan import luhn_check_digit, mask_pan, pan_token
from sandbox.billing.server import SandboxServer
from tests.conftest import BILLING_AGENCY, BILLING_TERMINAL, BILLING_TOKEN, TEST_HMAC_KEY

BATCH = "/v1/payments/batch"
SPEC_URI = "urn:guichet:billing-api"


def batch_validator() -> Draft202012Validator:
    """The request schema of POST /v1/payments/batch, its $refs resolved within the OpenAPI document."""
    spec = contract.openapi()
    request = spec["paths"][BATCH]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert request, "POST /v1/payments/batch has no request schema"
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec))
    pointer = "/paths/{}/post/requestBody/content/application~1json/schema".format(BATCH.replace("/", "~1"))
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#{pointer}"}, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def problems(validator: Draft202012Validator, body: dict[str, Any]) -> list[str]:
    """Each schema error as one line: where in the body, and why."""
    return [explain(e) for e in validator.iter_errors(body)]


def explain(error: ValidationError) -> str:
    """Into a oneOf (the payment's shapes): the errors of the branch meant for this payment, i.e. the one that
    accepts its `method`, with the fewest errors."""
    if error.validator == "oneOf" and error.context:
        branches: dict[Any, list[ValidationError]] = {}
        for e in error.context:
            branches.setdefault(e.schema_path[0], []).append(e)
        meant = min(branches.values(), key=lambda es: (any(list(e.path)[-1:] == ["method"] for e in es), len(es)))
        return "; ".join(explain(e) for e in meant)
    return f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"


# -- the devices, at their wire ---------------------------------------------------------------------------


class Killed(BaseException):
    """The agent dies while the device holds the amount (what SIGKILL does to the process): nothing after it
    runs. A BaseException, so the flow's own `except Exception` cannot turn it into an outcome."""


def luhn_pan(prefix: str, length: int, body: int) -> str:
    digits = (prefix + str(body).rjust(length, "0"))[: length - 1]
    return digits + luhn_check_digit(digits)


class Tpe:
    """The TPE at its serial line: `pay()` answers with real E+ bytes, decoded by the real driver."""

    protocol = "E+"

    def __init__(self, answer: str, report: str | None, private: str) -> None:
        self.answer, self.report, self.private = answer, report, private

    def pay(self, amount: int, currency: str, *, cancel: threading.Event, on_event: Any = None) -> Any:
        if self.answer == "killed":
            raise Killed
        numeric = {"DZD": "012", "TND": "788"}[currency]
        status = {"approved": "0", "refused": "7", "cancelled": "7"}.get(self.answer, "0")
        report = "" if self.answer == "cancelled" else self.report
        raw = encode_response(pos_number="01", status=status, amount=amount, currency_numeric=numeric,
                              report=report, private=self.private)
        response = Response.decode(raw)
        if self.answer == "approved":
            return Approved(amount_sent=True, response=response, message="approved")
        if self.answer == "refused":
            return Refused(amount_sent=True, response=response, message="refused")
        if self.answer == "cancelled":
            return Cancelled(amount_sent=True, response=response, by="terminal", message="cancelled on the terminal")
        return Timeout(amount_sent=True, message="no answer from the terminal", stage="answer")


class TerminalAt(TpeAuthorizer):
    """The real card_terminal authorizer, its link being the Tpe above."""

    def __init__(self, cfg: config.Config, tpe: Tpe) -> None:
        super().__init__(cfg, port="loop://")
        self.tpe = tpe

    def _link(self) -> Any:
        return self.tpe


class ReaderAt:
    """The card_reader method with the card already read: its request goes to the sandbox acquirer over HTTP
    (the full PAN in memory only), the answer is mapped by the real ReaderAuthorizer; `lost`: the agent never
    hears back (unknown), `killed`: it dies once the request is out."""

    method = "card_reader"

    def __init__(self, cfg: config.Config, client: BillingClient, pan: str, after: str) -> None:
        self.real = ReaderAuthorizer(cfg, client)
        self.client, self.pan, self.after = client, pan, after
        self.card = {"scheme": "EDAHABIA", "pan_masked": mask_pan(pan), "pan_token": pan_token(pan, TEST_HMAC_KEY),
                     "expiry": "2030-01", "aid": "A0000003330101"}

    def authorize(self, req: AuthRequest, *, cancel: threading.Event, on_status: StatusCallback) -> AuthOutcome:
        body = {"payment_id": req.transaction_id, "amount": req.amount, "currency": req.currency,
                "card": {"pan": self.pan, "expiry": "2030-01", "scheme": "EDAHABIA", "aid": "A0000003330101",
                         "pan_sequence": "01"},
                "emv": None}
        if self.after == "killed_before_sending":
            raise Killed
        answer = self.client.authorize(body, idempotency_key=req.transaction_id)
        if self.after == "killed":
            raise Killed
        if self.after == "lost":
            return AuthOutcome("unknown", card=self.card, message="no answer from the acquirer")
        return self.real._outcome(answer, self.card)


# -- what hypothesis draws ------------------------------------------------------------------------------------

METHODS = ("cash", "card_terminal", "card_reader")
OUTCOMES = ("approved", "declined", "cancelled", "unknown")
# The journal's crash points a payment passes (agent/crashpoints.py), and those of a settle.
PAY_POINTS = (
    "journal.create.before_commit", "journal.create.after_commit",
    "journal.authorizing.before_commit", "journal.authorizing.after_commit",
    *(f"journal.{o}.{when}" for o in OUTCOMES for when in ("before_commit", "after_commit")),
)  # fmt: skip
SETTLE_POINTS = tuple(f"journal.{o}.{when}" for o in ("approved", "declined") for when in ("before_commit",
                                                                                         "after_commit"))
CASHIERS = ("c0042", "s0001", "caissier-7")


@st.composite
def journeys(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(st.sampled_from(METHODS))
    n = draw(st.integers(1, 3))
    j: dict[str, Any] = {
        "method": method,
        "currency": draw(st.sampled_from(["DZD", "TND"])),
        "dues": draw(st.lists(st.integers(1, 3_000_000), min_size=n, max_size=n)),
        "partial": n == 1 and draw(st.booleans()),
        "offline": method != "card_reader" and draw(st.booleans()),
        "cashier": draw(st.sampled_from(CASHIERS)),
        "kill": draw(st.sampled_from([None, *PAY_POINTS])),
    }
    if method == "cash":
        j["device"] = draw(st.sampled_from(["approved", "killed"]))
    elif method == "card_terminal":
        j["device"] = draw(st.sampled_from(["approved", "refused", "cancelled", "no_answer", "killed"]))
        pan = luhn_pan(draw(st.sampled_from(["628058", "603620", "476173", "5"])), draw(st.integers(13, 19)),
                       draw(st.integers(0, 10**12)))
        j["report"] = draw(st.sampled_from([None, mask_pan(pan), pan + " 2812"]))  # short, masked, full PAN
        j["private"] = draw(st.text(alphabet="0123456789ABCDEF ", max_size=10))
    else:
        j["device"] = draw(st.sampled_from(["answered", "lost", "killed", "killed_before_sending"]))
        # the sandbox acquirer declines an amount ending in 51
        j["dues"] = [d - d % 100 + draw(st.sampled_from([0, 51])) if i == 0 else d for i, d in enumerate(j["dues"])]
        j["pan"] = luhn_pan("628058", 16, draw(st.integers(0, 10**9)))
    # The agency's stamp duty rule (contract 1.1, cash only): off, or any rule the config takes.
    j["duty"] = draw(st.one_of(st.none(), st.builds(
        lambda per, size, low, high: {"enabled": True, "per_slice": per, "slice": size, "minimum": low,
                                      "maximum": high and max(high, low)},
        st.integers(1, 10_000), st.integers(1, 1_000_000), st.integers(0, 50_000), st.integers(0, 500_000))))
    j["settle"] = draw(st.sampled_from(["approved", "declined", "ask_server"]))
    # Who settles: a cashier id, or any text at all (the server's Text is the judge of what may go up).
    j["by"] = draw(st.one_of(st.sampled_from(CASHIERS), st.text(max_size=210)))
    j["settle_kill"] = draw(st.sampled_from([None, *SETTLE_POINTS]))
    last4 = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    j["ticket"] = {
        "code": draw(st.one_of(st.text(alphabet="0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=1, max_size=12),
                               st.text(max_size=14))),
        "scheme": draw(st.one_of(st.sampled_from([None, "CIB", "edahabia", "OTHER"]), st.text(max_size=42))),
        "digits": draw(st.one_of(st.sampled_from([last4, f"628058******{last4}", f"603620 ** **** {last4}"]),
                                 st.text(alphabet="0123456789*Xx#.• -", max_size=25))),
    }
    return j


@pytest.fixture
def validator() -> Draft202012Validator:
    return batch_validator()


def counter_config(
    server: SandboxServer, state: Path, currency: str, duty: dict[str, Any] | None = None
) -> config.Config:
    return config.validate(
        {
            "cash": {"stamp_duty": duty or {}},
            "terminal": {"id": BILLING_TERMINAL, "agency_id": BILLING_AGENCY, "currency": currency},
            "server": {"url": server.url, "token": BILLING_TOKEN, "timeout": 5},
            "state": {"dir": str(state)},
            "cards": {"hmac_key": TEST_HMAC_KEY,
                      "schemes": [{"name": "EDAHABIA", "bins": ["628058"]}, {"name": "CIB", "bins": ["603620"]}]},
            "payments": {"default_method": "cash", "methods": list(METHODS), "allow_partial": True},
        }
    )


class Counter:
    """One counter's journal, bill cache, client and flow on a state directory: one process's view."""

    def __init__(self, cfg: config.Config) -> None:
        self.cfg = cfg
        t = self.cfg.terminal
        self.journal = Journal.open(self.cfg.state.dir, terminal_id=t.id, agency_id=t.agency_id)
        self.bills = BillCache.open(self.cfg.state.dir)
        self.client = BillingClient(self.cfg)

    def flow(self, authorizer: Any) -> PaymentFlow:
        return PaymentFlow(self.cfg, self.journal, self.client, self.bills, {authorizer.method: authorizer})

    def close(self) -> None:
        self.journal.close()
        self.bills.close()
        self.client.close()


CHILD_TIMEOUT = 60.0  # one payment or settle: milliseconds normally


def in_process(cfg: config.Config, point: str | None, work: Any) -> str:
    """Run ``work(counter)`` in a process of its own (forked) with the journal's crash point ``point`` armed,
    as `GUICHET_CRASHPOINT` arms it in `guichet`: the process SIGKILLs itself there, or where the device
    "dies" (Killed). What work returned, "refused <kind>", or "killed"."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            crashpoints._POINT = point  # what the environment variable sets at import
            agent.journal.ARMED = point is not None
            counter = Counter(cfg)
            try:
                said = work(counter)
            except Killed:
                os.kill(os.getpid(), signal.SIGKILL)
                said = "unreachable"
            except GuichetError as e:
                said = f"refused {getattr(e, 'kind', type(e).__name__)}"
            counter.close()
        except BaseException as e:  # noqa: BLE001  (anything else is a finding: reported to the parent)
            said = f"error {type(e).__name__}: {e}"
        os.write(write, said.encode()[:60_000])
        os._exit(0)
    os.close(write)
    chunks = []
    deadline = time.monotonic() + CHILD_TIMEOUT  # bounded: a child that hangs is killed and reported
    try:
        while (left := deadline - time.monotonic()) > 0 and select.select([read], [], [], left)[0]:
            if not (chunk := os.read(read, 65536)):
                break
            chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"the process running {work} did not finish within {CHILD_TIMEOUT} s")
    finally:
        os.close(read)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    said = b"".join(chunks).decode()
    assert not said.startswith("error"), said
    return said


def restarted(cfg: config.Config) -> Counter:
    """A new process after the last one stopped: opens the files and recovers them, as `guichet` does."""
    counter = Counter(cfg)
    counter.journal.recover()
    return counter


_REFS = itertools.count(1)


def put_bills(server: SandboxServer, j: dict[str, Any]) -> list[Bill]:
    """The journey's bills, on the server too (so an upload can be applied) and as the counter holds them."""
    bills = []
    for due in j["dues"]:
        ref = f"4107{next(_REFS):08d}"
        fields = {"reference": ref, "contract": "CT-1", "customer_name": "A. B.", "service": "water",
                  "period": "2026-10", "issued_on": "2026-11-01", "due_on": "2026-12-01", "amount_due": due,
                  "currency": j["currency"], "status": "unpaid", "agency_id": BILLING_AGENCY,
                  "customer_id": "C-0071182"}
        server.put_bill(**fields)
        bills.append(Bill.from_api({**fields, "version": 1}, source="cache" if j["offline"] else "server"))
    return bills


def authorizer_for(cfg: config.Config, counter: Counter, j: dict[str, Any]) -> Any:
    if j["method"] == "cash":
        if j["device"] != "killed":
            return CashAuthorizer()

        class KilledCash(CashAuthorizer):
            def authorize(self, req: AuthRequest, **kw: Any) -> AuthOutcome:
                raise Killed

        return KilledCash()
    if j["method"] == "card_terminal":
        return TerminalAt(cfg, Tpe(j["device"], j["report"], j["private"]))
    return ReaderAt(cfg, counter.client, j["pan"], j["device"])


def run_journey(server: SandboxServer, state: Path, j: dict[str, Any]) -> tuple[Counter, list[str], str | None]:
    """Take one payment along `j`'s path, each step in a process a crash point may kill; the counter as the
    next process sees it, the ids of the payment's rows (none if a check refused it or the kill came before
    the first commit), and what settling answered (None when nothing was unknown)."""
    cfg = counter_config(server, state, j["currency"], j.get("duty"))
    bills = put_bills(server, j)
    amount = max(1, j["dues"][0] // 3) if j["partial"] else None

    def pay(counter: Counter) -> str:
        flow = counter.flow(authorizer_for(cfg, counter, j))
        return flow.pay(bills, method=j["method"], cashier_id=j["cashier"], amount=amount).status

    paid = in_process(cfg, j["kill"], pay)
    event(f"pay, crash point {'armed' if j['kill'] else 'none'}: {paid.split()[0]}")
    counter = restarted(cfg)
    ids = [p.payment_id for p in counter.journal.list()]
    assert all(counter.journal.get(i).state in (*OUTCOMES, State.UPLOADED) for i in ids)  # nothing left midway
    unknown = [p for p in counter.journal.list() if p.state == State.UNKNOWN]
    if not unknown:
        return counter, ids, None
    counter.close()
    p = unknown[0]
    said = in_process(cfg, j["settle_kill"], lambda c: settle(c, cfg, p, j))
    event(f"settle at {j['settle_kill']}: {said}")
    counter = restarted(cfg)
    if said == "killed" and counter.journal.get(p.payment_id).state == State.UNKNOWN:
        said = settle(counter, cfg, p, j)  # cut short before its commit: the person settles it again
    return counter, ids, said


def settle(counter: Counter, cfg: config.Config, p: Payment, j: dict[str, Any]) -> str:
    """A person settles the unknown outcome as the journey says; what they may not do is refused."""
    flow = counter.flow(authorizer_for(cfg, counter, {**j, "device": "approved"}))
    t = j["ticket"]
    try:
        if j["settle"] == "ask_server":
            flow.resolve_unknown_online(p.payment_id, actor=j["by"])
        else:
            flow.settle_unknown(p.payment_id, approved=j["settle"] == "approved", actor=j["by"], code=t["code"],
                                scheme=t["scheme"], pan_masked=t["digits"])
    except GuichetError as e:
        return f"refused {getattr(e, 'kind', type(e).__name__)}"
    return "settled"


@pytest.fixture
def states(tmp_path: Path) -> Iterator[Iterator[Path]]:
    def fresh() -> Iterator[Path]:
        for n in range(10_000):  # bounded: more than hypothesis ever runs
            path = tmp_path / f"counter-{n}"
            path.mkdir()
            yield path

    yield fresh()


SETTLED_TPE: dict[str, Any] = {
    "method": "card_terminal", "currency": "DZD", "dues": [345600], "partial": False, "offline": False,
    "cashier": "s0001", "kill": None, "device": "killed", "report": "628058******1234", "private": "A1B2C3",
    "settle": "approved", "by": "s0001", "settle_kill": None, "duty": None,
    "ticket": {"code": "A1B2C3", "scheme": "EDAHABIA", "digits": "1234"},
}  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@example(j=SETTLED_TPE)  # issue 12: the card payment settled from the ticket, refused as `card: required`
@example(j={**SETTLED_TPE, "by": " "})  # who settles is blank: the server would reject it for good
@example(j={**SETTLED_TPE, "by": "x" * 201})
@example(j={**SETTLED_TPE, "device": "no_answer", "settle_kill": "journal.approved.before_commit",
            "ticket": {**SETTLED_TPE["ticket"], "digits": "628058******1234"}})
@example(j={**SETTLED_TPE, "settle": "declined", "settle_kill": "journal.declined.after_commit"})
@example(j={**SETTLED_TPE, "method": "card_reader", "device": "killed", "pan": "6280580000001239",
            "settle": "approved", "currency": "TND", "settle_kill": "journal.approved.after_commit"})
@example(j={**SETTLED_TPE, "method": "cash", "device": "approved", "dues": [1000, 2000, 3000], "offline": True,
            "kill": "journal.authorizing.after_commit"})
@example(j={**SETTLED_TPE, "method": "cash", "device": "approved", "dues": [100_000, 2_000_001], "kill": None,
            "duty": {"enabled": True, "per_slice": 100, "slice": 10_000, "minimum": 500, "maximum": 20_000}})
@given(j=journeys())
def test_every_upload_body_keeps_the_contract(
    j: dict[str, Any], billing_server: SandboxServer, validator: Draft202012Validator, states: Iterator[Path]
) -> None:
    counter, ids, said = run_journey(billing_server, next(states), j)
    try:
        journal = counter.journal
        outbox = journal.outbox_batch(500)
        in_outbox = {p.payment_id for p in outbox}
        for pid in ids:  # money taken always goes up; nothing else does
            p = journal.get(pid)
            event(f"{p.method} {j['device']} -> {p.state}" + (f" settled from {p.settlement['from']}"
                                                               if p.settlement else ""))
            assert (pid in in_outbox) == (p.state == State.APPROVED), p.state
        if said is not None:
            event(f"settle: {said}")
        if not outbox:
            return
        body = {"payments": [p.to_api() for p in outbox]}
        assert problems(validator, body) == [], (j, body)
        rule = counter.cfg.cash.stamp_duty
        for p, sent in zip(outbox, body["payments"], strict=True):
            # the duty the rule gives this payment goes up with it, and only on cash (none: left out)
            assert sent.get("stamp_duty") == (stamp_duty(p.amount, p.method, rule) or None), (j, sent)
            if p.settlement is not None and p.method != "cash":  # a person settled it: the server is told who
                assert sent.get("settlement") == {k: p.settlement[k] for k in ("by", "from", "at")}, sent
                assert p.settlement["by"] == j["by"]
        # The server is the judge: every body the journal produces is taken, and taken once.
        results = counter.client.post_batch(body["payments"])
        assert [r["status"] for r in results] == ["accepted"] * len(outbox), (j, results)
        again = counter.client.post_batch(body["payments"])
        assert [r["status"] for r in again] == ["duplicate"] * len(outbox), (j, again)
        journal.record_upload_results(results)
        assert journal.outbox_batch(500) == []
    finally:
        counter.close()
