"""The server's view of one payment for the cashier (`GET /v1/payments/{id}`): recorded as here, recorded
otherwise (what differs), not uploaded yet, or the server cannot be asked; never an exception."""

from __future__ import annotations

from agent.context import AgentContext
from agent.payments import server_view
from sandbox.billing.server import SandboxServer


def test_what_the_server_recorded(agent: AgentContext, billing_server: SandboxServer,
                                  seeded_references: list[str]) -> None:
    flow, client = agent.flow, agent.client
    same = flow.pay([flow.lookup(seeded_references[0])], method="cash", cashier_id="c0042").payments[0]
    other = flow.pay([flow.lookup(seeded_references[1])], method="cash", cashier_id="c0042").payments[0]
    assert server_view(client, same).status == "not_uploaded"
    client.post_batch([dict(other.to_api(), amount=other.amount + 100)])  # recorded first, otherwise
    agent.sync_worker().run_once()
    view = server_view(client, agent.journal.get(same.payment_id))
    assert (view.status, view.differences) == ("recorded", ())
    assert view.record is not None and view.record["amount"] == same.amount
    assert view.message == "recorded by the billing server, as here"
    odd = server_view(client, agent.journal.get(other.payment_id))
    assert odd.status == "recorded" and odd.differences == (f"amount {other.amount} here, {other.amount + 100}"
                                                            " on the server",)
    billing_server.stop()
    down = server_view(client, agent.journal.get(same.payment_id))
    assert down.status == "unreachable" and "\n" not in down.message
