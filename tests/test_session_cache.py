"""The in-memory session cache never serves history that another writer changed."""
from __future__ import annotations

from tether.turn.cache import SessionCache
from tether.sessions import Message, Session
from tether.sessions.jsonl import JsonlStore


class InterleavedStore(JsonlStore):
    """A real store where another process's append lands just before each of ours."""

    def __init__(self, root, other: JsonlStore) -> None:
        super().__init__(root)
        self.other = other
        self.armed = False

    def append_message(self, session_id, message):
        if self.armed:
            self.armed = False
            self.other.append_message(session_id, Message(role="user", content="from another process"))
        return super().append_message(session_id, message)


def test_append_racing_another_writer_is_not_mirrored(tmp_path):
    root = tmp_path / "sessions"
    other = JsonlStore(root)
    store = InterleavedStore(root, other)
    cache = SessionCache(store)
    store.create(Session(id="s"))
    session = cache.load("s")
    cache.append_message(session, Message(role="user", content="first"))
    assert [m.content for m in cache.load("s").messages] == ["first"]  # plain append: mirrored
    store.armed = True
    cache.append_message(cache.load("s"), Message(role="assistant", content="ours"))
    assert [m.content for m in cache.load("s").messages] == ["first", "from another process", "ours"]


def test_cache_follows_writes_by_another_store(tmp_path):
    root = tmp_path / "sessions"
    store, other = JsonlStore(root), JsonlStore(root)
    cache = SessionCache(store)
    store.create(Session(id="s"))
    cache.load("s")
    other.append_message("s", Message(role="user", content="elsewhere"))
    assert [m.content for m in cache.load("s").messages] == ["elsewhere"]


class WriteDuringLoadStore(JsonlStore):
    """A real store where another process appends right after each load has read the file."""

    def __init__(self, root, other: JsonlStore) -> None:
        super().__init__(root)
        self.other = other
        self.armed = False

    def load(self, session_id):
        session = super().load(session_id)
        if self.armed:
            self.armed = False
            self.other.append_message(session_id, Message(role="user", content="written during the load"))
        return session


def test_a_write_during_a_load_is_never_hidden_by_the_cache(tmp_path):
    root = tmp_path / "sessions"
    store = WriteDuringLoadStore(root, JsonlStore(root))
    cache = SessionCache(store)
    store.create(Session(id="s"))
    store.armed = True
    cache.load("s")  # read the file, then the other writer appended
    cache.append_message(cache.load("s"), Message(role="assistant", content="ours"))
    assert [m.content for m in cache.load("s").messages] == ["written during the load", "ours"]
