"""Session data: what is stored, exported and returned to apps.

Every model keeps fields it does not know (`extra="allow"`), so a file written by a
newer tether survives a round trip through an older one.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from collections.abc import Iterable
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from .ids import new_id

SCHEMA_VERSION = 1

Role = Literal["system", "user", "assistant", "tool"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Record(BaseModel):
    """Base: keeps unknown fields and gives the typed to_dict/from_dict pair."""

    # inf/NaN written as JSON's Infinity/NaN (as json.dumps does), not as null
    model_config = ConfigDict(extra="allow", validate_assignment=False, ser_json_inf_nan="constants")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):  # type: ignore[no-untyped-def]
        return cls.model_validate(data)


class Usage(Record):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Message(Record):
    id: str = Field(default_factory=new_id)
    role: Role
    content: str
    timestamp: datetime = Field(default_factory=utcnow)
    name: str | None = None
    model: str | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    # "ok"; "unanswered" (a user turn no model answered yet); "interrupted" (a partial answer)
    status: str = "ok"
    pinned: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)
    # token-count cache, keyed "<encoding>:<content hash>": a count is reused only for the text it was made from
    tokens: dict[str, int] = Field(default_factory=dict)

    def content_hash(self) -> str:
        text = self.content if isinstance(self.content, str) else str(self.content or "")  # assignments are not validated
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class SessionEvent(Record):
    """Something that happened to a session besides a message: a pin change, a fallback, an error."""

    type: str
    at: datetime = Field(default_factory=utcnow)
    data: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def pin_changed(cls, old: str | None, new: str, reason: str, configured: bool | None = None) -> "SessionEvent":
        """The record of every pin, the first one included. `configured`: whether `new` named
        a config entry (not a raw litellm string), so a later config without it is noticed."""
        data: dict[str, Any] = {"from": old, "to": new, "reason": reason}
        if configured is not None:
            data["configured"] = configured
        return cls(type="pin_changed", data=data)


class Totals(Record):
    messages: int = 0
    turns: int = 0  # answered assistant messages
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, message: Message) -> None:
        self.add_all((message,))

    def add_all(self, messages: Iterable[Message]) -> None:
        """Sum in locals, then one assignment per field (each costs ~0.5 us on a model, and
        loading a 10,000-message session would otherwise make 30,000 of them)."""
        n = turns = prompt = completion = total = 0
        cost = 0.0
        for m in messages:
            n += 1
            if m.role == "assistant":
                turns += 1
            u = m.usage
            if u:
                prompt += u.prompt_tokens
                completion += u.completion_tokens
                total += u.total_tokens
            if m.cost_usd:
                cost += m.cost_usd
        self.messages += n
        self.turns += turns
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.total_tokens += total
        self.cost_usd += cost

    @classmethod
    def of(cls, messages: list[Message], discarded: "Totals | None" = None) -> "Totals":
        """The messages' totals, plus the spend of answers since taken out (`discarded`)."""
        t = cls()
        t.add_all(messages)
        if discarded is not None:
            t.add_spend(discarded)
        return t

    def add_spend(self, other: "Totals") -> None:
        """Tokens and cost only: removed messages no longer count as messages."""
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens
        self.cost_usd += other.cost_usd


SessionStatus = Literal["active", "archived", "closed"]
STATUSES: tuple[str, ...] = get_args(SessionStatus)

# Header fields a change record may set (everything but id, messages, events, totals).
HEADER_FIELDS = frozenset(
    {"title", "updated_at", "user_id", "metadata", "context", "system", "pinned_model", "pin_reason", "status"}
)


class Session(Record):
    schema_version: int = SCHEMA_VERSION
    id: str = Field(default_factory=new_id)
    title: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    user_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    system: str | None = None
    pinned_model: str | None = None
    pin_reason: str | None = None
    status: SessionStatus = "active"
    messages: list[Message] = Field(default_factory=list)
    events: list[SessionEvent] = Field(default_factory=list)
    # the spend of answers taken out (retry, undo, clear): paid for, so still in `totals`
    discarded: Totals | None = None
    totals: Totals = Field(default_factory=Totals)

    def header_dict(self) -> dict[str, Any]:
        """The session without its messages and events (what a file's header record holds)."""
        d = self.model_dump(mode="json", exclude={"messages", "events", "totals"}, exclude_none=True)
        return d

    def summary(self) -> "SessionSummary":
        return SessionSummary(
            id=self.id,
            title=self.title,
            created_at=self.created_at,
            updated_at=self.updated_at,
            user_id=self.user_id,
            status=self.status,
            pinned_model=self.pinned_model,
            message_count=len(self.messages),
            totals=self.totals.model_copy(),
        )


class SessionSummary(Record):
    """One row of a listing: enough to choose a session without opening its transcript."""

    id: str
    title: str | None = None
    created_at: datetime
    updated_at: datetime
    user_id: str | None = None
    status: str = "active"
    pinned_model: str | None = None
    message_count: int = 0
    totals: Totals = Field(default_factory=Totals)
