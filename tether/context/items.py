"""A uniform, read-only view of history items (Message objects or plain dicts).

The builder works on parallel columns (ids, roles, token counts...) rather than on
the objects themselves: it is faster, and the caller gets back exactly the
objects it passed in. Columns of a growing session are cached and extended, so a
turn on a 10,000-message session only reads each item's id, content and pin.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple

from tether.sessions.models import Message
from .dates import to_seconds
from .tokens import content_tokens, overhead_tokens, tool_tokens


_ID, _CONTENT, _PINNED = attrgetter("id"), attrgetter("content"), attrgetter("pinned")
_ROLE, _NAME = attrgetter("role"), attrgetter("name")
_STAMP, _EXTRA = attrgetter("timestamp"), attrgetter("__pydantic_extra__")
_JOINS_CALL = ("tool", "function")  # results that must follow the assistant message that called for them
# Hours of silence that end a sitting: a reply after that no longer answers the message
# before it (chats between people resume with either side speaking first).
SITTING_GAP_HOURS = 4.0
_SITTING_GAP = SITTING_GAP_HOURS * 3600.0


class _Read(NamedTuple):
    """What the cached columns are checked against, read from the items every turn: a
    change to any of it changes tokens, turns or tool units."""

    ids: list[str]
    contents: list[str]
    roles: list[str]
    names: list[str | None]
    stamps: list[Any]
    tools: list[Any]  # tool calls and call id (a Message's extras), or None


class _Attrs:
    """Any object's attributes, read like a dict."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self.obj, key, default)


def fields_of(item: Any) -> Any:
    """A history item's fields as something with .get(): the dict itself, a session Message's
    field dict (plus its extra fields), or any other object's attributes. getattr on a
    Message for a field it lacks (tool_calls...) raises inside and costs 10x a dict lookup."""
    if isinstance(item, dict):
        return item
    if type(item) is Message:  # plain fields, no properties: its __dict__ is the whole story
        extra = item.__pydantic_extra__
        return {**item.__dict__, **extra} if extra else item.__dict__
    return _Attrs(item)


@dataclass
class History:
    """Parallel columns of a history, plus turn groups (a user message and what answers it)."""

    items: list[Any]
    ids: list[str]
    roles: list[str]
    names: list[str | None]
    contents: list[str]
    tokens: list[int]
    pinned: list[bool]
    timestamps: list[Any] = field(default_factory=list)
    group_of: list[int] = field(default_factory=list)
    groups: list[tuple[int, int]] = field(default_factory=list)  # [start, end) per turn
    fixed: list[int] = field(default_factory=list)  # tokens a shortened copy still costs (format, tool calls)
    atom_start: list[int] = field(default_factory=list)  # first message of the unit each message must go with
    has_atoms: bool = False  # any unit of several messages (tool calls with their results)
    cum: list[int] = field(default_factory=lambda: [0])  # tokens of the first k messages (may run past len)
    unnamed: frozenset[int] = frozenset()  # items without an id (their `ids` entry is a stand-in, "#k")

    @classmethod
    def of(cls, items: list[Any], enc_name: str) -> "History":
        """Columns for items, reusing the cached columns of the same session where unchanged."""
        n = len(items)
        # a session's own messages: typed fields, read directly (unless a text was set to a
        # non-string: Message does not validate assignments)
        contents = list(map(_CONTENT, items)) if set(map(type, items)) <= {Message} else None
        unnamed: list[int] = []  # positions of items without an id (a Message always has one)
        if contents is not None and set(map(type, contents)) <= {str}:
            ids = list(map(_ID, items))
            pinned = list(map(_PINNED, items))
            roles = list(map(_ROLE, items))
            names = list(map(_NAME, items))
            stamps = list(map(_STAMP, items))
            tools = list(map(_EXTRA, items))  # a Message's tool fields are extras
        else:
            ids, contents, pinned, roles = [""] * n, [""] * n, [False] * n, ["user"] * n
            names: list[str | None] = [None] * n
            stamps, tools = [None] * n, [None] * n
            for k, it in enumerate(items):
                f = it if type(it) is dict else fields_of(it)
                mid, content, pin = f.get("id"), f.get("content"), f.get("pinned", False)
                ids[k] = str(mid) if mid is not None else f"#{k}"
                if mid is None:
                    unnamed.append(k)
                contents[k] = content if isinstance(content, str) else ("" if content is None else str(content))
                pinned[k] = bool(pin)
                roles[k] = f.get("role") or "user"
                names[k] = f.get("name")
                stamps[k] = f.get("timestamp")
                calls, call_id = f.get("tool_calls"), f.get("tool_call_id")
                if calls or call_id:
                    tools[k] = (calls, call_id)
        read = _Read(ids, contents, roles, names, stamps, tools)
        cached = _cached(enc_name, ids, contents)
        if cached is not None:
            with cached.lock:  # threads building windows for one session extend it in turn
                if cached.matches(read) >= min(n, len(cached.ids)):
                    cached.extend(items, read, enc_name)
                    return cls._from(cached, items, pinned, read, unnamed)
        fresh = _Columns()  # a new session, or an edit or deletion: start again (private until built)
        fresh.extend(items, read, enc_name)
        h = cls._from(fresh, items, pinned, read, unnamed)
        if ids:
            _store(enc_name, ids, contents, fresh)
        return h

    @classmethod
    def _from(cls, cols: "_Columns", items: list[Any], pinned: list[bool], read: "_Read",
              unnamed: list[int]) -> "History":
        n = len(items)
        h = cls(items, read.ids, read.roles, read.names, read.contents, cols.tokens[:n], pinned, cols.stamps[:n])
        h.groups = cols.groups_upto(n)
        h.group_of = cols.group_of[:n]
        h.fixed = cols.fixed[:n]
        h.atom_start = cols.atom_start[:n]
        h.cum = cols.cum  # appended to, never changed: a prefix is all a shorter history reads
        h.has_atoms = cols.first_joined < n
        if unnamed:
            h.unnamed = frozenset(unnamed)
        return h

    def atom(self, i: int) -> list[int]:
        """The messages that must be sent together with message i: a tool call and its results."""
        start = self.atom_start[i]
        end = i + 1
        while end < len(self.ids) and self.atom_start[end] == start:
            end += 1
        return list(range(start, end))

    def __len__(self) -> int:
        return len(self.ids)


class _Columns:
    """Cached per-session columns that do not change when a message is pinned."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.contents: list[str] = []
        self.roles: list[str] = []
        self.names: list[str | None] = []
        self.tokens: list[int] = []
        self.cum: list[int] = [0]  # tokens of the first k messages
        self.stamps: list[Any] = []
        self.tools: list[Any] = []
        self.fixed: list[int] = []
        self.group_of: list[int] = []
        self.starts: list[int] = []  # start index of each turn group
        self.atom_start: list[int] = []
        self.first_joined = 1 << 62  # the first message joined to the one before it (a tool result)
        self._groups: list[tuple[int, int]] = []
        self._awaiting = False  # the current turn's question has no answer yet
        self._in_call = False  # the last message is a tool call or one of its results
        self._last_sec: float | None = None  # when the last dated message was sent
        self.lock = threading.Lock()

    def matches(self, read: _Read) -> int:
        """How many leading messages are unchanged (same id, text, role, name, time and tool fields)."""
        n = unchanged_prefix(self.ids, self.contents, read.ids, read.contents)
        mine = (self.roles, self.names, self.stamps, self.tools)
        theirs = (read.roles, read.names, read.stamps, read.tools)
        if any(a[:n] != b[:n] for a, b in zip(mine, theirs)):
            n = next(k for k in range(n) if any(a[k] != b[k] for a, b in zip(mine, theirs)))
        return n

    def extend(self, items: list[Any], read: _Read, enc: str) -> None:
        """Append columns for items[len(self.ids):] (a shorter history just uses a prefix)."""
        ids, contents, roles, names = read.ids, read.contents, read.roles, read.names
        overhead: dict[tuple[str, str | None], int] = {}
        for k in range(len(self.ids), len(items)):
            it = items[k]
            f = fields_of(it)
            role, name = roles[k], names[k]
            key = (role, name)
            oh = overhead.get(key)
            if oh is None:
                oh = overhead[key] = overhead_tokens(role, name, enc)
            self.ids.append(ids[k])
            self.contents.append(contents[k])
            self.roles.append(role)
            self.names.append(name)
            fixed = oh + tool_tokens(f, enc)
            self.tokens.append(content_tokens(it, enc) + fixed)
            self.cum.append(self.cum[-1] + self.tokens[-1])
            self.fixed.append(fixed)
            stamp = read.stamps[k]
            self.stamps.append(stamp)
            self.tools.append(read.tools[k])
            sec = to_seconds(stamp)
            resumed = sec is not None and self._last_sec is not None and sec - self._last_sec > _SITTING_GAP
            if sec is not None:
                self._last_sec = sec
            # a turn starts at each user message, at a system message between turns (a system
            # note while a question waits for its answer stays in that question's turn), and
            # at a message after a sitting's silence: people resume a chat with either side
            # first. Not at a model's answer (no speaker name) to a waiting question, however
            # late (a turn retried the next day), nor at tool results (they go with their call).
            if k == 0 or role == "user" or (role == "system" and not self._awaiting) or (
                    resumed and role not in _JOINS_CALL and (name or not self._awaiting)):
                self.starts.append(k)
            self.group_of.append(len(self.starts) - 1)
            # a tool result goes with the call that asked for it
            calls = role == "assistant" and bool(f.get("tool_calls"))
            if role in _JOINS_CALL and self._in_call:
                self.atom_start.append(self.atom_start[-1])
                self.first_joined = min(self.first_joined, k)
            else:
                self.atom_start.append(k)
                self._in_call = calls
            # the question waits until an answer that is not a tool call or a tool's result
            if role == "user":
                self._awaiting = True
            elif role == "assistant" and not calls:
                self._awaiting = False

    def groups_upto(self, n: int) -> list[tuple[int, int]]:
        """Turn groups of the first n messages, as [start, end) pairs."""
        if n == 0:
            return []
        groups, st, total = self._groups, self.starts, len(self.ids)
        if len(groups) != len(st) or (groups and groups[-1][1] != total):
            # messages were appended since: close the last group, add the new ones (not a rebuild)
            k = max(len(groups) - 1, 0)
            del groups[k:]
            groups.extend((s, st[g + 1] if g + 1 < len(st) else total) for g, s in enumerate(st[k:], k))
        last = self.group_of[n - 1]
        out = self._groups[: last + 1]
        if out[-1][1] != n:
            out[-1] = (out[-1][0], n)
        return out


_CACHE: "OrderedDict[tuple[str, str, str], _Columns]" = OrderedDict()
# an app serving many sessions at once must find each one's columns again next turn
_MAX_SESSIONS = 1024
_MAX_ITEMS = 200_000  # messages over all cached sessions (a few list slots each)


_CACHE_LOCK = threading.Lock()  # an OrderedDict's reordering is not safe across threads


def _cached(enc: str, ids: list[str], contents: list[str]) -> _Columns | None:
    if not ids:
        return None
    key = (enc, ids[0], contents[0])
    with _CACHE_LOCK:
        col = _CACHE.get(key)
        if col is not None:
            _CACHE.move_to_end(key)
    return col


def _store(enc: str, ids: list[str], contents: list[str], col: _Columns) -> None:
    with _CACHE_LOCK:
        _CACHE[(enc, ids[0], contents[0])] = col
        bound_lru(_CACHE, _MAX_SESSIONS, _MAX_ITEMS, lambda c: len(c.ids))  # only on a miss


def unchanged_prefix(mine_ids: list[str], mine_contents: list[str], ids: list[str], contents: list[str]) -> int:
    """How many leading messages a cached view of a session holds unchanged (same id and text)."""
    n = min(len(ids), len(mine_ids))
    # the usual case, nothing edited: list equality runs in C (identity first, then ==)
    if mine_ids[:n] == ids[:n] and mine_contents[:n] == contents[:n]:
        return n
    for k in range(n):
        if mine_ids[k] != ids[k] or not (mine_contents[k] is contents[k] or mine_contents[k] == contents[k]):
            return k
    return n


def bound_lru(cache: "OrderedDict[Any, Any]", max_entries: int, max_items: int, size: Callable[[Any], int],
              extra: int = 0) -> None:
    """Drop the least recently used entries (never the newest) until at most max_entries are
    left and their sizes (plus `extra` still to come) add up to at most max_items."""
    while len(cache) > max_entries:
        cache.popitem(last=False)
    total = sum(size(v) for v in cache.values()) + extra
    while len(cache) > 1 and total > max_items:
        total -= size(cache.popitem(last=False)[1])
