"""Keep recently used sessions in memory between turns, re-read only when the file changed.

Loading a 1,000-message session costs milliseconds of JSON and validation on every
turn; a stat() says whether anyone (another process, another client) wrote to it
since our own last write. Only appends are mirrored in memory; any other write
we make drops the entry, so the cache can never disagree with the store.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

from ..sessions import Message, Session, SessionStore
from ..sessions.jsonl import signature


class SessionCache:
    """Up to `size` sessions holding at most `max_messages` messages in all (LRU)."""

    def __init__(self, store: SessionStore, size: int = 1024, max_messages: int = 200_000) -> None:
        self.store = store
        self.size = size
        self.max_messages = max_messages
        self._path = getattr(store, "file", None)  # only file stores can be validated by stat
        self._items: OrderedDict[str, tuple[Session, Any]] = OrderedDict()
        self._counts: dict[str, int] = {}  # messages per cached session, for the memory bound
        self._total = 0
        self._lock = threading.Lock()
        # striped per-session locks: a session's write and its mirror are one step
        self._stripes = [threading.Lock() for _ in range(64)]

    def _stat(self, session_id: str) -> os.stat_result | None:
        if self._path is None:
            return None
        try:
            return os.stat(self._path(session_id))
        except OSError:
            return None

    def _sig(self, session_id: str) -> Any:
        st = self._stat(session_id)
        return None if st is None else signature(st)

    def cheap(self, session_id: str, small_bytes: int = 32_768) -> os.stat_result | None:
        """The file's stat when load() answers from memory, or reads a file small enough (a few
        dozen messages, ~0.1 ms) for an event loop to do it inline; else None. Pass the stat on
        to load(), which then needs no second one."""
        st = self._stat(session_id)
        if st is None:
            return None
        if st.st_size <= small_bytes:
            return st
        with self._lock:
            hit = self._items.get(session_id)
        return st if hit is not None and hit[1] == signature(st) else None

    def load(self, session_id: str, st: os.stat_result | None = None) -> Session:
        """The session as stored; from memory when the file is exactly as we last left it.
        `st`: the file's stat, if just taken."""
        # taken before reading: a write during the read shows up below
        sig = signature(st) if st is not None else self._sig(session_id)
        if sig is not None:
            with self._lock:
                hit = self._items.get(session_id)
                if hit is not None and hit[1] == sig:
                    self._items.move_to_end(session_id)
                    return hit[0]
        session = self.store.load(session_id)
        if sig is not None and self._sig(session_id) == sig:
            self._put(session, sig)
        else:  # someone wrote while we read (or the load compacted): do not keep a copy of unknown age
            self.forget(session_id)
        return session

    def _put(self, session: Session, sig: Any = None) -> None:
        if self._path is None:
            return
        sig = sig or self._sig(session.id)
        if sig is None:
            return
        with self._lock:
            self._drop(session.id)
            self._items[session.id] = (session, sig)
            self._counts[session.id] = len(session.messages)
            self._total += len(session.messages)
            self._evict()

    def _evict(self) -> None:
        """Drop the least recently used entries until both bounds hold; the caller holds the lock."""
        while len(self._items) > 1 and (len(self._items) > self.size or self._total > self.max_messages):
            self._drop(next(iter(self._items)))

    def _drop(self, session_id: str) -> None:
        """Remove one entry; the caller holds the lock."""
        if self._items.pop(session_id, None) is not None:
            self._total -= self._counts.pop(session_id, 0)

    def append_message(self, session: Session, message: Message) -> None:
        """Write through, and mirror the append if our copy was current right before it."""
        # an append to this session between our write and our mirror would otherwise be lost
        with self._stripes[hash(session.id) % len(self._stripes)]:
            # file stores return the file's signature just before and just after the write,
            # taken under their lock: if "before" is what we hold, nobody else wrote in between
            where = self.store.append_message(session.id, message)
            sid = session.id
            with self._lock:
                hit = self._items.get(sid)
                current = (hit is not None and hit[0] is session and isinstance(where, tuple)
                           and len(where) == 2 and hit[1] == where[0])
                if current:  # mirror it: same entry, new signature, one more message
                    session.messages.append(message)
                    session.totals.add(message)
                    self._items[sid] = (session, where[1])
                    self._items.move_to_end(sid)
                    self._counts[sid] = self._counts.get(sid, 0) + 1
                    self._total += 1
                    self._evict()
                else:
                    self._drop(sid)

    def save_counts(self, session: Session, counts: dict[str, dict[str, int]]) -> None:
        """Write token counts our copy's messages already hold; the copy stays current if
        nobody else wrote in between (as for append_message)."""
        with self._stripes[hash(session.id) % len(self._stripes)]:
            where = self.store.save_counts(session.id, counts)
            with self._lock:
                hit = self._items.get(session.id)
                if (hit is not None and hit[0] is session and isinstance(where, tuple) and len(where) == 2
                        and hit[1] == where[0]):
                    self._items[session.id] = (session, where[1])
                else:
                    self._drop(session.id)

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._drop(session_id)
