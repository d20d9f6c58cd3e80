"""Small helpers shared by the commands and the chat loop (neither imports the other)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import InvalidSessionId, SessionNotFound, TetherError

if TYPE_CHECKING:
    from .client import Tether


class AmbiguousSessionId(TetherError, LookupError):
    """A prefix that matches more than one session."""


def resolve_session_id(client: Tether, text: str) -> str:
    """An exact id, else a unique prefix of one: ids are long and people type the start."""
    text = text.strip()
    if not text:
        raise SessionNotFound(text)
    try:
        if client.session_exists(text):
            return text
    except InvalidSessionId:
        raise SessionNotFound(text) from None
    matches = [s.id for s in client.list_sessions() if s.id.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
        raise AmbiguousSessionId(f"session id prefix {text!r} matches {len(matches)} sessions: {shown}")
    raise SessionNotFound(text)


def most_recent_session(client: Tether) -> str | None:
    """The most recently USED session (last message or change), which `-c` continues."""
    rows = client.list_sessions(limit=1)
    return rows[0].id if rows else None
