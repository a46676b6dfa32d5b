"""The `[emv]` section: the terminal's EMV parameters and the CA public keys for offline data authentication."""

from __future__ import annotations

from config.section import Section


class EmvConfig(Section):
    pass
