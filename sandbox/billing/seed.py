"""Deterministic test bills: the same (count, agency, seed, currency) always gives the same bills.

Bills are generated customer by customer from one random stream, so the first K bills of a seed are the
same whatever the count asked for: ``generate_bills(5, "ORAN-07")`` is a prefix of
``generate_bills(500, "ORAN-07")``. The first customer always holds 3 unpaid bills (water, electricity,
gas), so ``GET /v1/customers/{id}/bills`` on the first reference returns several.

>>> bills = generate_bills(20, "ORAN-07")
>>> bills[0]["reference"] == first_reference("ORAN-07")
True
>>> len(seeded_references(20, "ORAN-07")) == 20
True
>>> bills[0]["status"], bills[0]["currency"]
('unpaid', 'DZD')
"""

from __future__ import annotations

import random
import re
from typing import Any

from config.money import currency as _currency

SERVICES = ("water", "electricity", "gas", "sanitation")
_GIVEN = (
    "Amel", "Karim", "Nadia", "Yacine", "Samira", "Mourad", "Lynda", "Walid", "Houda", "Sofiane",
    "Imene", "Rachid", "Meriem", "Farid", "Leila", "Nabil", "Sonia", "Hichem", "Asma", "Tarek",
)  # fmt: skip
_INITIALS = "ABBCDFGHKMMNRSTZ"
# One period per quarter of 2026; issue and due dates fixed so the data never depends on today's date.
_PERIODS = (
    ("2026-T1", "2026-04-05", "2026-05-15"),
    ("2026-T2", "2026-07-05", "2026-08-15"),
    ("2026-T3", "2026-10-05", "2026-11-15"),
    ("2026-T4", "2027-01-05", "2027-02-15"),
)


def _agency_code(agency: str) -> str:
    digits = re.sub(r"\D", "", agency)
    return (digits or "0")[-2:].rjust(2, "0")


def generate_bills(
    count: int, agency: str, *, seed: int = 1, currency: str = "DZD", start_customer: int = 0
) -> list[dict[str, Any]]:
    """``count`` bills for ``agency`` as contract Bill dicts (version 1), in a stable order.

    Statuses: the first customer's bills are unpaid; the others are mostly unpaid, ~8 % partially
    paid, ~8 % paid, ~2 % cancelled. Amounts are whole units (minor units multiple of 100), so no seeded
    amount ends in 51 (the sandbox's decline trigger for authorizations).
    """
    if count < 0:
        raise ValueError("count: must be >= 0")
    cur = _currency(currency).code
    rng = random.Random(f"guichet-sandbox:{agency}:{seed}")
    code = _agency_code(agency)
    bills: list[dict[str, Any]] = []
    refs: set[str] = set()
    n_customer = start_customer
    while len(bills) < count:
        n_customer += 1
        customer_id = f"C-{rng.randrange(10**6, 10**7):07d}"
        name = f"{rng.choice(_INITIALS)}. {rng.choice(_GIVEN)}"
        first = n_customer == start_customer + 1
        n_contracts = 3 if first else rng.randint(1, 10)
        for k in range(n_contracts):
            if len(bills) >= count:
                break
            ref = str(rng.randrange(10**11, 10**12))
            while ref in refs:  # bounded in practice: 9e11 values
                ref = str(rng.randrange(10**11, 10**12))
            refs.add(ref)
            service = SERVICES[k % 3] if first else rng.choice(SERVICES)
            period, issued, due = _PERIODS[2] if first else rng.choice(_PERIODS)
            billed = rng.randrange(5, 40_000) * 100
            status, amount_due = "unpaid", billed
            if not first:
                roll = rng.random()
                if roll < 0.08:
                    status, amount_due = "partially_paid", billed - rng.randrange(1, billed // 100) * 100
                elif roll < 0.16:
                    status, amount_due = "paid", 0
                elif roll < 0.18:
                    status = "cancelled"
            bills.append(
                {
                    "reference": ref,
                    "contract": f"{code}-{rng.randrange(100, 1000)}-{rng.randrange(0, 100000):05d}",
                    "customer_name": name,
                    "service": service,
                    "period": period,
                    "issued_on": issued,
                    "due_on": due,
                    "amount_due": amount_due,
                    "currency": cur,
                    "status": status,
                    "agency_id": agency,
                    "customer_id": customer_id,
                    "version": 1,
                }
            )
    return bills


def seeded_references(
    count: int, agency: str, *, seed: int = 1, currency: str = "DZD", status: str | None = None
) -> list[str]:
    """The references ``generate_bills`` produces, optionally only those with ``status``."""
    return [
        b["reference"]
        for b in generate_bills(count, agency, seed=seed, currency=currency)
        if status is None or b["status"] == status
    ]


def first_reference(agency: str, *, seed: int = 1) -> str:
    """The first seeded bill's reference: unpaid, its customer holds 3 unpaid bills. Stable per seed."""
    return generate_bills(1, agency, seed=seed)[0]["reference"]
