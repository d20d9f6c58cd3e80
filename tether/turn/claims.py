"""Who is answering which question, and which stream is still open on each session.

A question is answered by one turn at a time: a double submit, a second thread, or a
second process retrying the same session must not store two answers. This client's turns
claim in memory; across processes the store claims (a lock file, or a Redis key). A new
turn on a session also ends a stream the caller left open on it, so its partial answer is
stored before the new question rather than whenever the stream is collected.

Turns of one client on one session also take turns: a second question sent while the first
is being answered (a double submit, two tasks) waits for that answer, so it is stored after
it and the model sees it. Only the start of a stream is inside that wait: a stream left open
is superseded by the next turn, as above, never waited for.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from ..sessions import Message, Session, SessionStore
from .cache import SessionCache
from .types import TurnStart

log = logging.getLogger("tether")


class Claims:
    def __init__(self, store: SessionStore, cache: SessionCache) -> None:
        self.store = store
        self.cache = cache
        self._lock = threading.Lock()  # guards _answering and _streams
        self._answering: set[str] = set()  # ids of user messages a turn of this client is answering
        self._streams: dict[str, weakref.ref[Any]] = {}
        # session id -> [lock, holders and waiters]: an entry lives only while a turn needs it
        self._turn_locks: dict[str, list[Any]] = {}
        self._aturn_locks: dict[str, list[Any]] = {}

    @contextmanager
    def turn(self, session_id: str | None) -> Iterator[None]:
        """Hold the session's turn (sync). Re-entrant: an event callback may start a turn on
        the session inside one. A new session (None) has no one to wait for."""
        if session_id is None:
            yield
            return
        entry = self._enter(self._turn_locks, session_id, threading.RLock)
        try:
            with entry[0]:
                yield
        finally:
            self._leave(self._turn_locks, session_id, entry)

    @asynccontextmanager
    async def aturn(self, session_id: str | None) -> AsyncIterator[None]:
        """Hold the session's turn (async): waiting never blocks the event loop."""
        if session_id is None:
            yield
            return
        entry = self._enter(self._aturn_locks, session_id, asyncio.Lock)
        try:
            async with entry[0]:
                yield
        finally:
            self._leave(self._aturn_locks, session_id, entry)

    def _enter(self, table: dict[str, list[Any]], sid: str, make: Callable[[], Any]) -> list[Any]:
        with self._lock:
            entry = table.get(sid)
            if entry is None:
                entry = table[sid] = [make(), 0]
            entry[1] += 1
            return entry

    def _leave(self, table: dict[str, list[Any]], sid: str, entry: list[Any]) -> None:
        with self._lock:
            entry[1] -= 1
            if entry[1] == 0 and table.get(sid) is entry:
                del table[sid]

    def claim(self, message_id: str) -> bool:
        """Mark a user message as being answered by this client; False if it is already."""
        with self._lock:
            if message_id in self._answering:
                return False
            self._answering.add(message_id)
            return True

    def claim_stored(self, session: Session, question: Message, tail: int = 1,
                     ) -> tuple[Callable[[], None] | None, Session]:
        """Claim a stored question across processes (this process holds it already), then make
        sure it is still where it was, `tail` messages from the end: another process may have
        answered it meanwhile. (release, the session as now stored), or (None, session) with
        this process's claim dropped."""
        unclaim = self.store.claim(session.id, question.id)
        if unclaim is not None:
            fresh = self.cache.load(session.id)
            if len(fresh.messages) == len(session.messages) and fresh.messages[-tail].id == question.id:
                return unclaim, fresh
            unclaim()
            session = fresh
        with self._lock:
            self._answering.discard(question.id)
        return None, session

    def release(self, ts: TurnStart) -> None:
        """The turn on ts ended (answered, failed, interrupted or cancelled)."""
        with self._lock:
            self._answering.discard(ts.user.id)
            unclaim, ts.unclaim = ts.unclaim, None
        if unclaim is not None:
            try:
                unclaim()
            except Exception as e:  # noqa: BLE001 - a claim the store cannot free expires (Redis) or dies with us
                log.warning("could not release the claim on message %s: %s", ts.user.id, e)

    def track_stream(self, session_id: str, stream: Any) -> None:
        """Remember the session's stream until a later turn on the session (see end_open_stream)."""
        def gone(ref: weakref.ref[Any], sid: str = session_id) -> None:  # no lock: may run inside GC
            if self._streams.get(sid) is ref:
                self._streams.pop(sid, None)

        with self._lock:
            self._streams[session_id] = weakref.ref(stream, gone)

    def end_open_stream(self, session_id: str) -> bool:
        """A new turn on a session ends a stream still open on it (the caller broke out of the
        loop, or moved on while it ran): its text so far is stored, marked interrupted, before
        the new question, instead of after it whenever the stream object is collected.
        True if there was one."""
        with self._lock:
            ref = self._streams.pop(session_id, None)
        stream = ref() if ref is not None else None
        if stream is None or stream.done:
            return False
        stream.supersede()
        return True
