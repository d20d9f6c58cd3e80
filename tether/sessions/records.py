"""The change records every store replays: a header, then messages, edits, updates, events.

Both the JSON Lines files and the Redis lists hold the same records, so the logic
that turns them into a Session (or a listing summary) is written once, here.
"""
from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from ..errors import InvalidField, SessionCorrupt
from .models import HEADER_FIELDS, Message, Session, SessionSummary, Totals, utcnow
from .replay import Replay, check_record, time_key


@contextmanager
def gc_paused() -> Iterator[None]:
    """Build thousands of small acyclic objects without triggering full GC passes.

    Each pass walks the whole heap, so in a big process (litellm loaded, many sessions)
    they would take most of a load's or a listing's time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _static_defaults() -> dict[str, Any]:
    """Message fields with a fixed default ({} for dict fields). exclude_defaults would also
    call the id and timestamp factories per message written, only to find them different."""
    out: dict[str, Any] = {}
    for name, f in Message.model_fields.items():
        if f.is_required():
            continue
        if f.default_factory is None:
            out[name] = f.default
        elif f.default_factory in (dict, list):
            out[name] = f.default_factory()  # type: ignore[call-arg]
    return out


_DEFAULTS = _static_defaults()
_MISSING = object()


def at_default(message: Message) -> set[str]:
    """The fields exclude_defaults=True would leave out of this message."""
    d = message.__dict__
    return {k for k, v in _DEFAULTS.items() if d.get(k, _MISSING) == v}


def message_record(message: Message) -> dict[str, Any]:
    """Defaults are left out of the file: a short line per message keeps loads fast."""
    return {"type": "message", "message": message.model_dump(mode="json", exclude=at_default(message))}


def session_records(session: Session) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [{"type": "header", "session": session.header_dict()}]
    records += [message_record(m) for m in session.messages]
    records += [{"type": "event", "event": e.to_dict()} for e in session.events]
    return records


def record_json(record: dict[str, Any], *, indent: int | None = None) -> str:
    """A record as JSON text that encodes to UTF-8: readable unicode, except that a text
    holding a lone surrogate (which UTF-8 cannot carry) is written all-ASCII, escaped."""
    sep = (",", ":") if indent is None else None
    text = json.dumps(record, ensure_ascii=False, separators=sep, indent=indent)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(record, ensure_ascii=True, separators=sep, indent=indent)
    return text


class Fold(Replay):
    """A replay that can also become a Session (pydantic) or a listing summary."""

    def session(self, path: object) -> Session:
        data = dict(self.header)
        data["messages"] = list(self.messages.values())
        data["events"] = self.events
        try:
            with gc_paused():
                s = Session.model_validate(data)
        except ValidationError as e:
            raise SessionCorrupt(path, f"invalid data: {e.errors()[0].get('msg')} at {e.errors()[0].get('loc')}") from None
        s.totals = Totals.of(s.messages, s.discarded)
        return s

    def summary(self) -> dict[str, Any]:
        h = self.header
        totals = Totals()
        for m in self.messages.values():
            summary_add_message(totals, m)
        if isinstance(h.get("discarded"), dict):
            totals.add_spend(Totals.model_validate(h["discarded"]))
        return {
            "id": h.get("id"), "title": h.get("title"), "created_at": h.get("created_at"),
            "updated_at": h.get("updated_at"), "user_id": h.get("user_id"), "status": h.get("status", "active"),
            "pinned_model": h.get("pinned_model"), "message_count": totals.messages, "totals": totals.model_dump(),
        }


def summary_add_message(totals: Totals, m: dict[str, Any]) -> None:
    totals.messages += 1
    if m.get("role") == "assistant":
        totals.turns += 1
    u = m.get("usage") or {}
    totals.prompt_tokens += u.get("prompt_tokens", 0) or 0
    totals.completion_tokens += u.get("completion_tokens", 0) or 0
    totals.total_tokens += u.get("total_tokens", 0) or 0
    totals.cost_usd += m.get("cost_usd") or 0.0




def extend_summary(summary: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Fold appended records into a listing summary; None when only a full re-read can tell
    (which also reports a malformed record, naming the file)."""
    try:
        s = _extend_summary(summary, records)
        return valid_summary(s) if s is not None else None
    except (KeyError, TypeError, AttributeError, ValueError):
        return None


def valid_summary(s: dict[str, Any]) -> dict[str, Any]:
    """The summary if a listing can show it (a title that is a string...); else ValueError."""
    SessionSummary.model_validate(s)
    return s


def _extend_summary(summary: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any] | None:
    s = dict(summary)
    totals = Totals.model_validate(s["totals"])
    for rec in records:
        check_record(rec)
        kind = rec.get("type")
        if kind == "message":
            m = rec["message"]
            summary_add_message(totals, m)
            if time_key(m.get("timestamp") or "") > time_key(s.get("updated_at") or ""):
                s["updated_at"] = m["timestamp"]
        elif kind == "update":
            s.update({k: v for k, v in rec["fields"].items() if k in SUMMARY_HEADER})
        elif kind != "event":
            return None  # edits, removals, clears change totals: re-read
    s["totals"] = totals.model_dump()
    s["message_count"] = totals.messages
    return s


SUMMARY_HEADER = ("title", "user_id", "status", "pinned_model", "updated_at")


def edit_record(message_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    if "id" in fields:
        raise InvalidField("a message's id cannot be changed")
    with _fields_checked("message"):
        clean = Message.model_validate({"role": "user", "content": "", **fields}).model_dump(mode="json")
    return {"type": "edit", "id": message_id, "fields": {k: clean.get(k, fields[k]) for k in fields}}


def update_record(fields: dict[str, Any]) -> dict[str, Any]:
    bad = set(fields) - HEADER_FIELDS
    if bad:
        raise InvalidField(f"cannot update session field(s): {', '.join(sorted(bad))}")
    fields = {"updated_at": utcnow(), **fields}
    with _fields_checked("session"):
        probe = Session.model_validate({"id": "x", **fields}).model_dump(mode="json")
    return {"type": "update", "fields": {k: probe[k] for k in fields}}


@contextmanager
def _fields_checked(what: str) -> Iterator[None]:
    """A bad field value as InvalidField naming the field, what it must be and what it got
    (pydantic's own report is a multi-line dump about a model the caller never saw)."""
    try:
        yield
    except ValidationError as e:
        parts = [f"{'.'.join(map(str, err['loc'])) or what}: {err['msg'].lower()} (got {err.get('input')!r:.60})"
                 for err in e.errors()]
        raise InvalidField(f"invalid {what} field " + "; ".join(parts)) from None
    except PydanticSerializationError as e:  # e.g. metadata={"k": object()}: it cannot go in a JSON file
        raise InvalidField(f"invalid {what} field: a value that cannot be stored as JSON ({e})") from None
