"""The `[cash]` section: whether cash is taken, stamp duty, the drawer's denominations."""

from __future__ import annotations

from config.section import Section


class CashConfig(Section):
    pass
