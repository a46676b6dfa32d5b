"""The one error type of the sandbox issuer: bad input to a cryptographic function, named in one line."""

from __future__ import annotations


class IssuerError(ValueError):
    """Input the issuer cannot compute with (missing or mis-sized tag, unknown CVN, bad PAN...).

    >>> str(IssuerError("tag 9F36 is missing"))
    'tag 9F36 is missing'
    """
