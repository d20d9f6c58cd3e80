"""A Redis-backed store for apps that run tether on several machines.

Each session is a Redis list of the same change records the JSON Lines files hold
(header first, then messages, edits, updates, events), so an append is one atomic
RPUSH whatever the session's length, and the replay logic is shared with the file
store. A sorted set orders sessions by last use; a hash caches listing summaries,
each with the list length it has folded in, so listing reads only new records.

    Tether(store="redis://localhost:6379/0")        # or RedisStore(url, prefix="tether")
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from ..errors import SessionCorrupt, SessionExists, SessionNotFound
from .ids import validate_id
from .models import Message, Session, SessionEvent, SessionSummary, utcnow
from .records import (Fold, edit_record, extend_summary, message_record, record_json, session_records, update_record,
                      valid_summary)
from .store import SessionStore

log = logging.getLogger("tether.sessions")

_summaries = TypeAdapter(list[SessionSummary])

# KEYS: log, recent zset, generation; ARGV: session id, score (or "" to keep), records...
_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))
if ARGV[2] ~= '' then  -- last use only moves forward (a message may carry an older timestamp)
  local old = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if not old or tonumber(old) < tonumber(ARGV[2]) then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
end
return 1
"""
# KEYS: log, recent zset, generation; ARGV: session id, score, mode ("create"|"replace"), records...
_WRITE = """
if ARGV[3] == 'create' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
"""
# KEYS: log, generation; ARGV: expected length, records... (compaction: only if nothing was appended meanwhile)
_COMPACT = """
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
redis.call('INCR', KEYS[2])
return 1
"""


# KEYS: claim; ARGV: token (a release deletes only its own claim, not a later one after expiry)
_UNCLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
CLAIM_SECONDS = 600  # a process that dies mid-turn holds its question this long at most


def _score(ts: str | datetime | None) -> float:
    if isinstance(ts, datetime):
        return ts.timestamp()
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return utcnow().timestamp()


class RedisStore(SessionStore):
    def __init__(self, url: str = "redis://localhost:6379/0", *, prefix: str = "tether", client: Any = None) -> None:
        if client is None:
            import redis  # optional dependency: tether[redis]

            client = redis.Redis.from_url(url)
        self.r = client
        self.prefix = prefix
        self.recent = f"{prefix}:recent"
        self.summaries = f"{prefix}:summaries"
        self._append = self.r.register_script(_APPEND)
        self._write = self.r.register_script(_WRITE)
        self._compact = self.r.register_script(_COMPACT)
        self._unclaim = self.r.register_script(_UNCLAIM)
        self.problems: dict[str, str] = {}

    def _log(self, sid: str) -> str:
        return f"{self.prefix}:s:{validate_id(sid)}"

    def _gen(self, sid: str) -> str:
        return f"{self.prefix}:gen:{sid}"

    def _label(self, sid: str) -> str:
        return f"redis key {self._log(sid)}"

    # -- reading --------------------------------------------------------------
    def _fold(self, sid: str) -> tuple[Fold, int]:
        raw = self.r.lrange(self._log(sid), 0, -1)
        if not raw:
            raise SessionNotFound(sid)
        try:
            records = [json.loads(x) for x in raw]
            return Fold(self._label(sid), records), len(raw)
        except RecursionError:  # as the file store says: one such session must not stop a listing
            raise SessionCorrupt(self._label(sid), "a record is nested too deeply") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise SessionCorrupt(self._label(sid), f"malformed record ({type(e).__name__})") from None

    def load(self, session_id: str) -> Session:
        fold, n = self._fold(session_id)
        session = fold.session(self._label(session_id))
        if fold.dead > max(256, len(fold.messages)):
            self._compact(keys=[self._log(session_id), self._gen(session_id)],
                          args=[n, *(record_json(r) for r in fold.records())])
        return session

    def has_message(self, session_id: str, message_id: str) -> bool:
        return message_id in self._fold(session_id)[0].messages

    def exists(self, session_id: str) -> bool:
        return bool(self.r.exists(self._log(session_id)))

    # -- writing --------------------------------------------------------------
    def _write_session(self, session: Session, mode: str) -> None:
        sid = session.id
        payload = [record_json(r) for r in session_records(session)]
        ok = self._write(keys=[self._log(sid), self.recent, self._gen(sid)],
                         args=[sid, _score(session.updated_at), mode, *payload])
        if not ok:
            raise SessionExists(f"a session with id {sid!r} already exists")

    def create(self, session: Session) -> None:
        self._write_session(session, "create")

    def replace(self, session: Session) -> None:
        self._write_session(session, "replace")

    def _push(self, sid: str, record: dict[str, Any], score: float | None) -> None:
        ok = self._append(keys=[self._log(sid), self.recent, self._gen(sid)],
                          args=[sid, "" if score is None else score, record_json(record)])
        if not ok:
            raise SessionNotFound(sid)

    def claim(self, session_id: str, message_id: str) -> Callable[[], None] | None:
        digest = hashlib.blake2b(message_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
        key = f"{self.prefix}:claim:{validate_id(session_id)}:{digest}"
        token = os.urandom(8).hex()
        if not self.r.set(key, token, nx=True, ex=CLAIM_SECONDS):
            return None
        return lambda: self._unclaim(keys=[key], args=[token])

    def append_message(self, session_id: str, message: Message) -> None:
        self._push(session_id, message_record(message), message.timestamp.timestamp())

    def update_message(self, session_id: str, message_id: str, fields: dict[str, Any]) -> None:
        self._push(session_id, edit_record(message_id, fields), None)

    def remove_message(self, session_id: str, message_id: str) -> None:
        self._push(session_id, {"type": "remove", "id": message_id}, None)

    def update_header(self, session_id: str, fields: dict[str, Any]) -> None:
        rec = update_record(fields)
        self._push(session_id, rec, _score(rec["fields"]["updated_at"]))

    def add_event(self, session_id: str, event: SessionEvent) -> None:
        self._push(session_id, {"type": "event", "event": event.to_dict()}, None)

    def clear(self, session_id: str) -> None:
        self._push(session_id, {"type": "clear", "at": utcnow().isoformat()}, None)
        self.compact(session_id)

    def compact(self, session_id: str) -> None:
        for _ in range(5):  # retried if an append lands between the read and the rewrite
            fold, n = self._fold(session_id)
            if self._compact(keys=[self._log(session_id), self._gen(session_id)],
                             args=[n, *(record_json(r) for r in fold.records())]):
                return

    def delete(self, session_id: str) -> bool:
        pipe = self.r.pipeline()
        pipe.delete(self._log(session_id))
        pipe.zrem(self.recent, session_id)
        pipe.hdel(self.summaries, session_id)
        pipe.delete(self._gen(session_id))
        return bool(pipe.execute()[0])

    # -- listing ----------------------------------------------------------------
    def list(self, limit: int | None = None, user_id: str | None = None, status: str | None = None) -> list[SessionSummary]:
        ids = [x.decode() for x in self.r.zrevrange(self.recent, 0, -1)]
        if not ids:
            return []
        pipe = self.r.pipeline()
        for sid in ids:
            pipe.llen(self._log(sid))
            pipe.get(self._gen(sid))
        stats = pipe.execute()
        cached = self.r.hmget(self.summaries, ids)
        rows, updates, problems = [], {}, {}
        for i, sid in enumerate(ids):
            n, gen = stats[2 * i], int(stats[2 * i + 1] or 0)
            if n == 0:
                continue
            try:
                entry = json.loads(cached[i]) if cached[i] else None
            except ValueError:  # a damaged cache entry: fold the session again
                entry = None
            try:
                if not entry or entry["gen"] != gen or entry["n"] != n:
                    entry = self._refresh(sid, entry, gen, n)
                    updates[sid] = json.dumps(entry)
            except SessionCorrupt as e:
                problems[sid] = str(e)
                log.warning("%s", e)  # as the file store does: say which session is skipped
                continue
            rows.append(entry["s"])
        if updates:
            self.r.hset(self.summaries, mapping=updates)
        self.problems = problems
        if user_id is not None:
            rows = [r for r in rows if r.get("user_id") == user_id]
        if status is not None:
            rows = [r for r in rows if r.get("status", "active") == status]
        return _summaries.validate_python(rows[:limit] if limit is not None else rows)

    def _refresh(self, sid: str, entry: dict[str, Any] | None, gen: int, n: int) -> dict[str, Any]:
        if entry and entry["gen"] == gen and entry["n"] < n:
            try:
                tail = [json.loads(x) for x in self.r.lrange(self._log(sid), entry["n"], n - 1)]
            except (ValueError, RecursionError):  # reported by the full fold below, naming the key
                tail = None
            s = extend_summary(entry["s"], tail) if tail is not None else None
            if s is not None:
                return {"s": s, "gen": gen, "n": n}
        fold, n = self._fold(sid)
        try:
            return {"s": valid_summary(fold.summary()), "gen": gen, "n": n}
        except (KeyError, TypeError, AttributeError, ValueError) as e:  # a title that is a number...
            raise SessionCorrupt(self._label(sid), f"invalid header ({type(e).__name__})") from None

    def close(self) -> None:
        self.r.close()
