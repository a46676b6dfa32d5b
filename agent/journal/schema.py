"""The journal's file: its name, its released migrations (frozen) and the SQL the journal writes with.

    conn = open_database(state_dir / DB_NAME, MIGRATIONS)     # agent.storage: creates or migrates the file

>>> MOVES["approved"].step, MOVES["approved"].sources         # what a transition to a state writes and needs
(3, ('authorizing', 'unknown'))
>>> MIGRATIONS[-1][0] == len(MIGRATIONS)                      # versions 1, 2, 3...: append only
True
"""

from __future__ import annotations

from typing import Any, NamedTuple

from agent.clock import STORED_GLOB
from agent.states import ALLOWED, State

DB_NAME = "journal.db"
# What the file answers a write of a time in another form (migration 7's triggers; frozen with it).
_NOT_STORED = "not a UTC time as agent.clock stores it (an older guichet still running?)"

# Versioned migrations: append only, never edit a released one.
#
# The journal is append-only. `payment` holds what a payment is, fixed when it is created; `event` holds
# every state change, never rewritten: it is both the payment's history and its audit trail, and a
# payment's latest event is its state. `open` lists the payments not settled for good (in flight, in doubt,
# waiting for upload, rejected) with their upload attempts; a payment joins it when created and leaves it
# when uploaded, declined or cancelled. A capture (authorizing -> approved) writes its event row only: one
# B-tree page, as a bare one-row insert writes (migration 3).
# The views `payments`, `unsettled`, `outbox` and `audit` give the current picture for readers (doctor, tools).
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE payment (
            payment_id TEXT PRIMARY KEY,
            transaction_id TEXT NOT NULL,
            bill_reference TEXT NOT NULL,
            amount INTEGER NOT NULL CHECK (amount > 0),
            currency TEXT NOT NULL,
            method TEXT NOT NULL,
            agency_id TEXT NOT NULL,
            terminal_id TEXT NOT NULL,
            cashier_id TEXT NOT NULL,
            receipt_number TEXT NOT NULL UNIQUE,
            captured_at TEXT NOT NULL,
            captured_offline INTEGER NOT NULL,
            bill TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX payment_bill ON payment(bill_reference);
        CREATE INDEX payment_transaction ON payment(transaction_id);
        CREATE INDEX payment_created ON payment(created_at);
        CREATE TABLE event (
            event_id INTEGER PRIMARY KEY,  -- a rowid table: appends fill its last page, no page splits
            payment_id TEXT NOT NULL REFERENCES payment(payment_id),
            step INTEGER NOT NULL,
            state TEXT NOT NULL,
            from_state TEXT,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            card TEXT,
            authorization TEXT,
            notice TEXT,
            error TEXT,
            detail TEXT
        );
        CREATE UNIQUE INDEX event_payment ON event(payment_id, step);
        CREATE INDEX event_notice ON event(payment_id) WHERE notice IS NOT NULL;
        CREATE TABLE open (
            payment_id TEXT PRIMARY KEY REFERENCES payment(payment_id),
            state TEXT NOT NULL,
            since TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        ) WITHOUT ROWID;
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO counters (name, value) VALUES ('receipt', 0);
        CREATE VIEW payments AS
        SELECT p.payment_id, p.transaction_id, p.bill_reference, p.amount, p.currency, p.method,
               e.state,
               (SELECT x.card FROM event x WHERE x.payment_id = p.payment_id AND x.card IS NOT NULL
                ORDER BY x.step DESC LIMIT 1) AS card,
               (SELECT x.authorization FROM event x WHERE x.payment_id = p.payment_id
                AND x.authorization IS NOT NULL ORDER BY x.step DESC LIMIT 1) AS authorization,
               p.agency_id, p.terminal_id, p.cashier_id, p.receipt_number, p.captured_at, p.captured_offline,
               p.bill,
               (SELECT x.notice FROM event x WHERE x.payment_id = p.payment_id AND x.notice IS NOT NULL
                ORDER BY x.step DESC LIMIT 1) AS notice,
               (SELECT x.error FROM event x WHERE x.payment_id = p.payment_id AND x.error IS NOT NULL
                ORDER BY x.step DESC LIMIT 1) AS error,
               p.created_at, e.at AS updated_at,
               (SELECT x.at FROM event x WHERE x.payment_id = p.payment_id AND x.state = 'uploaded')
                AS uploaded_at
        FROM payment p JOIN event e ON e.payment_id = p.payment_id
         AND e.step = (SELECT MAX(m.step) FROM event m WHERE m.payment_id = p.payment_id);
        CREATE VIEW outbox AS
        SELECT payment_id, since AS enqueued_at, attempts, last_error FROM open WHERE state = 'approved';
        CREATE VIEW audit AS
        SELECT payment_id, at, from_state, state AS to_state, actor, detail FROM event;
        """,
    ),
    (
        # A payment's events are found by their key instead of a second index: event_id = seq * 8 + step,
        # where seq is the payment's receipt sequence (unique, never reused). The rowid B-tree keeps a
        # payment's events together in step order, and a state change writes two pages (its open row and
        # its event) instead of three: ~10% of a capture (`./dev bench journal`).
        2,
        """
        ALTER TABLE payment ADD COLUMN seq INTEGER;
        UPDATE payment SET seq = CAST(substr(receipt_number, length(terminal_id) + 2) AS INTEGER);
        CREATE UNIQUE INDEX payment_seq ON payment(seq);
        ALTER TABLE open ADD COLUMN seq INTEGER;
        UPDATE open SET seq = (SELECT p.seq FROM payment p WHERE p.payment_id = open.payment_id);
        DROP VIEW payments;
        DROP VIEW audit;
        CREATE TABLE event_v2 (
            event_id INTEGER PRIMARY KEY,  -- seq * 8 + step
            payment_id TEXT NOT NULL REFERENCES payment(payment_id),
            step INTEGER NOT NULL CHECK (event_id % 8 = step),
            state TEXT NOT NULL,
            from_state TEXT,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            card TEXT,
            authorization TEXT,
            notice TEXT,
            error TEXT,
            detail TEXT
        );
        INSERT INTO event_v2 (event_id, payment_id, step, state, from_state, at, actor, card, authorization,
                              notice, error, detail)
        SELECT p.seq * 8 + e.step, e.payment_id, e.step, e.state, e.from_state, e.at, e.actor, e.card,
               e.authorization, e.notice, e.error, e.detail
        FROM event e JOIN payment p USING (payment_id) ORDER BY p.seq, e.step;
        DROP TABLE event;
        ALTER TABLE event_v2 RENAME TO event;
        CREATE INDEX event_notice ON event(payment_id) WHERE notice IS NOT NULL;
        CREATE VIEW payments AS
        SELECT p.payment_id, p.transaction_id, p.bill_reference, p.amount, p.currency, p.method,
               e.state,
               (SELECT x.card FROM event x WHERE x.event_id BETWEEN p.seq * 8 AND p.seq * 8 + 7
                AND x.card IS NOT NULL ORDER BY x.event_id DESC LIMIT 1) AS card,
               (SELECT x.authorization FROM event x WHERE x.event_id BETWEEN p.seq * 8 AND p.seq * 8 + 7
                AND x.authorization IS NOT NULL ORDER BY x.event_id DESC LIMIT 1) AS authorization,
               p.agency_id, p.terminal_id, p.cashier_id, p.receipt_number, p.captured_at, p.captured_offline,
               p.bill,
               (SELECT x.notice FROM event x WHERE x.event_id BETWEEN p.seq * 8 AND p.seq * 8 + 7
                AND x.notice IS NOT NULL ORDER BY x.event_id DESC LIMIT 1) AS notice,
               (SELECT x.error FROM event x WHERE x.event_id BETWEEN p.seq * 8 AND p.seq * 8 + 7
                AND x.error IS NOT NULL ORDER BY x.event_id DESC LIMIT 1) AS error,
               p.created_at, e.at AS updated_at,
               (SELECT x.at FROM event x WHERE x.event_id = p.seq * 8 + 4 AND x.state = 'uploaded')
                AS uploaded_at
        FROM payment p JOIN event e
         ON e.event_id = (SELECT MAX(m.event_id) FROM event m WHERE m.event_id BETWEEN p.seq * 8 AND p.seq * 8 + 7);
        CREATE VIEW audit AS
        SELECT payment_id, at, from_state, state AS to_state, actor, detail FROM event;
        """,
    ),
    (
        # The open row no longer holds the state (the latest event does), so a state change that neither opens
        # nor settles a payment writes its event only: a capture writes one page instead of two. Open rows are
        # keyed by seq: the outbox drains in capture order by walking the table, with no sort and no index.
        3,
        """
        DROP VIEW outbox;
        CREATE TABLE open_v3 (
            seq INTEGER PRIMARY KEY,  -- the payment's receipt sequence
            payment_id TEXT NOT NULL REFERENCES payment(payment_id),
            attempts INTEGER NOT NULL DEFAULT 0,  -- failed uploads while approved
            last_error TEXT
        );
        INSERT INTO open_v3 (seq, payment_id, attempts, last_error)
        SELECT seq, payment_id, attempts, last_error FROM open ORDER BY seq;
        DROP TABLE open;
        ALTER TABLE open_v3 RENAME TO open;
        CREATE VIEW unsettled AS
        SELECT o.seq, o.payment_id, e.state, e.at AS since, o.attempts, o.last_error
        FROM open o JOIN event e
         ON e.event_id = (SELECT MAX(m.event_id) FROM event m WHERE m.event_id BETWEEN o.seq * 8 AND o.seq * 8 + 7);
        CREATE VIEW outbox AS
        SELECT payment_id, since AS enqueued_at, attempts, last_error FROM unsettled WHERE state = 'approved';
        -- An event must follow its payment's latest one: the file itself refuses a move from a stale state.
        CREATE TRIGGER event_follows_latest BEFORE INSERT ON event
        WHEN NEW.from_state IS NOT (SELECT e.state FROM event e WHERE e.event_id BETWEEN NEW.event_id - NEW.step
                                    AND NEW.event_id - 1 ORDER BY e.event_id DESC LIMIT 1)
        BEGIN SELECT RAISE(ABORT, 'event does not follow its payment''s latest state'); END;
        """,
    ),
    (
        # A loss the journal found in itself: committed payments gone (its high-water mark file, or the
        # server, had seen a later receipt number). No new payment while one is not accepted by a supervisor;
        # the row, with who accepted it and when, is the audit record of the loss.
        4,
        """
        CREATE TABLE incident (
            incident_id INTEGER PRIMARY KEY,
            detected_at TEXT NOT NULL,
            kind TEXT NOT NULL,           -- lost_payments (the journal.hwm file was ahead) | server_ahead
            message TEXT NOT NULL,        -- the one line shown
            journal_seq INTEGER NOT NULL, -- the journal's receipt counter when found
            expected_seq INTEGER NOT NULL, -- the receipt sequence the journal should have reached
            accepted_at TEXT,
            accepted_by TEXT
        );
        """,
    ),
    (
        # One clock convention (agent.clock): every stored time in UTC, one fixed-width form, so that text order
        # is time order. Earlier versions stored local time with its offset: rewritten here, in the migration's
        # one transaction, by utc_stamp() (agent.clock.migrate_text). `captured_at` is also part of what was
        # uploaded, and the server compares a replay byte for byte: the text as it was stays in
        # `captured_at_sent` and is what to_api() sends for these payments (same instant, same body).
        5,
        """
        ALTER TABLE payment ADD COLUMN captured_at_sent TEXT;
        UPDATE payment SET captured_at_sent = captured_at, captured_at = utc_stamp(captured_at),
                           created_at = utc_stamp(created_at);
        UPDATE event SET at = utc_stamp(at);
        UPDATE incident SET detected_at = utc_stamp(detected_at), accepted_at = utc_stamp(accepted_at);
        """,
    ),
    (
        # Contract 1.1: the stamp duty collected on a cash payment on top of its amount (minor units, the
        # payment's currency); NULL when none. The bill index gains the creation time: create's "taken on the
        # bill since its amount was read" check is one range seek, however many payments the bill has.
        6,
        """
        ALTER TABLE payment ADD COLUMN stamp_duty INTEGER CHECK (stamp_duty IS NULL OR stamp_duty >= 0);
        DROP INDEX payment_bill;
        CREATE INDEX payment_bill ON payment(bill_reference, created_at);
        """,
    ),
    (
        # The file refuses a time that is not agent.clock's stored form, whoever writes it: a version older
        # than 5 still running after the upgrade (its connection open) would write local time with its offset
        # into a file no migration will rewrite again. captured_at_sent (the text uploaded, replayed byte for
        # byte) is not checked. Rows already stored are left as migration 5 wrote them.
        # The bill index holds the receipt sequence: create's "taken since the read" test is by commit order
        # (NewPayment.seen_seq), one range seek.
        7,
        f"""
        CREATE TRIGGER payment_times_stored BEFORE INSERT ON payment
        WHEN NEW.created_at NOT GLOB '{STORED_GLOB}' OR NEW.captured_at NOT GLOB '{STORED_GLOB}'
        BEGIN SELECT RAISE(ABORT, '{_NOT_STORED}: payment.created_at, captured_at'); END;
        CREATE TRIGGER payment_times_stored_update BEFORE UPDATE OF created_at, captured_at ON payment
        WHEN (NEW.created_at IS NOT OLD.created_at AND NEW.created_at NOT GLOB '{STORED_GLOB}')
          OR (NEW.captured_at IS NOT OLD.captured_at AND NEW.captured_at NOT GLOB '{STORED_GLOB}')
        BEGIN SELECT RAISE(ABORT, '{_NOT_STORED}: payment.created_at, captured_at'); END;
        CREATE TRIGGER event_at_stored BEFORE INSERT ON event WHEN NEW.at NOT GLOB '{STORED_GLOB}'
        BEGIN SELECT RAISE(ABORT, '{_NOT_STORED}: event.at'); END;
        CREATE TRIGGER event_at_stored_update BEFORE UPDATE OF at ON event
        WHEN NEW.at IS NOT OLD.at AND NEW.at NOT GLOB '{STORED_GLOB}'
        BEGIN SELECT RAISE(ABORT, '{_NOT_STORED}: event.at'); END;
        CREATE TRIGGER incident_times_stored BEFORE INSERT ON incident
        WHEN NEW.detected_at NOT GLOB '{STORED_GLOB}' OR NEW.accepted_at NOT GLOB '{STORED_GLOB}'
        BEGIN SELECT RAISE(ABORT, '{_NOT_STORED}: incident.detected_at, accepted_at'); END;
        CREATE TRIGGER incident_times_stored_update BEFORE UPDATE OF detected_at, accepted_at ON incident
        WHEN (NEW.detected_at IS NOT OLD.detected_at AND NEW.detected_at NOT GLOB '{STORED_GLOB}')
          OR (NEW.accepted_at IS NOT OLD.accepted_at AND NEW.accepted_at NOT GLOB '{STORED_GLOB}')
        BEGIN SELECT RAISE(ABORT, '{_NOT_STORED}: incident.detected_at, accepted_at'); END;
        DROP INDEX payment_bill;
        CREATE INDEX payment_bill ON payment(bill_reference, seq);
        """,
    ),
    (
        # Contract 1.1, issue 14: a card_reader payment's chip data (JSON: the kernel's summary, TVR, TSI, CVM
        # results, cryptogram types, and `de55`, the final cryptogram's tags: what an offline TC's upload and a
        # dispute need; never 5A/57/56/9F1F/9F6B nor PIN data: checked by Journal.transition). Written once,
        # with the payment's outcome, in its transaction. `reversal`: approvals the counter could not complete
        # (the card refused or left), to send until the server acknowledges them (agent.reversals); queued in
        # the transaction that makes the payment `unknown`, so a crash loses none.
        8,
        f"""
        ALTER TABLE payment ADD COLUMN chip TEXT;
        CREATE TABLE reversal (
            transaction_id TEXT PRIMARY KEY,  -- the authorization's key (Idempotency-Key)
            reason TEXT NOT NULL,             -- card_declined_after_approval | card_removed | cancelled | timeout
            queued_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            done_at TEXT,                     -- NULL while it waits
            outcome TEXT                      -- reversed | no_approval | settled (a person settled it first)
        );
        CREATE INDEX reversal_waiting ON reversal(queued_at) WHERE done_at IS NULL;
        CREATE TRIGGER reversal_times_stored BEFORE INSERT ON reversal
        WHEN NEW.queued_at NOT GLOB '{STORED_GLOB}' OR NEW.done_at NOT GLOB '{STORED_GLOB}'
        BEGIN SELECT RAISE(ABORT, '{_NOT_STORED}: reversal.queued_at, done_at'); END;
        CREATE TRIGGER reversal_times_stored_update BEFORE UPDATE OF done_at ON reversal
        WHEN NEW.done_at IS NOT OLD.done_at AND NEW.done_at NOT GLOB '{STORED_GLOB}'
        BEGIN SELECT RAISE(ABORT, '{_NOT_STORED}: reversal.done_at'); END;
        """,
    ),
]


# The order of states along any path of the state machine: the step of an event. Every path climbs strictly,
# and a payment enters each state at most once, so (payment_id, step) identifies an event.
STEP = {
    State.CREATED: 0,
    State.AUTHORIZING: 1,
    State.CANCELLED: 2,
    State.UNKNOWN: 2,
    State.DECLINED: 3,
    State.APPROVED: 3,
    State.UPLOADED: 4,
    State.REJECTED: 4,
}
# Settled for good: their open row goes. (Rejected stays open: a supervisor must see it.)
FINAL = frozenset({State.UPLOADED, State.DECLINED, State.CANCELLED})
SOURCES = {to: tuple(s.value for s, targets in ALLOWED.items() if to in targets) for to in State}


class Move(NamedTuple):
    """What a transition to one state needs, worked out once: the capture path is hot."""

    state: str
    step: int
    sources: tuple[str, ...]
    final: bool
    point: str  # its crash points' stem: journal.<state>


# Keyed by value: a State (a str) finds its entry as fast as the plain string does.
MOVES = {to.value: Move(to.value, STEP[to], SOURCES[to], to in FINAL, f"journal.{to.value}") for to in State}


SLOTS = 8  # event ids per payment: event_id = seq * SLOTS + step (migration 2)
assert max(STEP.values()) < SLOTS
EVENT_SQL = (
    "INSERT INTO event (event_id, payment_id, step, state, from_state, at, actor, card, authorization, notice,"
    " error, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
# A payment's receipt sequence and state (its latest event). Read, then written in a second statement: an
# INSERT guarded by a subquery on its own table copies the subquery's rows aside first, and costs more.
def latest_event(t: str) -> str:
    """The key of the latest event of the payment whose `seq` is `t`.seq (a payment or open row), for
    `JOIN event e ON e.event_id = ...`: one rowid range seek."""
    return f"(SELECT MAX(m.event_id) FROM event m WHERE m.event_id BETWEEN {t}.seq * 8 AND {t}.seq * 8 + 7)"


def latest_state(t: str) -> str:
    """The state of that latest event: the payment's state, in one rowid range seek."""
    return (
        f"(SELECT e.state FROM event e WHERE e.event_id BETWEEN {t}.seq * 8 AND {t}.seq * 8 + 7"
        " ORDER BY e.event_id DESC LIMIT 1)"
    )


STATE_SQL = f"SELECT p.seq, {latest_state('p')} FROM payment p WHERE p.payment_id = ?"


def event_row(
    seq: int, pid: str, move: Move, current: str, now: str, actor: str, event: tuple[Any, ...]
) -> tuple[Any, ...]:
    """The parameters of EVENT_SQL for `pid`'s move from `current`; `event` is (card, authorization,
    notice, error, detail). Keyed seq * 8 + step: a second entry into the same state is refused."""
    return (seq * SLOTS + move.step, pid, move.step, move.state, current, now, actor, *event)
