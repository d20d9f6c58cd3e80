"""Export and import: one JSON document per session (Oblix's shape plus tether's fields), and Markdown.

Import accepts tether exports, plain Oblix session files unchanged, and tether's own
JSON Lines session files, so users can move sessions in from the peer tether is
modelled on without a conversion step.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ImportFormatError
from .ids import new_id, validate_id
from .models import Session, Totals, utcnow
from .records import record_json
from .replay import json_problem

EXPORT_FORMAT = "tether.session"


def export_dict(session: Session) -> dict[str, Any]:
    """Oblix's keys first (id, title, created_at, updated_at, messages, context, metadata), then tether's."""
    d = session.model_dump(mode="json", exclude_none=True)
    d["messages"] = [
        {k: v for k, v in m.items() if k != "tokens"} for m in d.get("messages", [])
    ]  # token caches are derived data
    front = {k: d.pop(k) for k in ("id", "title", "created_at", "updated_at", "messages", "context", "metadata") if k in d}
    front.setdefault("title", None)
    return {**front, "format": EXPORT_FORMAT, **d}


def export_json(session: Session) -> str:
    return record_json(export_dict(session), indent=2)


def export_markdown(session: Session) -> str:
    lines = [f"# {session.title or 'Untitled session'}", ""]
    meta = [f"- id: `{session.id}`", f"- created: {session.created_at.isoformat(timespec='seconds')}"]
    if session.pinned_model:
        meta.append(f"- model: `{session.pinned_model}`")
    t = session.totals
    meta.append(f"- messages: {t.messages}, tokens: {t.total_tokens}, cost: ${t.cost_usd:.6f}")
    lines += meta + [""]
    if session.system:
        lines += ["## system", "", session.system, ""]
    if session.context:
        lines += ["## context", "", "```json", json.dumps(session.context, indent=2, ensure_ascii=False), "```", ""]
    for m in session.messages:
        who = m.role + (f" ({m.model})" if m.model else "") + (f" [{m.status}]" if m.status != "ok" else "")
        lines += [f"## {who} · {m.timestamp.isoformat(timespec='seconds')}", "", m.content, ""]
    return _SURROGATE.sub("\ufffd", "\n".join(lines))  # for people: a lone surrogate shows as �


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_import(data_or_path: str | bytes | Path | dict[str, Any]) -> Session:
    """A Session from an export document, an Oblix file, a tether .jsonl file, or their text.

    Every problem is an ImportFormatError naming the source, so a batch import reports the
    bad file and goes on with the next."""
    source = "input"
    if isinstance(data_or_path, Path) or (isinstance(data_or_path, str) and not data_or_path.lstrip()[:1] in ("{", "[") and "\n" not in data_or_path):
        source = str(data_or_path)
    try:
        session = _parse(data_or_path, source)
        _check_storable(session, source)
    except RecursionError:  # json, pydantic: a file nested thousands deep
        raise ImportFormatError(f"{source}: nested too deeply") from None
    clamp_future(session, utcnow())
    fresh_duplicate_ids(session)
    return session


def fresh_duplicate_ids(session: Session) -> None:
    """A later message reusing an earlier one's id gets a new id (content and order kept):
    removing and editing go by id and hit the first match, so `/undo` removed the earlier
    pair of a file holding ids A, B, A, B."""
    seen: set[str] = set()
    for m in session.messages:
        if m.id in seen:
            m.id = new_id()
        seen.add(m.id)


FUTURE_SKEW = timedelta(days=1)  # clocks that disagree by less are left alone


def clamp_future(session: Session, now: datetime) -> None:
    """Times after `now` (beyond clock skew) become `now`: `chat -c` continues the session used
    last, and one dated 9999 would take over every `-c` for good. A clamped message is never
    earlier than the one before it, so the messages keep their order in time."""
    limit = now + FUTURE_SKEW
    prev: datetime | None = None
    for m in session.messages:
        if _utc(m.timestamp) > limit:
            m.timestamp = max(now, prev) if prev is not None else now
        prev = _utc(m.timestamp)
    if _utc(session.updated_at) > limit:
        session.updated_at = max(now, prev) if prev is not None else now
    if _utc(session.created_at) > limit:
        session.created_at = now


def _utc(value: datetime) -> datetime:
    """A naive time (from a .jsonl file written by hand) compared as UTC, as the store reads it."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _parse(data_or_path: str | bytes | Path | dict[str, Any], source: str) -> Session:
    if isinstance(data_or_path, dict):
        return _from_document(data_or_path, source)
    if source != "input":
        path = Path(data_or_path)  # type: ignore[arg-type]
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise ImportFormatError(f"cannot read {path}: {e.strerror or e}") from None
    else:
        # text with a lone surrogate (from a file read with surrogateescape...) stays readable as JSON
        raw = data_or_path.encode("utf-8", "backslashreplace") if isinstance(data_or_path, str) else data_or_path  # type: ignore[union-attr]
    try:
        doc = json.loads(raw)
    except ValueError as first:
        if b'"type":"header"' in raw[:200].replace(b" ", b""):
            return _from_jsonl(raw, source)
        raise ImportFormatError(f"{source} is not JSON: {json_problem(first)}") from None
    if isinstance(doc, dict) and doc.get("type") == "header":  # a .jsonl file of one line
        return _from_jsonl(raw, source)
    return _from_document(doc, source)


def _check_storable(session: Session, source: str) -> None:
    """Refuse here what the store could not write: pydantic serializes only so deep (about
    250 levels), and the error came from the store, after a valid-looking import."""
    try:
        session.model_dump(mode="json")
    except ValueError as e:
        if "depth" in str(e):
            raise ImportFormatError(f"{source}: nested too deeply") from None
        raise ImportFormatError(f"{source}: cannot be stored: {e}") from None


def _from_jsonl(raw: bytes, source: str) -> Session:
    from ..errors import InvalidSessionId, SessionCorrupt
    from .replay import split_records
    from .records import Fold

    try:
        records, _ = split_records(raw, Path(source))
        session = Fold(Path(source), records).session(Path(source))
        validate_id(session.id)
        return session
    except SessionCorrupt as e:  # split_records and Fold report any malformed record as this
        raise ImportFormatError(f"{source} is not a readable tether session file: {e}") from None
    except InvalidSessionId as e:
        raise ImportFormatError(f"{source}: {e}") from None


def _from_document(doc: Any, source: str) -> Session:
    if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list) or "id" not in doc:
        raise ImportFormatError(f"{source} is not a session: expected an object with 'id' and 'messages'")
    try:
        validate_id(str(doc["id"]))
    except ValueError as e:
        raise ImportFormatError(f"{source}: {e}") from None
    d = {k: v for k, v in doc.items() if k not in ("format", "totals")}
    d["id"] = str(doc["id"])
    if d.get("context") is None:
        d["context"] = {}
    if d.get("metadata") is None:
        d["metadata"] = {}
    msgs = []
    for i, m in enumerate(d.get("messages") or []):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ImportFormatError(f"{source}: message {i} needs 'role' and 'content'")
        m = dict(m)
        if m.get("content") is None:
            m["content"] = ""
        if m.get("id") is not None:
            m["id"] = str(m["id"])
        else:
            m.pop("id", None)
        if m.get("timestamp") is None:
            m.pop("timestamp", None)
        msgs.append(m)
    d["messages"] = msgs
    if d.get("created_at") is None:
        d.pop("created_at", None)
    if d.get("updated_at") is None:
        d.pop("updated_at", None)
    try:
        session = Session.model_validate(d)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ()))
        raise ImportFormatError(f"{source}: invalid value at {where}: {err.get('msg')}") from None
    # Oblix writes local times without an offset: read as UTC, a session from east of
    # Greenwich sat hours in the future and `chat -c` kept picking it. Read them as local.
    fields = [(session, "created_at", "created_at"), (session, "updated_at", "updated_at"),
              *((m, "timestamp", f"messages.{i}.timestamp") for i, m in enumerate(session.messages))]
    for obj, name, where in fields:
        value = getattr(obj, name)
        if isinstance(value, datetime) and value.tzinfo is None:
            try:
                setattr(obj, name, value.astimezone(timezone.utc))
            except (ValueError, OverflowError):  # year 1 or 9999 moved past the calendar's ends
                raise ImportFormatError(f"{source}: invalid value at {where}: date out of range ({value})") from None
    session.totals = Totals.of(session.messages, session.discarded)
    return session
