"""How an age reads everywhere (CLI, doctor, cashier UI): one rule, so the counter and the admin see the same.

>>> from agent.ages import age_text
>>> age_text(45), age_text(754), age_text(11_100), age_text(None)
('45 s', '12 min', '3 h 05', 'never')

The UI passes its translating formatter (``ui.i18n.t``), which takes the same English templates as msgids:

>>> french = {"{n} min": "{n} mn"}
>>> age_text(754, tr=lambda template, **kw: french.get(template, template).format(**kw))
'12 mn'
"""

from __future__ import annotations

from collections.abc import Callable


def _plain(template: str, **kwargs: object) -> str:
    return template.format(**kwargs)


def age_text(seconds: float | None, tr: Callable[..., str] = _plain) -> str:
    """A short age, truncated to its unit: "45 s", "12 min", "3 h 05"; "never" for None (never happened)."""
    if seconds is None:
        return tr("never")
    s = int(max(0, seconds))
    if s < 60:
        return tr("{n} s", n=s)
    if s < 3600:
        return tr("{n} min", n=s // 60)
    return tr("{h} h {m:02d}", h=s // 3600, m=(s % 3600) // 60)
