"""The default store: one JSON Lines file per session.

Line 1 is a header record; every later line is one change (a message, an edit, a
header update, an event). An append writes one line under an inter-process lock, so
its cost does not grow with the session. A line is only ever written whole by one
`write`; a process killed mid-write leaves at most a torn last line without its
newline, which readers ignore and the next writer cuts off. Rewrites (create,
import, compaction) go through a temp file, fsync and an atomic rename.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock
from pydantic import ValidationError

from ..errors import SessionCorrupt, SessionExists, SessionNotFound
from .ids import validate_id
from .index import SessionIndex
from .store import SessionStore, search_session
from .models import HEADER_FIELDS, Message, Session, SessionEvent, SessionSummary, Totals, utcnow

log = logging.getLogger("tether.sessions")

SUFFIX = ".jsonl"
COMPACT_MIN_DEAD = 256  # dead records tolerated before load() compacts a file


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def message_record(message: Message) -> dict[str, Any]:
    """Defaults are left out of the file: a short line per message keeps loads fast."""
    return {"type": "message", "message": message.model_dump(mode="json", exclude_defaults=True)}


def session_records(session: Session) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [{"type": "header", "session": session.header_dict()}]
    records += [message_record(m) for m in session.messages]
    records += [{"type": "event", "event": e.to_dict()} for e in session.events]
    return records


def dumps(record: dict[str, Any]) -> bytes:
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    try:
        return (line + "\n").encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape rather than fail or corrupt
        return (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def write_atomic(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write a whole file so that readers see the old one or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(data):x}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb", closefd=True) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(tmp, path)  # fails if the target exists: atomic create-if-absent
            except FileExistsError:
                raise SessionExists(f"a session with id {path.stem!r} already exists") from None
        else:
            os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def split_records(data: bytes, path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Parse complete lines; a last line without newline is a torn write and is ignored."""
    torn = bool(data) and not data.endswith(b"\n")
    lines = data.split(b"\n")
    lines.pop()  # the part after the last newline: empty or torn
    try:
        records = json.loads(b"[" + b",".join(ln for ln in lines if ln.strip()) + b"]")
    except (ValueError, UnicodeDecodeError):
        records = []
        for no, ln in enumerate(lines, 1):
            if not ln.strip():
                continue
            try:
                records.append(json.loads(ln))
            except (ValueError, UnicodeDecodeError) as e:
                raise SessionCorrupt(path, f"line {no} is not valid JSON ({e})") from None
    if not all(isinstance(r, dict) for r in records):
        raise SessionCorrupt(path, "a record is not a JSON object")
    return records, torn


class Fold:
    """Replays a file's records into the session's state, as plain dicts (fast)."""

    def __init__(self, path: Path, records: list[dict[str, Any]]) -> None:
        if not records or records[0].get("type") != "header" or not isinstance(records[0].get("session"), dict):
            raise SessionCorrupt(path, "missing header record")
        self.header: dict[str, Any] = dict(records[0]["session"])
        self.messages: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.unknown: list[dict[str, Any]] = []
        self.dead = 0
        for rec in records[1:]:
            self.apply(rec)

    def apply(self, rec: dict[str, Any]) -> None:
        kind = rec.get("type")
        if kind == "message":
            m = rec["message"]
            self.messages[m["id"]] = m
            ts = m.get("timestamp")
            if ts and ts > self.header.get("updated_at", ""):
                self.header["updated_at"] = ts
        elif kind == "update":
            self.header.update(rec["fields"])
            self.dead += 1
        elif kind == "edit":
            m = self.messages.get(rec["id"])
            if m is not None:
                m.update(rec["fields"])
            self.dead += 1
        elif kind == "remove":
            self.dead += 1 + (self.messages.pop(rec["id"], None) is not None)
        elif kind == "clear":
            self.dead += 1 + len(self.messages)
            self.messages.clear()
        elif kind == "event":
            self.events.append(rec["event"])
        else:  # written by a newer tether: keep it through compaction
            self.unknown.append(rec)

    def session(self, path: Path) -> Session:
        data = dict(self.header)
        data["messages"] = list(self.messages.values())
        data["events"] = self.events
        try:
            s = Session.model_validate(data)
        except ValidationError as e:
            raise SessionCorrupt(path, f"invalid data: {e.errors()[0].get('msg')} at {e.errors()[0].get('loc')}") from None
        s.totals = Totals.of(s.messages)
        return s

    def records(self) -> list[dict[str, Any]]:
        """The minimal records that rebuild this state (for compaction)."""
        out: list[dict[str, Any]] = [{"type": "header", "session": self.header}]
        out += [{"type": "message", "message": m} for m in self.messages.values()]
        out += [{"type": "event", "event": e} for e in self.events]
        return out + self.unknown

    def summary(self) -> dict[str, Any]:
        h = self.header
        totals = Totals()
        for m in self.messages.values():
            summary_add_message(totals, m)
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


class JsonlStore(SessionStore):
    """SessionStore over `<root>/<id>.jsonl` files."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True, lock_timeout: float = 60.0) -> None:
        self.root = private_dir(Path(root))
        self.locks = private_dir(self.root / ".locks")
        self.fsync = fsync
        self.lock_timeout = lock_timeout
        self.index = SessionIndex(self)
        self.problems: dict[str, str] = {}  # files skipped by the last listing, and why

    # -- paths and locks ------------------------------------------------------------
    def path(self, session_id: str) -> Path:
        return self.root / f"{validate_id(session_id)}{SUFFIX}"

    def lock(self, session_id: str) -> FileLock:
        return FileLock(str(self.locks / f"{session_id}.lock"), timeout=self.lock_timeout, mode=0o600)

    # -- reading --------------------------------------------------------------------
    def read_fold(self, session_id: str) -> Fold:
        path = self.path(session_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SessionNotFound(session_id) from None
        except OSError as e:
            raise SessionCorrupt(path, f"cannot be read ({e.strerror})") from None
        records, _torn = split_records(data, path)
        try:
            return Fold(path, records)
        except (KeyError, TypeError, AttributeError) as e:
            raise SessionCorrupt(path, f"malformed record ({type(e).__name__}: {e})") from None

    def load(self, session_id: str) -> Session:
        fold = self.read_fold(session_id)
        session = fold.session(self.path(session_id))
        if fold.dead > max(COMPACT_MIN_DEAD, len(fold.messages)):
            self.compact(session_id)
        return session

    def exists(self, session_id: str) -> bool:
        return self.path(session_id).exists()

    # -- writing --------------------------------------------------------------------
    def create(self, session: Session) -> None:
        path = self.path(session.id)
        with self.lock(session.id):
            write_atomic(path, b"".join(dumps(r) for r in session_records(session)), exclusive=True)

    def append(self, session_id: str, *records: dict[str, Any]) -> None:
        """Append whole lines under the session's lock, repairing a torn tail first."""
        path = self.path(session_id)
        data = b"".join(dumps(r) for r in records)
        with self.lock(session_id):
            try:
                fd = os.open(path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                raise SessionNotFound(session_id) from None
            try:
                _repair_tail(fd)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def append_message(self, session_id: str, message: Message) -> None:
        self.append(session_id, message_record(message))

    def update_message(self, session_id: str, message_id: str, fields: dict[str, Any]) -> None:
        if "id" in fields:
            raise ValueError("a message's id cannot be changed")
        clean = Message.model_validate({"role": "user", "content": "", **fields}).model_dump(mode="json")
        self.append(session_id, {"type": "edit", "id": message_id, "fields": {k: clean.get(k, fields[k]) for k in fields}})

    def remove_message(self, session_id: str, message_id: str) -> None:
        self.append(session_id, {"type": "remove", "id": message_id})

    def update_header(self, session_id: str, fields: dict[str, Any]) -> None:
        bad = set(fields) - HEADER_FIELDS
        if bad:
            raise ValueError(f"cannot update session field(s): {', '.join(sorted(bad))}")
        fields = {"updated_at": utcnow(), **fields}
        probe = Session.model_validate({"id": "x", **fields}).model_dump(mode="json")
        self.append(session_id, {"type": "update", "fields": {k: probe[k] for k in fields}})

    def add_event(self, session_id: str, event: SessionEvent) -> None:
        self.append(session_id, {"type": "event", "event": event.to_dict()})

    def clear(self, session_id: str) -> None:
        self.append(session_id, {"type": "clear", "at": utcnow().isoformat()})
        self.compact(session_id)

    def compact(self, session_id: str) -> None:
        """Rewrite the file with only live records (atomic; appends wait on the lock)."""
        with self.lock(session_id):
            fold = self.read_fold(session_id)
            data = b"".join(dumps(r) for r in fold.records())
            path = self.path(session_id)
            write_atomic(path, data)
            for stale in self.root.glob(f".{path.name}.*.tmp"):  # left by a rewrite that was killed
                stale.unlink(missing_ok=True)

    def delete(self, session_id: str) -> bool:
        path = self.path(session_id)
        with self.lock(session_id):
            try:
                path.unlink()
            except FileNotFoundError:
                return False
        return True

    def replace(self, session: Session) -> None:
        """Write a whole session over any existing one (import with overwrite)."""
        with self.lock(session.id):
            write_atomic(self.path(session.id), b"".join(dumps(r) for r in session_records(session)))

    # -- listing --------------------------------------------------------------------
    def session_files(self) -> Iterator[tuple[str, os.stat_result]]:
        with os.scandir(self.root) as it:
            for entry in it:
                name = entry.name
                if name.endswith(SUFFIX) and not name.startswith("."):
                    try:
                        yield name[: -len(SUFFIX)], entry.stat()
                    except FileNotFoundError:
                        continue

    def list(self, limit: int | None = None, user_id: str | None = None, status: str | None = None) -> list[SessionSummary]:
        return self.index.list(limit=limit, user_id=user_id, status=status)

    def search(self, text: str, limit: int | None = None) -> list[tuple[SessionSummary, list[Message]]]:
        """Reads each file's raw text once and parses only files that can contain a match."""
        needle = text.casefold()
        # JSON escapes quotes, backslashes and control characters, so only plain text can prefilter raw bytes
        raw_ok = not any(c in text for c in '"\\') and all(c >= " " for c in text)
        hits = []
        for row in self.list():
            if raw_ok and needle not in (row.title or "").casefold():
                try:
                    raw = self.path(row.id).read_bytes().decode("utf-8", "replace").casefold()
                except OSError:
                    continue
                if needle not in raw:
                    continue
            hit = search_session(self, row, text)
            if hit:
                hits.append(hit)
                if limit is not None and len(hits) >= limit:
                    break
        return hits

    def close(self) -> None:
        pass


def _repair_tail(fd: int) -> None:
    """Cut a torn last line (a write killed midway) so the next line starts clean."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    pos, chunk = size, 4096
    while pos > 0:
        start = max(0, pos - chunk)
        buf = os.pread(fd, pos - start, start)
        nl = buf.rfind(b"\n")
        if nl >= 0:
            os.ftruncate(fd, start + nl + 1)
            return
        pos = start
    os.ftruncate(fd, 0)

