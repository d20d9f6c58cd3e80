"""Reading session records without pydantic: parsing lines and replaying them into plain dicts.

Kept free of the models so light paths (the CLI resuming a chat, listing) can show a
session before pydantic and the client have loaded; `records.Fold` builds on this.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import SessionCorrupt

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # O_NONBLOCK: a planted FIFO must not hang a read
LINK_REFUSED = "a symbolic link, which tether does not follow in its folders (it could point anywhere): remove it"


class NotRegular(OSError):
    """A folder, FIFO or device where a file tether reads should be."""


def read_regular(path: Path) -> bytes:
    """A file's bytes, never read through a link nor from a FIFO or device (which could point
    anywhere, or hang): OSError otherwise (ELOOP for a link, NotRegular)."""
    fd = os.open(path, _READ)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise NotRegular(f"{path} is not a regular file")
        return f.read()


def read_session_file(path: Path) -> bytes:
    """A session file's bytes by read_regular; FileNotFoundError if there is none, SessionCorrupt
    naming the file if it is a link, not a regular file or cannot be read."""
    try:
        return read_regular(path)
    except FileNotFoundError:
        raise
    except OSError as e:
        why = (LINK_REFUSED if os.path.islink(path) else "not a regular file" if isinstance(e, (NotRegular, IsADirectoryError))
               else f"cannot be read ({e.strerror})")
        raise SessionCorrupt(path, why) from None


def split_records(data: bytes, path: object) -> tuple[list[dict[str, Any]], int]:
    """Parse complete lines, and the offset just past the last record read.

    A last line without its newline is a torn write (ignored) unless it is a whole JSON
    object: a file written by hand or by another tool ("\\n".join), or a write killed just
    before its newline. Such a record is whole, so it is kept."""
    lines = data.split(b"\n")
    tail = lines.pop()  # the part after the last newline: empty, torn, or a whole record
    end = len(data) - len(tail)
    if tail.strip() and is_record(tail):
        lines.append(tail)
        end = len(data)
    try:
        records = json.loads(b"[" + b",".join(ln for ln in lines if ln.strip()) + b"]")
    except (ValueError, UnicodeDecodeError, RecursionError):
        records = []
        for no, ln in enumerate(lines, 1):
            if not ln.strip():
                continue
            try:
                records.append(json.loads(ln))
            except (ValueError, UnicodeDecodeError) as e:
                raise SessionCorrupt(path, f"line {no} is not valid JSON ({json_problem(e)})") from None
            except RecursionError:  # one hostile file must not stop every listing, unnamed
                raise SessionCorrupt(path, f"line {no} is nested too deeply") from None
    if not all(isinstance(r, dict) for r in records):
        raise SessionCorrupt(path, "a record is not a JSON object")
    return records, end


def json_problem(e: ValueError) -> str:
    """json's error in plain words: int() refuses a number of more than 4300 digits with a
    message about sys.set_int_max_str_digits, which tells a user nothing about their file."""
    if "integer string conversion" in str(e):
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return str(e)


DISCARDED_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "cost_usd")
LEGACY_SUMMARY_KEY = "context_summary"  # context.summary.META_KEY (sessions imports nothing of ours)


def check_file_id(path: Path, session_id: object) -> None:
    """A store's file is named by the id in its header: a file copied or renamed by hand
    would otherwise list under an id that opens another file (or none)."""
    name = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    if session_id != name:
        raise SessionCorrupt(path, f"holds session {session_id!r}, but a session file is named by its id: "
                                   f"if it was renamed, name it {session_id}.jsonl again; if it is a copy, "
                                   "move it out of the sessions folder")


def is_record(line: bytes) -> bool:
    """Whether a line is one whole JSON object (a torn write never is). One nested too deeply
    to parse counts as whole, so the reader reports it (naming the file) rather than dropping it."""
    try:
        return isinstance(json.loads(line), dict)
    except RecursionError:
        return line.lstrip()[:1] == b"{" and line.rstrip()[-1:] == b"}"
    except (ValueError, UnicodeDecodeError):
        return False


def check_record(rec: dict[str, Any]) -> None:
    """The shape every reader relies on (values are the models' business); raises KeyError or
    TypeError, which readers report as a corrupt file."""
    kind = rec.get("type")
    if kind == "message":
        m = rec["message"]
        if not isinstance(m, dict) or "id" not in m or "role" not in m or "content" not in m:
            raise TypeError("a message needs an object with 'id', 'role' and 'content'")
        if not isinstance(m.get("timestamp", ""), str):
            raise TypeError("a message's timestamp is not a string")
    elif kind in ("update", "edit"):
        fields = rec["fields"]
        if not isinstance(fields, dict):
            raise TypeError("'fields' is not an object")
        if not isinstance(fields.get("updated_at", ""), str):
            raise TypeError("'updated_at' is not a string")
    elif kind == "event" and not (isinstance(rec["event"], dict) and "type" in rec["event"]):
        raise TypeError("an event needs an object with a 'type'")


def time_key(ts: str) -> str:
    """A stored timestamp as a string that sorts by time. JSON drops a zero microsecond part
    ("...00Z" vs "...00.000001Z", where "." < "Z") and an import may keep an offset, so the
    strings themselves do not sort; most are already in the full form and return as they are."""
    if not isinstance(ts, str):
        return ""
    if len(ts) == 27 and ts[-1] == "Z" and ts[19] == ".":
        return ts
    if len(ts) == 20 and ts[-1] == "Z":
        return ts[:19] + ".000000Z"
    try:
        t = datetime.fromisoformat(ts)
    except (TypeError, ValueError):
        return ts
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    return t.isoformat(timespec="microseconds") + "Z"


def _spend(messages: Any) -> list[Any]:
    """[prompt, completion, total tokens, cost] of message dicts, in DISCARDED_FIELDS' order."""
    spent: list[Any] = [0, 0, 0, 0.0]
    for m in messages:
        u = m.get("usage") or {}
        spent[0] += u.get("prompt_tokens", 0) or 0
        spent[1] += u.get("completion_tokens", 0) or 0
        spent[2] += u.get("total_tokens", 0) or 0
        spent[3] += m.get("cost_usd") or 0.0
    return spent


class Replay:
    """Replays a file's records into the session's state, as plain dicts (fast)."""

    def __init__(self, path: object, records: list[dict[str, Any]]) -> None:
        if not records or records[0].get("type") != "header" or not isinstance(records[0].get("session"), dict):
            raise SessionCorrupt(path, "missing header record")
        self.header: dict[str, Any] = dict(records[0]["session"])
        spent = self.header.get("discarded")
        if spent is not None and not (isinstance(spent, dict) and all(
                isinstance(spent.get(k, 0), (int, float)) for k in DISCARDED_FIELDS)):
            raise SessionCorrupt(path, "invalid header: 'discarded' is not a record of tokens and cost")
        self.messages: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.unknown: list[dict[str, Any]] = []
        self.dead = 0
        for no, rec in enumerate(records[1:], 2):
            try:
                self.apply(rec)
            except (KeyError, TypeError, AttributeError, ValueError) as e:
                raise SessionCorrupt(path, f"record {no} is malformed ({type(e).__name__}: {e})") from None

    def apply(self, rec: dict[str, Any]) -> None:
        check_record(rec)
        kind = rec.get("type")
        if kind == "message":
            m = rec["message"]
            key = m["id"]
            if key in self.messages:  # a duplicate id (an imported file, say) must not hide a message
                key = f"{key}\x00{len(self.messages)}"
            self.messages[key] = m
            ts = m.get("timestamp")
            if ts and time_key(ts) > time_key(self.header.get("updated_at") or ""):
                self.header["updated_at"] = ts
        elif kind == "update":
            self.header.update(rec["fields"])  # check_record made sure it is an object
            self.dead += 1
        elif kind == "edit":
            m = self.messages.get(rec["id"])
            if m is not None:
                m.update(rec["fields"])
            self.dead += 1
        elif kind == "remove":
            m = self.messages.pop(rec["id"], None)
            self.dead += 1 + (m is not None)
            if m is not None:
                self._discard((m,))
        elif kind == "clear":
            self._discard(self.messages.values())
            # summaries hold the cleared conversation's text: they go with it
            kept = [e for e in self.events if e.get("type") != "summary"]
            self.dead += 1 + len(self.messages) + len(self.events) - len(kept)
            self.messages.clear()
            self.events = kept
            meta = self.header.get("metadata")
            if isinstance(meta, dict) and LEGACY_SUMMARY_KEY in meta:  # where older versions kept it
                self.header["metadata"] = {k: v for k, v in meta.items() if k != LEGACY_SUMMARY_KEY}
        elif kind == "event":
            self.events.append(rec["event"])
        else:  # written by a newer tether: keep it through compaction
            self.unknown.append(rec)

    def _discard(self, messages: Any) -> None:
        """Messages taken out were still paid for: their tokens and cost go to the header's
        `discarded`, which compaction keeps, so the session's totals never shrink."""
        spent = _spend(messages)
        if any(spent):
            d = dict(self.header.get("discarded") or {})
            for k, v in zip(DISCARDED_FIELDS, spent):
                d[k] = (d.get(k) or 0) + v
            self.header["discarded"] = d

    def spent(self) -> tuple[int, float]:
        """Total tokens and cost of the session: its messages and those taken out (a resumed
        chat's toolbar, drawn before the models load)."""
        held = _spend(self.messages.values())
        gone = self.header.get("discarded") or {}
        return held[2] + (gone.get("total_tokens") or 0), held[3] + (gone.get("cost_usd") or 0.0)

    def records(self) -> list[dict[str, Any]]:
        """The minimal records that rebuild this state (for compaction)."""
        out: list[dict[str, Any]] = [{"type": "header", "session": self.header}]
        out += [{"type": "message", "message": m} for m in self.messages.values()]
        out += [{"type": "event", "event": e} for e in self.events]
        return out + self.unknown
