"""Settling an unknown outcome (issue 12, "money taken, never credited"): the real `guichet` CLI as a subprocess,
the sandbox billing server over HTTP, the TPE simulator on a pty, the journal on disk.

A card payment the TPE approved while the agent died before writing it is `unknown` after the restart; the
cashier settles it from the TPE's ticket and the server must accept it: the money was taken. A `card_reader`
payment is settled from the server's authorization record, which a person may not contradict.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import config
from agent.cashiers import CashierStore
from agent.context import AgentContext
from agent.errors import SettlementRefusal
from agent.journal import Journal, NewPayment
from agent.payments import ticket_scheme
from agent.states import State
from config.schema import SchemeRule
from sandbox.billing.server import SandboxServer
from sandbox.tpe import TEST_CARDS, TEST_PANS, TpeSimulator
from tests.core.conftest import GUICHET, Runner, recorded_ids
from tests.tpe.conftest import FAST_BAUD, TPE_TIMEOUTS, tpe_sim  # noqa: F401  (fixture)

KILLED = -signal.SIGKILL
SIM_CARD = "EDAHABIA"  # the simulator's default card
LAST4 = TEST_CARDS[SIM_CARD][-4:]


@pytest.fixture
def tpe_guichet(
    billing_config: config.Config, tpe_sim: Callable[..., TpeSimulator], tmp_path: Path  # noqa: F811
) -> tuple[Runner, TpeSimulator]:
    """`guichet` with a config whose TPE is the simulator (approving, EDAHABIA card)."""
    import os
    import subprocess

    sim = tpe_sim(behaviour="approve")
    data = billing_config.model_dump(mode="python")
    data["server"]["token"] = data["server"]["token"].get_secret_value()
    data["cards"]["hmac_key"] = data["cards"]["hmac_key"].get_secret_value()
    data["cards"]["schemes"] = [{"name": "EDAHABIA", "bins": ["628058"]}, {"name": "CIB", "bins": ["603620"]}]
    data["tpe"].update({"port": sim.path, "baud": FAST_BAUD, "framing": "7E1", **TPE_TIMEOUTS})
    cfg = config.write_config(config.validate(data), tmp_path / "guichet-tpe.toml")

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60, input: str | None = None) -> Any:
        full = {k: v for k, v in os.environ.items() if k != "GUICHET_CRASHPOINT"}
        full.update({"GUICHET_CONFIG": str(cfg), **(env or {})})
        stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        return subprocess.run([*GUICHET, *args], capture_output=True, text=True, env=full, timeout=timeout,
                              **stdin)

    return run, sim


@pytest.fixture
def s0001(billing_config: config.Config) -> str:
    """A cashier account of this counter, the one who settles (`--cashier` must name one)."""
    store = CashierStore.open(billing_config.state.dir)
    try:
        store.add("s0001", "Sana S.", "4826", role="supervisor")
    finally:
        store.close()
    return "s0001"


def _state_bytes(cfg: config.Config) -> bytes:
    return b"".join(p.read_bytes() for p in Path(cfg.state.dir).rglob("*") if p.is_file())


def _approved_by_the_tpe_then_killed(run: Runner, sim: TpeSimulator, ref: str) -> str:
    """The TPE approves (the customer is charged, the ticket printed) and the agent dies before it writes the
    approval; the restart (`sync --once` recovers the journal) leaves the payment unknown. Its id."""
    r = run("pay", ref, "--method", "card_terminal", "--json", "--no-upload",
            env={"GUICHET_CRASHPOINT": "journal.approved.before_commit"})
    assert r.returncode == KILLED, (r.returncode, r.stderr)
    sim.wait_idle()
    assert [e.outcome for e in sim.exchanges] == ["approved"]  # the money was taken
    assert run("sync", "--once").returncode == 0
    [p] = json.loads(run("queue", "list", "--json").stdout)
    assert p["state"] == "unknown"
    return str(p["payment_id"])


def test_a_tpe_payment_settled_from_the_ticket_is_accepted_by_the_server(
    tpe_guichet: tuple[Runner, TpeSimulator], billing_config: config.Config, billing_server: SandboxServer,
    seeded_references: list[str], s0001: str,
) -> None:
    run, sim = tpe_guichet
    ref = seeded_references[0]
    pid = _approved_by_the_tpe_then_killed(run, sim, ref)
    assert recorded_ids(billing_server) == []

    s = run("queue", "settle", pid, "--approved", "--code", "A1B2C3", "--scheme", "edahabia", "--last4", LAST4,
            "--cashier", "s0001")
    assert s.returncode == 0, s.stderr
    r = run("sync", "--once")
    assert r.returncode == 0, (r.stdout, r.stderr)
    [recorded] = billing_server.recorded_payments()
    assert recorded["payment_id"] == pid and billing_server.rejections() == []
    body = recorded["payment"]
    assert body["settlement"]["by"] == "s0001" and body["settlement"]["from"] == "terminal_ticket"
    assert body["card"] == {"scheme": "EDAHABIA", "pan_masked": "*" * 12 + LAST4, "pan_token": None}
    assert body["authorization"]["code"] == "A1B2C3"

    shown = run("queue", "show", pid)
    assert shown.returncode == 0 and "settled by s0001" in shown.stdout and "terminal's ticket" in shown.stdout
    as_json = json.loads(run("queue", "show", pid, "--json").stdout)
    assert as_json["state"] == "uploaded" and as_json["settlement"]["by"] == "s0001"


def test_settling_asks_for_what_the_ticket_shows(
    tpe_guichet: tuple[Runner, TpeSimulator], billing_config: config.Config, billing_server: SandboxServer,
    seeded_references: list[str], s0001: str,
) -> None:
    run, sim = tpe_guichet
    pid = _approved_by_the_tpe_then_killed(run, sim, seeded_references[0])
    pan = TEST_CARDS[SIM_CARD]
    masked = f"{pan[:6]}******{LAST4}"
    refused = [  # (arguments, stdin, exit status, why)
        (["--code", "A1B2C3"], None, 1, "last 4 digits: required"),  # the server would reject it
        (["--code", "A1B2C3", "--pan-masked-stdin"], pan, 1, "full card number"),  # typed by mistake: never kept
        (["--code", "A1B2C3", "--pan-masked-stdin"], f"{pan[:4]} {pan[4:8]} {pan[8:12]} {pan[12:]}", 1,
         "full card number"),
        (["--code", "A1B2C3", "--pan-masked-stdin"], pan[:8] + "****" + pan[12:], 1, "only the first 6"),
        (["--code", "A1B2C3", "--last4", "12"], None, 2, "--last4: exactly the 4 last digits"),
        (["--code", "A1B2C3", "--last4", LAST4], None, 1, "scheme: required"),  # the last 4 do not name it
        (["--last4", LAST4], None, 1, "authorisation code: required"),
        (["--code", "A1B2C3", "--last4", LAST4, "--scheme", "BANKX"], None, 1, "scheme: must be one of"),
        # A scheme the card number's first digits (the BIN rules) contradict: the server would be told a lie.
        (["--code", "A1B2C3", "--scheme", "CIB", "--pan-masked-stdin"], masked, 1, "does not match"),
        # A card number is never an argument (shell history, /proc/PID/cmdline): --last4 takes 4 digits only.
        (["--code", "A1B2C3", "--last4", pan], None, 2, "--last4: exactly the 4 last digits"),
        (["--code", "A1B2C3", "--pan-masked", masked], None, 2, "unexpected extra argument"),
        (["--code", "A1B2C3", "--pan-masked"], None, 2, "--pan-masked-stdin"),  # no terminal to prompt on
    ]
    for args, stdin, status, why in refused:
        r = run("queue", "settle", pid, "--approved", "--cashier", "s0001", *args, input=stdin)
        assert r.returncode == status, (args, r.stdout, r.stderr)
        assert why in r.stderr, (args, r.stderr)
        if status == 1:
            assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert pan not in r.stderr + r.stdout and pan[6:12] not in r.stderr
    assert all(p.encode() not in _state_bytes(billing_config) for p in TEST_PANS)
    assert json.loads(run("queue", "show", pid, "--json").stdout)["state"] == "unknown"

    # The masked number as printed names the scheme through the BIN rules.
    ok = run("queue", "settle", pid, "--approved", "--code", "A1B2C3", "--pan-masked-stdin", "--cashier", "s0001",
             input=masked + "\n")
    assert ok.returncode == 0, ok.stderr
    assert run("sync", "--once").returncode == 0
    [recorded] = billing_server.recorded_payments()
    assert recorded["payment"]["card"] == {"scheme": "EDAHABIA", "pan_masked": f"{pan[:6]}******{LAST4}",
                                           "pan_token": None}


def test_a_declined_settlement_goes_nowhere(
    tpe_guichet: tuple[Runner, TpeSimulator], billing_server: SandboxServer, seeded_references: list[str],
    s0001: str,
) -> None:
    run, sim = tpe_guichet
    pid = _approved_by_the_tpe_then_killed(run, sim, seeded_references[0])
    # Declined is final and frees the bill to be paid again: never on one word, confirmed or --yes.
    no = run("queue", "settle", pid, "--declined", "--cashier", "s0001")
    assert no.returncode == 2 and "NOT charged" in no.stderr and "--yes" in no.stderr, no.stderr
    assert json.loads(run("queue", "show", pid, "--json").stdout)["state"] == "unknown"
    r = run("queue", "settle", pid, "--declined", "--yes", "--cashier", "s0001")
    assert r.returncode == 0, r.stderr
    assert run("sync", "--once").returncode == 0
    assert recorded_ids(billing_server) == []
    shown = json.loads(run("queue", "show", pid, "--json").stdout)
    assert shown["state"] == "declined" and shown["settlement"]["by"] == "s0001"


# -- card_reader: the server's authorization record decides ------------------------------------------------

TEST_PAN = "6280580000001239"  # Luhn-valid; the sandbox acquirer approves it unless the amount ends in 51


def _reader_payment_in_doubt(cfg: config.Config, ref: str, amount: int, *, reached_acquirer: bool) -> str:
    """What a crash leaves when the agent died while POST /v1/authorizations was on its way: the journal's
    `authorizing` row (written before asking, as PaymentFlow.pay does), the request at the acquirer or not,
    and the restart's recovery making it unknown. Its id."""
    ctx = AgentContext.open(cfg, ["cash"], take_payments=True)
    try:
        j: Journal = ctx.journal
        [p] = j.create([NewPayment({"reference": ref}, amount)], currency="DZD", method="card_reader",
                       cashier_id="c0042", captured_offline=False)
        j.transition(p.payment_id, State.AUTHORIZING, actor="c0042")
        if reached_acquirer:
            ctx.client.authorize(
                {"payment_id": p.transaction_id, "amount": amount, "currency": "DZD",
                 "card": {"pan": TEST_PAN, "expiry": "2030-01", "scheme": "EDAHABIA", "aid": "A000000003101001",
                          "pan_sequence": "01"},
                 "emv": None},
                idempotency_key=p.transaction_id,
            )
        assert [q.state for q in j.recover()] == ["unknown"]
        return p.payment_id
    finally:
        ctx.close()


def test_a_reader_payment_the_acquirer_approved_is_settled_from_the_server(
    guichet: Runner, billing_config: config.Config, billing_server: SandboxServer, seeded_references: list[str],
    s0001: str,
) -> None:
    pid = _reader_payment_in_doubt(billing_config, seeded_references[0], 10000, reached_acquirer=True)
    no = guichet("queue", "settle", pid, "--declined", "--yes", "--cashier", "s0001")
    assert no.returncode == 1 and "shows it approved" in no.stderr, no.stderr  # money taken: never declined
    ok = guichet("queue", "settle", pid, "--approved", "--code", "WHATEVER", "--cashier", "s0001")
    assert ok.returncode == 0, ok.stderr
    assert guichet("sync", "--once").returncode == 0
    [recorded] = billing_server.recorded_payments()
    body = recorded["payment"]
    assert body["settlement"]["from"] == "server" and body["settlement"]["by"] == "s0001"
    answer = billing_server.store.get_authorization(body["transaction_id"])
    assert answer is not None and answer["approved"] is True
    assert body["authorization"]["code"] == answer["code"] != "WHATEVER"
    assert body["authorization"]["reference"] == answer["reference"]


def test_a_reader_payment_the_server_contradicts_cannot_be_settled_approved(
    guichet: Runner, billing_config: config.Config, billing_server: SandboxServer, seeded_references: list[str],
    s0001: str,
) -> None:
    declined = _reader_payment_in_doubt(billing_config, seeded_references[0], 10051, reached_acquirer=True)
    never = _reader_payment_in_doubt(billing_config, seeded_references[1], 10000, reached_acquirer=False)
    for pid, why in ((declined, "shows it declined (51)"), (never, "no record")):
        r = guichet("queue", "settle", pid, "--approved", "--code", "123456", "--last4", "1239", "--cashier", "s0001")
        assert r.returncode == 1 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert guichet("queue", "settle", declined, "--declined", "--yes", "--cashier", "s0001").returncode == 0
    assert guichet("sync", "--once").returncode == 0
    assert recorded_ids(billing_server) == []
    states = {p["payment_id"]: p["state"] for p in json.loads(guichet("queue", "list", "--all", "--json").stdout)}
    assert states == {declined: "declined", never: "unknown"}  # a fresh 404 may still be on its way


def test_a_reader_payment_is_not_settled_either_way_while_the_server_is_unreachable(
    guichet: Runner, billing_config: config.Config, billing_server: SandboxServer, seeded_references: list[str],
    s0001: str,
) -> None:
    pid = _reader_payment_in_doubt(billing_config, seeded_references[0], 10000, reached_acquirer=True)
    billing_server.stop()
    for outcome in (["--approved", "--code", "123456", "--last4", "1239"], ["--declined", "--yes"], []):
        r = guichet("queue", "settle", pid, *outcome, "--cashier", "s0001")
        assert r.returncode == 1 and "try again when online" in r.stderr, (outcome, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    [p] = json.loads(guichet("queue", "list", "--json").stdout)
    assert p["state"] == "unknown"


# -- who settles, and what the server's record may put in the upload (review of issue 12) --------------------


def _in_doubt(cfg: config.Config, ref: str, method: str = "card_terminal") -> str:
    """A payment the crash left `authorizing` (the TPE may have taken the money), unknown after recovery."""
    ctx = AgentContext.open(cfg, ["cash"], take_payments=True)
    try:
        j: Journal = ctx.journal
        [p] = j.create([NewPayment({"reference": ref}, 10000)], currency="DZD", method=method,
                       cashier_id="c0042", captured_offline=False)
        j.transition(p.payment_id, State.AUTHORIZING, actor="c0042")
        assert [q.state for q in j.recover()] == ["unknown"]
        return p.payment_id
    finally:
        ctx.close()


@pytest.mark.parametrize("actor", ["", "   ", "\u3000\u00a0", "x" * 201, "s0001\nforged line", "4761739001010010"])
def test_who_settles_must_be_what_the_server_takes(
    billing_config: config.Config, billing_server: SandboxServer, seeded_references: list[str], actor: str
) -> None:
    """`settlement.by` is the contract's Text: a blank or over-long one would have the money taken and the
    payment rejected for good; refused before anything is written, whoever calls the core (UI, CLI, script)."""
    pid = _in_doubt(billing_config, seeded_references[0])
    ctx = AgentContext.open(billing_config, ["cash"], take_payments=True)
    try:
        with pytest.raises(SettlementRefusal, match="settled by") as refused:
            ctx.flow.settle_unknown(pid, approved=True, actor=actor, code="A1B2C3", scheme="VISA", pan_masked="1234")
        assert refused.value.kind == "actor" and "4761739001010010" not in str(refused.value)
        assert ctx.journal.get(pid).state == "unknown"
        [done] = ctx.flow.settle_unknown(  # the bound itself
            pid, approved=True, actor="s" * 200, code="A1B2C3", scheme="VISA", pan_masked="1234"
        )
        assert done.state == "approved"
        ctx.sync_worker().run_once()
    finally:
        ctx.close()
    [recorded] = billing_server.recorded_payments()
    assert recorded["payment"]["settlement"]["by"] == "s" * 200 and billing_server.rejections() == []


def test_the_cli_settles_only_as_a_cashier_of_this_counter(
    guichet: Runner, billing_config: config.Config, billing_server: SandboxServer, seeded_references: list[str]
) -> None:
    pid = _in_doubt(billing_config, seeded_references[0], "cash")
    settle = ("queue", "settle", pid, "--approved", "--code", "A1B2C3")
    missing = guichet(*settle)
    assert missing.returncode == 2 and "--cashier" in missing.stderr, missing.stderr  # no default "cli"
    none = guichet(*settle, "--cashier", "s0001")
    assert none.returncode == 1 and "no cashier accounts" in none.stderr, none.stderr
    assert len(none.stderr.strip().splitlines()) == 1
    store = CashierStore.open(billing_config.state.dir)
    try:
        store.add("s0001", "Sana S.", "4826", role="supervisor")
    finally:
        store.close()
    for who, why in (("nobody", "not a cashier of this counter"), ("   ", "not a cashier of this counter")):
        r = guichet(*settle, "--cashier", who)
        assert r.returncode == 1 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert json.loads(guichet("queue", "show", pid, "--json").stdout)["state"] == "unknown"
    ok = guichet(*settle, "--cashier", "s0001")
    assert ok.returncode == 0, ok.stderr
    assert guichet("sync", "--once").returncode == 0
    assert recorded_ids(billing_server) == [pid]
    assert json.loads(guichet("queue", "show", pid, "--json").stdout)["settlement"]["by"] == "s0001"


@pytest.mark.parametrize(
    "approved_at", ["2026-11-30 10:00:00", "2026-11-30T10:00:00", "yesterday", "2026-13-01T00:00:00Z"]
)
def test_a_server_time_outside_the_contract_is_not_uploaded(
    guichet: Runner, billing_config: config.Config, billing_server: SandboxServer, seeded_references: list[str],
    s0001: str, approved_at: str,
) -> None:
    """The acquirer's record says approved, with an `approved_at` the contract's DateTime refuses: the upload
    takes the settlement's own time instead, else the approved payment would be rejected for good."""
    pid = _reader_payment_in_doubt(billing_config, seeded_references[0], 10000, reached_acquirer=True)
    txn = json.loads(guichet("queue", "show", pid, "--json").stdout)["transaction_id"]
    store = billing_server.store
    with store.lock:
        [row] = store.db.execute("SELECT response FROM authorizations WHERE payment_id = ?", (txn,)).fetchall()
        answer = json.loads(row[0])
        answer["approved_at"] = approved_at
        store.db.execute("UPDATE authorizations SET response = ? WHERE payment_id = ?", (json.dumps(answer), txn))
        store.db.commit()
    ok = guichet("queue", "settle", pid, "--approved", "--code", "X", "--cashier", s0001)
    assert ok.returncode == 0, ok.stderr
    assert guichet("sync", "--once").returncode == 0
    assert billing_server.rejections() == []
    [recorded] = billing_server.recorded_payments()
    body = recorded["payment"]
    assert body["authorization"]["approved_at"] == body["settlement"]["at"]


def test_a_ticket_without_card_digits_settles_when_the_cashier_says_so(
    tpe_guichet: tuple[Runner, TpeSimulator], billing_server: SandboxServer, seeded_references: list[str],
    s0001: str,
) -> None:
    run, sim = tpe_guichet
    pid = _approved_by_the_tpe_then_killed(run, sim, seeded_references[0])
    settle = ("queue", "settle", pid, "--approved", "--code", "A1B2C3", "--scheme", "EDAHABIA", "--cashier", s0001)
    both = run(*settle, "--no-card-digits", "--last4", LAST4)
    assert both.returncode == 1 and "not both" in both.stderr, both.stderr
    ok = run(*settle, "--no-card-digits")
    assert ok.returncode == 0, ok.stderr
    assert run("sync", "--once").returncode == 0
    [recorded] = billing_server.recorded_payments()
    assert recorded["payment"]["card"] == {"scheme": "EDAHABIA", "pan_masked": None, "pan_token": None}
    assert billing_server.rejections() == []


def test_a_scheme_is_read_as_the_rules_name_or_label_it() -> None:
    rules = [SchemeRule(name="CIB", bins=["603620"]), SchemeRule(name="VISA", bins=["4"], labels=["visa"])]
    assert ticket_scheme("Visa Debit", rules) == "VISA" and ticket_scheme("cib", rules) == "CIB"
    with pytest.raises(SettlementRefusal, match="must be one of CIB, VISA, OTHER"):
        ticket_scheme("BANKX", rules)


def _on_a_terminal(config_file: Path, args: tuple[str, ...], typed: str) -> subprocess.CompletedProcess[str]:
    """`guichet` with its stdin on a pseudo-terminal (a person at the keyboard) where ``typed`` is typed."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "GUICHET_CRASHPOINT"}
    env["GUICHET_CONFIG"] = str(config_file)
    try:
        proc = subprocess.Popen([*GUICHET, *args], stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        os.write(master, typed.encode())
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_at_a_terminal_the_masked_number_is_asked_and_declined_confirmed(
    guichet: Runner, config_file: Path, billing_config: config.Config, billing_server: SandboxServer,
    seeded_references: list[str], s0001: str,
) -> None:
    approved = _in_doubt(billing_config, seeded_references[0])
    declined = _in_doubt(billing_config, seeded_references[1])
    masked = "512345******4321"  # a MASTERCARD BIN (the default rules): it names the scheme
    r = _on_a_terminal(config_file, ("queue", "settle", approved, "--approved", "--code", "A1B2C3", "--pan-masked",
                                     "--cashier", s0001), masked + "\n")
    assert r.returncode == 0, r.stderr
    assert masked not in " ".join(r.args)  # typed, never an argument
    no = _on_a_terminal(config_file, ("queue", "settle", declined, "--declined", "--cashier", s0001), "n\n")
    assert no.returncode == 1 and "NOT charged" in no.stderr and "nothing changed" in no.stderr, no.stderr
    assert json.loads(guichet("queue", "show", declined, "--json").stdout)["state"] == "unknown"
    yes = _on_a_terminal(config_file, ("queue", "settle", declined, "--declined", "--cashier", s0001), "y\n")
    assert yes.returncode == 0, yes.stderr
    shown = {p["payment_id"]: p for p in json.loads(guichet("queue", "list", "--all", "--json").stdout)}
    assert shown[declined]["state"] == "declined"
    assert guichet("sync", "--once").returncode == 0
    [recorded] = billing_server.recorded_payments()
    assert recorded["payment_id"] == approved
    assert recorded["payment"]["card"] == {"scheme": "MASTERCARD", "pan_masked": masked, "pan_token": None}
