"""Text that is safe to show in a terminal.

A model's reply, a session title from an imported file or piped text, and a provider's
error message are untrusted: an ESC in them could set the clipboard (OSC 52), retitle the
window, hide a link or move the cursor. Everything tether draws from such text passes
through `printable`, which shows control characters instead of obeying them. Stored
text is never changed; only what is drawn.
"""
from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls; a carriage return would let a line
# overwrite itself, so it goes too ("\r\n" ends a line as "\n" does)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# bidirectional embeddings, overrides and isolates: in a one-line field (a title) they
# would reorder what follows them on the row
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _picture(m: re.Match[str]) -> str:
    c = ord(m.group())
    if c == 0x0D:
        return ""
    if c < 0x20:
        return chr(0x2400 + c)  # the Control Pictures block: ESC shows as ␛
    return "\u2421" if c == 0x7F else "\ufffd"


def printable(text: str, one_line: bool = False) -> str:
    """`text` with control characters shown, not obeyed; `one_line` also folds whitespace
    runs to one space and drops bidi controls (titles, table cells)."""
    if one_line:
        text = " ".join(_BIDI.sub("", text).split())
    return _CONTROL.sub(_picture, text) if _CONTROL.search(text) else text


def well_formed(text: str) -> str:
    """`text` with each lone surrogate as U+FFFD. Undecodable input (a non-UTF-8 terminal, a
    file read with surrogateescape) holds them; UTF-8 cannot carry them, so every model call
    with the message in its window would fail to encode. A surrogate pair becomes its character."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
