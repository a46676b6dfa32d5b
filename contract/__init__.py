"""The central billing API contract (shared/contracts/billing-api.md, version 1.1), machine-readable.

The agent's client and the sandbox server both hold to it; tests validate every body the journal can
produce against it and run schemathesis against the sandbox from it.

>>> spec = openapi()
>>> spec["openapi"]
'3.1.0'
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

SPEC_FILE = "billing-api.yaml"


@cache
def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the billing API, as a dict (parsed once)."""
    text = resources.files(__package__).joinpath(SPEC_FILE).read_text(encoding="utf-8")
    spec = yaml.safe_load(text)
    if not isinstance(spec, dict):
        raise ValueError(f"{SPEC_FILE}: not an OpenAPI document")
    return spec
