"""The `[printer]` and `[receipts]` sections: where receipts print, and how they are signed."""

from __future__ import annotations

from pydantic import SecretStr

from config.section import Section


class PrinterConfig(Section):
    url: str = "none"


class ReceiptsConfig(Section):
    signing_key: SecretStr = SecretStr("")
