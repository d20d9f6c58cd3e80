"""The interface every session backend implements (JSON Lines files by default, Redis optional).

Writes are expressed as small operations (append a message, patch the header, ...)
rather than "save the whole session", so a backend can make each one cost the
same however long the session grows.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from .models import Message, Session, SessionEvent, SessionSummary


class SessionStore(ABC):
    @abstractmethod
    def create(self, session: Session) -> None:
        """Store a new session (with any messages it already holds). Raises SessionExists."""

    @abstractmethod
    def load(self, session_id: str) -> Session:
        """Raises SessionNotFound, or SessionCorrupt naming the file."""

    @abstractmethod
    def exists(self, session_id: str) -> bool: ...

    @abstractmethod
    def append_message(self, session_id: str, message: Message) -> object:
        """Add one message; once this returns it survives the process dying.

        May return a token saying where it was written (file stores: inode and offset).
        """

    @abstractmethod
    def update_message(self, session_id: str, message_id: str, fields: dict[str, Any]) -> None:
        """Patch fields of one stored message (status, content, pinned, tokens...)."""

    def claim(self, session_id: str, message_id: str) -> Callable[[], None] | None:
        """Mark a stored question as being answered, across processes: returns the release, or
        None if another process holds it. Only questions answered again (after a failure) need
        this; a store without a shared lock claims nothing beyond its process (always succeeds)."""
        return lambda: None

    def save_counts(self, session_id: str, counts: dict[str, dict[str, int]]) -> object:
        """Store token counts (message id -> Message.tokens) a turn made for messages saved
        without them; file stores write them in one append and return where, as append_message."""
        for message_id, tokens in counts.items():
            self.update_message(session_id, message_id, {"tokens": tokens})
        return None

    @abstractmethod
    def remove_message(self, session_id: str, message_id: str) -> None: ...

    @abstractmethod
    def update_header(self, session_id: str, fields: dict[str, Any]) -> None:
        """Patch session-level fields: title, status, pinned_model, system, context, metadata..."""

    @abstractmethod
    def add_event(self, session_id: str, event: SessionEvent) -> None: ...

    @abstractmethod
    def clear(self, session_id: str) -> None:
        """Drop every message, keep the session and its settings."""

    @abstractmethod
    def delete(self, session_id: str) -> bool:
        """True if a session was deleted, False if there was none."""

    @abstractmethod
    def list(self, limit: int | None = None, user_id: str | None = None, status: str | None = None) -> list[SessionSummary]:
        """Most recently used first; never opens every transcript."""

    def search(self, text: str, limit: int | None = None) -> list[tuple[SessionSummary, list[Message]]]:
        """Sessions whose title or message text contains `text` (case-insensitive), with the matching messages.

        Generic version: loads every session. Backends override it with something cheaper.
        """
        return [hit for hit in (search_session(self, row, text) for row in self.list()) if hit][:limit]

    def has_message(self, session_id: str, message_id: str) -> bool:
        """Whether the session holds a message with this id (SessionNotFound if there is no
        session). Generic version: loads it; backends read their records without the models."""
        return any(m.id == message_id for m in self.load(session_id).messages)

    def compact(self, session_id: str) -> None:
        """Rewrite storage without dead records, if the backend has any."""

    def close(self) -> None:
        """Release connections; files need nothing."""


def search_session(store: SessionStore, row: SessionSummary, text: str) -> tuple[SessionSummary, list[Message]] | None:
    needle = text.casefold()
    try:
        session = store.load(row.id)
    except Exception:  # noqa: BLE001 - a file that vanished or broke is simply not a hit
        return None
    found = [m for m in session.messages if needle in m.content.casefold()]
    if found or needle in (row.title or "").casefold():
        return row, found
    return None
