"""A Static for translated text that wraps: right to left, it wraps the sentence itself, at its own width.

Textual wraps the text it is given; in Arabic that text is already in visual order (ui.i18n.shape), so a
wrapped Arabic sentence would show its first words on its last line (review 6, finding 6). Given an
i18n.Text, BidiStatic wraps the logical sentence at its content width (again on every resize) and puts each
line in visual order (i18n.Text.wrapped); any other content, and any left-to-right language, is Textual's.

    BidiStatic(t("Total: {total} ({n} bills)", total=..., n=3), id="total", markup=False)
    widget.update(t("Bill {ref} added", ref=ref))       # wrapped at the widget's width, first words first
"""

from __future__ import annotations

from textual import events
from textual.visual import VisualType
from textual.widgets import Static

from ui import i18n


class BidiStatic(Static):
    """A Static that wraps an i18n.Text in logical order when the language is right to left."""

    def __init__(self, content: VisualType = "", **kwargs: object) -> None:
        self._source: VisualType = content
        super().__init__(content, **kwargs)  # type: ignore[arg-type]

    def _fitted(self, content: VisualType) -> VisualType:
        width = self.content_region.width if self.is_mounted else 0
        if isinstance(content, i18n.Text) and i18n.is_rtl() and width > 0:
            return content.wrapped(width)
        return content

    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
        self._source = content
        super().update(self._fitted(content), layout=layout)

    def on_resize(self, event: events.Resize) -> None:
        fitted = self._fitted(self._source)
        if fitted is not self._source:
            super().update(fitted)
