"""Text from outside (the server, the journal, a card, the TPE, a printer, what a cashier typed) shown as it is.

A string given to a Textual widget is read as markup: a bill reference "[/]" raises MarkupError and ends the
counter, "[@click=app.quit]x" becomes a clickable action. A rich Text is never read as markup, so every such
text reaches a Static, a DataTable cell, a Button label or an OptionList through `plain()`; a notification
gets `visible()` and `markup=False`. Control characters (an ESC would reach the terminal) are shown as
visible escapes, so the cashier reads exactly what came in.

    >>> plain("[@click=app.quit]x").plain
    '[@click=app.quit]x'
    >>> visible("\\x1b[31mred")
    '\\\\x1b[31mred'
    >>> plain("line 1\\nline 2").plain
    'line 1\\nline 2'
"""

from __future__ import annotations

from rich.text import Text

# C0 controls but the line feed, DEL and C1 controls: shown as \\xNN, never sent to the terminal.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if c != 0x0A}


def visible(text: object) -> str:
    """`text` as a str with its control characters (but the line feed) written out as \\xNN."""
    return str(text).translate(_CONTROLS)


def plain(text: object, style: str = "") -> Text:
    """`text` as a rich Text: shown literally by any Textual widget, never read as markup."""
    return Text(visible(text), style=style)
