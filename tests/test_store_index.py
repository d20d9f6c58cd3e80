"""The listing index and compaction: kept current from the bytes appended since, rebuilt when it
cannot be trusted, never mistaking one file for another."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import tether
from tether.sessions.jsonl import JsonlStore

from conftest import sessions_dir


def test_index_rebuilt_when_missing_or_garbage(client):
    ids = [client.create_session(title=f"s{i}") for i in range(3)]
    client.add_message(ids[0], "user", "x")
    index = sessions_dir(client) / ".index.json"
    first = client.list_sessions()
    index.unlink()
    assert client.list_sessions() == first
    index.write_text("garbage{")
    assert client.list_sessions() == first
    assert json.loads(index.read_text())["version"] == 1


def test_index_extends_incrementally_without_rereading_old_lines(client):
    sid = client.create_session(title="t")
    client.add_message(sid, "user", "one")
    assert client.list_sessions()[0].message_count == 1
    path = sessions_dir(client) / f"{sid}.jsonl"
    # Overwrite the already-indexed messages in place (same inode, same length) with junk:
    # a listing that re-read the whole file would now fail; one that reads only new lines
    # (and the header line, which says the file is the same one) works.
    data = path.read_bytes()
    header = data.index(b"\n") + 1
    with open(path, "r+b") as f:
        f.seek(header)
        f.write(b" " * (len(data) - header - 1))
    client.store.append(sid, {"type": "message", "message": {"id": "m2", "role": "assistant", "content": "two", "timestamp": "2099-01-01T00:00:00Z"}})
    [row] = client.list_sessions()
    assert row.message_count == 2 and row.updated_at.year == 2099 and row.title == "t"


def test_a_session_deleted_and_created_again_under_its_id_is_listed_as_the_new_one(client):
    """The freed inode is often handed straight back, with a header of the same size."""
    sid = client.create_session(session_id="chat-42", title="Alice chat", user_id="alice")
    client.list_sessions()
    client.delete_session(sid)
    client.create_session(session_id="chat-42", title="Bobby chat", user_id="bobby")
    [row] = client.list_sessions()
    assert (row.title, row.user_id) == ("Bobby chat", "bobby")
    client.add_message(sid, "user", "hello from bob")  # grown: the entry is extended, not re-read
    [row] = client.list_sessions()
    assert (row.title, row.user_id, row.message_count) == ("Bobby chat", "bobby", 1)
    assert [r.id for r in client.list_sessions(user_id="bobby")] == [sid]
    assert client.list_sessions(user_id="alice") == []


def test_the_index_does_not_extend_another_file_under_the_same_inode(client):
    """Another process may replace a file without this store's delete (the index is shared):
    the header line tells the files apart even when inode and offset match."""
    sid = client.create_session(title="Alice chat", user_id="alice")
    client.list_sessions()
    path = sessions_dir(client) / f"{sid}.jsonl"
    old = path.read_bytes()
    new = old.replace(b'"alice"', b'"bobby"').replace(b"Alice", b"Bobby")
    with open(path, "r+b") as f:  # same inode, same length, then grown
        f.write(new)
    client.store.append(sid, {"type": "message", "message": {"id": "m1", "role": "user", "content": "hi",
                                                             "timestamp": "2099-01-01T00:00:00Z"}})
    [row] = client.list_sessions()
    assert (row.title, row.user_id, row.message_count) == ("Bobby chat", "bobby", 1)


def test_listing_again_reuses_the_parsed_index_until_another_writer_replaces_it(client):
    ids = [client.create_session(title=f"s{i}") for i in range(3)]
    first = client.list_sessions()
    index = sessions_dir(client) / ".index.json"
    st = index.stat()
    # junk of the same length in place, with the old mtime put back: only a listing that
    # re-parsed the file would notice it (and rebuild the index over it)
    junk = b"x" * st.st_size
    with open(index, "r+b") as f:
        f.write(junk)
    os.utime(index, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert client.list_sessions() == first
    assert index.read_bytes() == junk
    # another store (another process) rewrites the index: it is read again, not overwritten
    index.unlink()
    other = JsonlStore(sessions_dir(client))
    other.create(tether.Session(title="theirs"))
    assert len(other.list()) == 4
    written = index.stat()
    assert {r.title for r in client.list_sessions()} == {"s0", "s1", "s2", "theirs"}
    after = index.stat()
    assert (after.st_ino, after.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert ids[0] in {r.id for r in client.list_sessions()}


def test_index_follows_header_updates_and_compaction(client):
    sid = client.create_session(title="a")
    client.list_sessions()
    client.rename_session(sid, "b")
    client.store.update_header(sid, {"pinned_model": "gpt-x"})
    row = client.list_sessions()[0]
    assert (row.title, row.pinned_model) == ("b", "gpt-x")
    client.store.compact(sid)
    assert client.list_sessions()[0].title == "b"
    assert client.load_session(sid).pinned_model == "gpt-x"


def test_compaction_removes_only_stale_temp_files(client):
    """A killed rewrite's temp file goes; one that another live writer is filling stays
    (deleting it would fail that writer's rename)."""
    sid = client.create_session()
    client.add_message(sid, "user", "hello")
    folder = sessions_dir(client)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = folder / f".{sid}.jsonl.{dead.pid}.1a.tmp"
    live = folder / f".{sid}.jsonl.{os.getpid()}.2b.tmp"
    old_live = folder / f".{sid}.jsonl.{os.getpid()}.3c.tmp"
    # ids may hold dots: this is session "<sid>.jsonl.<dead pid>"'s live temp file, not ours
    other = folder / f".{sid}.jsonl.{dead.pid}.jsonl.{os.getpid()}.4d.tmp"
    for f in (killed, live, old_live, other):
        f.write_bytes(b"partial")
    os.utime(old_live, (time.time() - 7200, time.time() - 7200))
    client.store.compact(sid)
    assert not killed.exists() and not old_live.exists()
    assert live.exists() and other.exists()
    assert [m.content for m in client.load_session(sid).messages] == ["hello"]


def test_compaction_keeps_state_and_unknown_records(client):
    sid = client.create_session()
    mids = [client.add_message(sid, "user", f"m{i}").id for i in range(4)]
    client.update_message(sid, mids[0], content="edited")
    client.store.remove_message(sid, mids[1])
    client.rename_session(sid, "renamed")
    client.store.append(sid, {"type": "from-the-future", "payload": [1, 2]})
    before = client.load_session(sid)
    path = sessions_dir(client) / f"{sid}.jsonl"
    n_before = len(path.read_bytes().splitlines())
    client.store.compact(sid)
    after = client.load_session(sid)
    assert after.model_dump() == before.model_dump()
    lines = path.read_bytes().splitlines()
    assert len(lines) < n_before
    assert any(b"from-the-future" in ln for ln in lines)


def test_load_compacts_files_with_many_dead_records(client):
    sid = client.create_session()
    mid = client.add_message(sid, "user", "x").id
    for i in range(300):
        client.store.update_message(sid, mid, {"content": f"v{i}"})  # the store: no load between edits
    path = sessions_dir(client) / f"{sid}.jsonl"
    assert len(path.read_bytes().splitlines()) > 300
    assert client.load_session(sid).messages[0].content == "v299"
    assert len(path.read_bytes().splitlines()) == 2
    assert client.load_session(sid).messages[0].content == "v299"


def test_index_temp_files_of_killed_listings_are_swept(client):
    client.create_session()
    folder = sessions_dir(client)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = folder / f"..index.json.{dead.pid}.9f.tmp"
    stale.write_bytes(b"x" * 1000)
    (folder / ".index.json").unlink(missing_ok=True)
    fresh = tether.Tether(home=client.home)  # a new process's first listing that writes the index
    fresh.create_session()
    fresh.list_sessions()
    assert not stale.exists()
