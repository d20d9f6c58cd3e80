"""The interface every session backend implements (JSON Lines files by default, Redis optional).

Writes are expressed as small operations (append a message, patch the header, ...)
rather than "save the whole session", so a backend can make each one cost the
same however long the session grows.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
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
    def append_message(self, session_id: str, message: Message) -> None:
        """Durably add one message; returns only once it would survive the process dying."""

    @abstractmethod
    def update_message(self, session_id: str, message_id: str, fields: dict[str, Any]) -> None:
        """Patch fields of one stored message (status, content, pinned, tokens...)."""

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

    def compact(self, session_id: str) -> None:
        """Rewrite storage without dead records, if the backend has any."""

    def close(self) -> None:
        """Release connections; files need nothing."""
