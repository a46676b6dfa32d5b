"""What one request may cost the sandbox server: body size and JSON nesting, checked before parsing.

Contract 1.1: bodies over 1 MiB answer 413; JSON that is not well formed or nests deeper than 32 levels
answers ``400 invalid_json``. The depth is measured by a scan that skips over strings, so a 100,000-deep
document never reaches the recursive parser.

>>> parse_json(b'{"a": [1, {"b": null}]}')
{'a': [1, {'b': None}]}
>>> json_depth(b'[[["]]]]]]"]]]')
3
>>> parse_json(b"[" * 100_000 + b"]" * 100_000)  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
BadJson: body: JSON nested deeper than 32 levels
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_BODY = 1024 * 1024  # bytes
MAX_DEPTH = 32

# A JSON string (escapes included) or one bracket: the scan sees brackets only outside strings.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


class BadJson(ValueError):
    """The body is not JSON this server accepts; the message is one line naming what is wrong."""


def json_depth(raw: bytes, limit: int = MAX_DEPTH) -> int:
    """The deepest nesting of ``raw``, counting until it passes ``limit`` (then returns limit + 1)."""
    depth = deepest = 0
    for m in _TOKENS.finditer(raw):
        ch = m.group()[0]
        if ch in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif ch in b"]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise BadJson(f"body: {name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """Parse a request body: BadJson when malformed, not UTF-8, NaN/Infinity, or nested too deep."""
    if json_depth(raw) > MAX_DEPTH:
        raise BadJson(f"body: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except BadJson:
        raise
    except RecursionError:  # belt and braces: the scan above should make this unreachable
        raise BadJson(f"body: JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadJson(f"body: not valid JSON ({first[:200]})") from None
