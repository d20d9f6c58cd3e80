"""The JSON Lines store: round trips, torn/corrupt files, hostile ids, permissions, the index."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

import tether
from tether.errors import InvalidSessionId, SessionCorrupt, SessionExists, SessionNotFound
from tether.sessions import new_id
from tether.sessions.jsonl import JsonlStore


@pytest.fixture
def client(tether_home):
    return tether.Tether()


def sessions_dir(client):
    return client.home / "sessions"


def test_create_add_load_list_roundtrip(client):
    sid = client.create_session(title="t", context={"k": [1, 2]}, system="sys", user_id="u1", metadata={"m": 1})
    assert client.current_session_id == sid
    client.add_message(sid, "user", "hello", name="ann")
    client.add_message(sid, "assistant", "hi", model="m1", usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}, cost_usd=0.25, latency_ms=12.5)
    s = client.load_session(sid)
    assert [m.content for m in s.messages] == ["hello", "hi"]
    assert s.messages[0].name == "ann" and s.messages[1].model == "m1"
    assert (s.title, s.context, s.system, s.user_id, s.metadata) == ("t", {"k": [1, 2]}, "sys", "u1", {"m": 1})
    assert s.totals.total_tokens == 7 and s.totals.cost_usd == 0.25 and s.totals.messages == 2
    [row] = client.list_sessions()
    assert (row.id, row.title, row.message_count, row.totals.total_tokens) == (sid, "t", 2, 7)
    assert s.schema_version == tether.sessions.SCHEMA_VERSION
    with open(sessions_dir(client) / f"{sid}.jsonl") as f:
        assert json.loads(f.readline())["session"]["schema_version"] == 1


def test_list_orders_by_last_use_and_filters(client):
    a = client.create_session(title="a", user_id="u1")
    b = client.create_session(title="b", user_id="u2")
    c = client.create_session(title="c", user_id="u1")
    client.add_message(a, "user", "bump a")  # a is now the most recently used
    assert [r.id for r in client.list_sessions()] == [a, c, b]
    assert [r.id for r in client.list_sessions(user_id="u1")] == [a, c]
    assert [r.id for r in client.list_sessions(limit=1)] == [a]
    client.update_session(b, status="archived")
    assert [r.id for r in client.list_sessions(status="archived")] == [b]
    assert b not in [r.id for r in client.list_sessions(status="active")]


def test_rename_delete_clear_history(client):
    sid = client.create_session(title="old")
    client.add_message(sid, "user", "x")
    client.rename_session(sid, "new")
    assert client.load_session(sid).title == "new"
    assert client.list_sessions()[0].title == "new"
    client.clear_history(sid)
    s = client.load_session(sid)
    assert s.messages == [] and s.title == "new"
    assert client.list_sessions()[0].message_count == 0
    assert client.delete_session(sid) is True
    assert client.delete_session(sid) is False
    assert client.list_sessions() == []
    with pytest.raises(SessionNotFound, match=sid):
        client.load_session(sid)
    with pytest.raises(SessionNotFound):
        client.add_message(sid, "user", "lost?")


def test_get_history_limit_and_message_edit(client):
    sid = client.create_session()
    ids = [client.add_message(sid, "user", f"m{i}").id for i in range(5)]
    assert [m.content for m in client.get_history(sid, limit=2)] == ["m3", "m4"]
    assert client.get_history(sid, limit=0) == [] and len(client.get_history(sid, limit=99)) == 5
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match="limit"):
            client.get_history(sid, limit=bad)
        with pytest.raises(ValueError, match="limit"):
            client.list_sessions(limit=bad)
    client.update_message(sid, ids[1], content="edited", pinned=True, status="unanswered")
    m = client.load_session(sid).messages[1]
    assert (m.content, m.pinned, m.status) == ("edited", True, "unanswered")
    client.remove_message(sid, ids[0])
    assert [m.id for m in client.get_history(sid)] == ids[1:]
    assert client.list_sessions()[0].message_count == 4


def test_explicit_model_at_creation_is_pinned_and_recorded(client):
    sid = client.create_session(model="gpt-x")
    s = client.load_session(sid)
    assert (s.pinned_model, s.pin_reason) == ("gpt-x", "explicit")
    assert [(e.type, e.data["to"]) for e in s.events] == [("pin_changed", "gpt-x")]


def test_bad_role_and_duplicate_id(client):
    sid = client.create_session(session_id="fixed-id")
    with pytest.raises(ValueError, match="role"):
        client.add_message(sid, "wizard", "x")
    with pytest.raises(SessionExists, match="fixed-id"):
        client.create_session(session_id="fixed-id")


HOSTILE = [
    "../x", "../../etc/passwd", "/etc/passwd", "a/b", "a\\b", "", ".", "..", ".hidden", "x" * 129,
    "a\x00b", "a b", " a", "a\n", "é", "%2e%2e", "~", "con:", "a*", "$(rm)", "a;b",
]


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_ids_rejected_before_any_file_is_touched(client, tmp_path, bad):
    victim = client.home / "x.jsonl"  # where '../x' would land
    victim.write_text("precious")
    before = sorted(os.listdir(sessions_dir(client)))
    for op in (
        lambda: client.create_session(session_id=bad),
        lambda: client.load_session(bad),
        lambda: client.delete_session(bad),
        lambda: client.add_message(bad, "user", "x"),
        lambda: client.rename_session(bad, "t"),
        lambda: client.export_session(bad),
    ):
        with pytest.raises(InvalidSessionId):
            op()
    assert victim.read_text() == "precious"
    assert sorted(os.listdir(sessions_dir(client))) == before


def test_invalid_session_id_is_a_value_error():
    assert issubclass(InvalidSessionId, ValueError)
    with pytest.raises(ValueError, match="invalid session id"):
        tether.sessions.validate_id("../evil")
    with pytest.raises(InvalidSessionId, match="string"):
        tether.sessions.validate_id(5)


def test_good_user_ids_accepted(client):
    for sid in ("a", "A-b_c.d", "x" * 128, "0", "123e4567-e89b-12d3-a456-426614174000"):
        assert client.create_session(session_id=sid) == sid


def test_generated_ids_are_short_sortable_and_unique():
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(5000)]
    after = time.time_ns() // 1_000_000
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and i.isalnum() and i == i.lower() for i in ids)
    # the first 8 characters are the creation time in base 36 milliseconds
    assert before <= int(ids[0][:8], 36) <= int(ids[-1][:8], 36) <= after + 5


@pytest.mark.parametrize("fields", [
    {"role": "user", "content": "plain"},
    {"role": "assistant", "content": "ünïcødé ✓ 中文", "model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 4,
     "total_tokens": 7}, "cost_usd": 1.5e-06, "latency_ms": 3.25, "metadata": {"k": [1, {"x": None}]}},
    {"role": "user", "content": "lone \ud800 surrogate", "pinned": True},
    {"role": "tool", "content": "x", "name": "fn", "future_field": {"kept": True}},
    {"role": "assistant", "content": "x", "cost_usd": float("inf")},
])
def test_message_lines_are_the_records_json(fields):
    """The fast per-message writer produces the record the generic path would (floats may be
    spelled differently: 1.5e-6 vs 1.5e-06)."""
    from tether.sessions import Message
    from tether.sessions.jsonl import dumps, message_line
    from tether.sessions.records import message_record

    m = Message(**fields)
    line = message_line(m)
    assert json.loads(line) == json.loads(dumps(message_record(m)))
    written = json.loads(line)["message"]
    assert {"id", "role", "content", "timestamp"} <= written.keys()
    # fields at their defaults are left out of the file, others are kept
    for key, default in (("status", "ok"), ("pinned", False), ("metadata", {}), ("name", None), ("model", None)):
        assert (key in written) == (getattr(m, key) != default), key
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert Message(**json.loads(line)["message"]) == m


def test_permissions_private_even_with_open_umask(client):
    old = os.umask(0)
    try:
        sid = client.create_session()
        client.add_message(sid, "user", "secret")
        client.list_sessions()
        client.store.compact(sid)
    finally:
        os.umask(old)
    d = sessions_dir(client)
    for p in (client.home, d, d / ".locks"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    for p in list(d.iterdir()) + list((d / ".locks").iterdir()):
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_existing_loose_sessions_folder_is_tightened_but_the_users_home_is_left_alone(tether_home):
    (tether_home / "sessions").mkdir(parents=True, mode=0o755)
    os.chmod(tether_home / "sessions", 0o755)
    os.chmod(tether_home, 0o755)  # e.g. Tether(home=".") in a project folder
    tether.Tether()
    assert stat.S_IMODE((tether_home / "sessions").stat().st_mode) == 0o700
    assert stat.S_IMODE(tether_home.stat().st_mode) == 0o755


def test_torn_last_line_ignored_then_repaired(client):
    sid = client.create_session()
    client.add_message(sid, "user", "kept")
    path = sessions_dir(client) / f"{sid}.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"type":"message","message":{"id":"torn","role":"user","cont')
    assert [m.content for m in client.load_session(sid).messages] == ["kept"]
    assert client.list_sessions()[0].message_count == 1
    client.add_message(sid, "assistant", "after")
    assert [m.content for m in client.load_session(sid).messages] == ["kept", "after"]
    assert b"torn" not in path.read_bytes()
    assert path.read_bytes().endswith(b"\n")


def test_corrupt_file_named_in_error_and_skipped_by_listing(client):
    good = client.create_session(title="good")
    bad = client.create_session(title="bad")
    client.add_message(bad, "user", "x")
    path = sessions_dir(client) / f"{bad}.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[0] = b"{not json"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(SessionCorrupt) as e:
        client.load_session(bad)
    assert str(path) in str(e.value) and "line 1" in str(e.value)
    assert [r.id for r in client.list_sessions()] == [good]
    assert bad in client.store.problems and str(path) in client.store.problems[bad]


@pytest.mark.parametrize("content", [b"", b"[]\n", b'{"type":"message","message":{}}\n', b'{"type":"header","session":{"id":"x","created_at":"not a date"}}\n'])
def test_structurally_broken_files(client, content):
    path = sessions_dir(client) / "broken.jsonl"
    path.write_bytes(content)
    with pytest.raises(SessionCorrupt, match="broken.jsonl"):
        client.load_session("broken")
    assert client.list_sessions() == []


@pytest.mark.parametrize("record", [
    {"type": "update", "fields": "oops"}, {"type": "update", "fields": [["title", "x"]]},
    {"type": "edit", "id": "m", "fields": 3}, {"type": "message", "message": "text"},
    {"type": "message", "message": {"id": "z", "role": "user", "content": "x", "usage": {"prompt_tokens": "many"}}},
    {"type": "update", "fields": {"updated_at": 5}}, {"type": "update", "fields": {"title": 7}},
    {"type": "update"}, {"type": "message", "message": {"role": "user"}}, {"type": "event", "event": "x"},
])
def test_a_malformed_record_skips_its_session_only(client, tmp_path, record):
    """One bad line used to stop every listing (and `chat -c`) with an error naming no file."""
    good = client.create_session(title="good")
    bad = client.create_session(title="bad")
    client.list_sessions()  # the index holds both: the bad line arrives as an append
    mid = client.add_message(bad, "user", "x").id
    if record.get("id") == "m":
        record = {**record, "id": mid}
    path = sessions_dir(client) / f"{bad}.jsonl"
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    assert [r.id for r in client.list_sessions()] == [good]
    assert str(path) in client.store.problems[bad]
    with pytest.raises(SessionCorrupt, match=f"{bad}.jsonl"):
        client.load_session(bad)
    with pytest.raises(tether.errors.ImportFormatError, match="not a readable tether session file"):
        client.import_session(path)


def test_unreadable_file_reported(client):
    ok = client.create_session()
    (sessions_dir(client) / "dir.jsonl").mkdir()  # a name that cannot be read as a file
    with pytest.raises(SessionCorrupt, match="dir.jsonl"):
        client.load_session("dir")
    assert [r.id for r in client.list_sessions()] == [ok]


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
        client.update_message(sid, mid, content=f"v{i}")
    path = sessions_dir(client) / f"{sid}.jsonl"
    assert len(path.read_bytes().splitlines()) > 300
    assert client.load_session(sid).messages[0].content == "v299"
    assert len(path.read_bytes().splitlines()) == 2
    assert client.load_session(sid).messages[0].content == "v299"


def test_unknown_fields_survive_roundtrip(client):
    sid = client.create_session()
    path = sessions_dir(client) / f"{sid}.jsonl"
    lines = path.read_bytes().splitlines()
    header = json.loads(lines[0])
    header["session"]["future_field"] = {"x": 1}
    path.write_bytes(json.dumps(header).encode() + b"\n")
    client.store.append(sid, {"type": "message", "message": {"id": "m1", "role": "user", "content": "c", "mood": "happy"}})
    s = client.load_session(sid)
    assert s.model_extra["future_field"] == {"x": 1}
    assert s.messages[0].model_extra["mood"] == "happy"
    client.store.compact(sid)
    s2 = client.load_session(sid)
    assert s2.model_extra["future_field"] == {"x": 1} and s2.messages[0].model_extra["mood"] == "happy"
    assert json.loads(client.export_session(sid))["future_field"] == {"x": 1}


def test_unencodable_text_is_stored_not_corrupting(client):
    sid = client.create_session()
    client.add_message(sid, "user", "bad \udc80 surrogate and ok ✓")
    client.add_message(sid, "user", "next")
    msgs = client.load_session(sid).messages
    assert msgs[0].content == "bad \udc80 surrogate and ok ✓" and msgs[1].content == "next"


def test_home_resolution(tmp_path, tether_home, monkeypatch):
    assert tether.Tether().home == tether_home
    explicit = tmp_path / "explicit"
    assert tether.Tether(home=explicit).home == explicit
    monkeypatch.delenv("TETHER_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert tether.Tether().home == tmp_path / "xdg" / "tether"


def test_session_operations_do_not_import_litellm(tether_home):
    code = (
        "import sys, tether\n"
        "c = tether.Tether()\n"
        "s = c.create_session(title='t')\n"
        "c.add_message(s, 'user', 'hi'); c.load_session(s); c.list_sessions(); c.rename_session(s, 'u')\n"
        "c.export_session(s); c.export_session(s, 'markdown'); c.import_session(c.export_session(s).replace(s, 'c2'))\n"
        "c.get_history(s); c.clear_history(s); c.delete_session(s)\n"
        "assert 'litellm' not in sys.modules, 'litellm imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "TETHER_HOME": str(tether_home)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_store_interface_is_implemented():
    from tether.sessions import SessionStore

    assert issubclass(JsonlStore, SessionStore)


async def test_async_client_same_api(tether_home):
    c = tether.AsyncTether()
    sid = await c.create_session(title="async")
    await c.add_message(sid, "user", "q")
    m = await c.add_message(sid, "assistant", "a")
    await c.update_message(sid, m.id, status="interrupted")
    await c.rename_session(sid, "renamed")
    s = await c.load_session(sid)
    assert [x.content for x in s.messages] == ["q", "a"] and s.messages[1].status == "interrupted"
    assert [r.title for r in await c.list_sessions()] == ["renamed"]
    assert [x.content for x in await c.get_history(sid, limit=1)] == ["a"]
    doc = await c.export_session(sid)
    assert await c.import_session(doc.replace(sid, "copy")) == "copy"
    await c.clear_history(sid)
    assert (await c.load_session(sid)).messages == []
    assert await c.delete_session(sid) is True
    assert c.current_session_id is None


def test_search_titles_and_message_text(client):
    a = client.create_session(title="Lisbon trip")
    b = client.create_session(title="other")
    client.add_message(b, "user", 'Tell me about LISBON "old town"')
    client.add_message(b, "assistant", "Sure.")
    c = client.create_session(title="unrelated")
    client.add_message(c, "user", "nothing here")
    hits = {s.id: [m.content for m in msgs] for s, msgs in client.search_sessions("lisbon")}
    assert hits == {a: [], b: ['Tell me about LISBON "old town"']}
    quoted = client.search_sessions('"old town"')  # text JSON escapes in the file
    assert [s.id for s, _ in quoted] == [b]
    assert client.search_sessions("zebra") == []
    assert len(client.search_sessions("lisbon", limit=1)) == 1
    with pytest.raises(ValueError):
        client.search_sessions("")


def test_search_finds_accented_text_in_a_message_written_escaped(client):
    """A lone surrogate makes its line all-ASCII ("crème" as "cr\\u00e8me"): still found."""
    sid = client.create_session(title="desserts")
    client.add_message(sid, "user", "bad surrogate \ud800 then crème brûlée")
    client.create_session(title="other")
    [(row, msgs)] = client.search_sessions("crème")
    assert row.id == sid and "brûlée" in msgs[0].content


def test_ids_stay_unique_across_forked_processes():
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    with ctx.Pool(4) as pool:
        batches = pool.map(_ids_batch, range(8))
    flat = [i for b in batches for i in b] + _ids_batch(0)
    assert len(set(flat)) == len(flat)


def _ids_batch(_: int) -> list[str]:
    return [new_id() for _ in range(2000)]


def test_duplicate_message_ids_in_a_file_lose_nothing(client):
    """Two writers (or an imported file) that reuse an id: both messages stay, edits hit the first."""
    sid = client.create_session()
    for text in ("first", "second"):
        client.store.append(sid, {"type": "message", "message": {"id": "same", "role": "user", "content": text}})
    assert [m.content for m in client.get_history(sid)] == ["first", "second"]
    client.update_message(sid, "same", content="edited")
    assert [m.content for m in client.get_history(sid)] == ["edited", "second"]
    client.store.compact(sid)
    assert [m.content for m in client.get_history(sid)] == ["edited", "second"]
    assert client.list_sessions()[0].message_count == 2


@pytest.mark.parametrize("how", ["copy", "rename"])
def test_a_file_copied_or_renamed_by_hand_is_reported_not_listed_under_another_id(client, how):
    """Listed by its header's id, a copy deleted the original and a renamed file listed an id
    nothing could open."""
    sid = client.create_session(title="original")
    client.add_message(sid, "user", "hello")
    folder = sessions_dir(client)
    src = folder / f"{sid}.jsonl"
    other = folder / "backup-copy.jsonl"
    other.write_bytes(src.read_bytes())
    if how == "rename":
        src.unlink()
    rows = [r.id for r in client.list_sessions()]
    assert rows == ([sid] if how == "copy" else [])
    assert "backup-copy" in client.store.problems
    assert f"name it {sid}.jsonl again" in client.store.problems["backup-copy"]
    with pytest.raises(SessionCorrupt, match=f"holds session '{sid}'"):
        client.load_session("backup-copy")
    if how == "copy":
        assert client.delete_session(rows[0]) and other.exists()  # the row listed is the file deleted
    other.rename(src)  # the fix it names
    assert [r.id for r in client.list_sessions()] == [sid] and not client.store.problems


def test_a_copied_file_listed_by_an_older_index_is_reported_too(client):
    """Entries an older version wrote (listed by header id, before the check) are not kept."""
    sid = client.create_session(title="original")
    folder = sessions_dir(client)
    copy = folder / "backup-copy.jsonl"
    copy.write_bytes((folder / f"{sid}.jsonl").read_bytes())
    client.list_sessions()  # the current index: the copy reported, not listed
    index = json.loads((folder / ".index.json").read_text())
    entry = dict(index["entries"][sid])
    st = copy.stat()
    entry.update(ino=st.st_ino, size=st.st_size, mt=st.st_mtime_ns)  # as an older version indexed it
    index["entries"]["backup-copy"] = entry
    (folder / ".index.json").write_text(json.dumps(index))
    fresh = tether.Tether(home=client.home)
    assert [r.id for r in fresh.list_sessions()] == [sid] and "backup-copy" in fresh.store.problems


def test_a_last_record_without_its_newline_is_kept_and_ended(client):
    """A file written by another tool ("\\n".join) or a write killed just before its newline:
    the record is whole, so it is read, and the next append ends it instead of cutting it."""
    sid = client.create_session()
    client.add_message(sid, "user", "question")
    client.add_message(sid, "assistant", "answer")
    path = sessions_dir(client) / f"{sid}.jsonl"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    assert [m.content for m in client.load_session(sid).messages] == ["question", "answer"]
    assert client.list_sessions()[0].message_count == 2
    client.add_message(sid, "user", "more")
    assert [m.content for m in client.load_session(sid).messages] == ["question", "answer", "more"]
    assert client.list_sessions()[0].message_count == 3
    # a file that is only its header, unterminated, stays a session
    lone = client.create_session(title="lone")
    lp = sessions_dir(client) / f"{lone}.jsonl"
    lp.write_bytes(lp.read_bytes().rstrip(b"\n"))
    client.add_message(lone, "user", "first")
    assert client.load_session(lone).title == "lone" and len(client.load_session(lone).messages) == 1


def test_importing_a_jsonl_file_keeps_a_last_line_without_newline(client, tmp_path):
    sid = client.create_session()
    client.add_message(sid, "user", "question")
    client.add_message(sid, "assistant", "answer")
    text = (sessions_dir(client) / f"{sid}.jsonl").read_text().strip()
    f = tmp_path / "joined.jsonl"
    f.write_text(text)  # no final newline
    other = tether.Tether(home=tmp_path / "h2")
    new = other.import_session(f)
    assert [m.content for m in other.load_session(new).messages] == ["question", "answer"]


def test_clearing_history_drops_the_summaries_of_what_was_cleared(client):
    from tether.sessions import SessionEvent

    sid = client.create_session()
    client.add_message(sid, "user", "my bank pin is 4321")
    client.store.add_event(sid, SessionEvent(type="summary", data={"text": "the user's pin is 4321", "upto": "x"}))
    client.store.add_event(sid, SessionEvent(type="note", data={"kept": True}))
    client.update_session(sid, metadata={"app": "x", "context_summary": {"text": "pin 4321"}})  # older versions
    client.clear_history(sid)
    s = client.load_session(sid)
    assert s.messages == [] and [e.type for e in s.events] == ["note"] and s.metadata == {"app": "x"}
    assert b"4321" not in (sessions_dir(client) / f"{sid}.jsonl").read_bytes()
    assert "4321" not in client.export_session(sid)


def test_a_lone_surrogate_exports_and_reimports(client, tmp_path):
    sid = client.create_session(title="odd")
    client.add_message(sid, "user", "bad \ud83d half an emoji")
    doc = client.export_session(sid)
    doc.encode("utf-8")  # writable to a file or a terminal
    back = tether.Tether(home=tmp_path / "h2")
    assert back.load_session(back.import_session(doc)).messages[0].content == "bad \ud83d half an emoji"
    md = client.export_session(sid, format="markdown")
    assert "bad \ufffd half an emoji" in md and md.encode("utf-8")


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


def test_an_id_starting_with_a_dash_is_refused_saying_why():
    from tether.sessions.ids import validate_id

    with pytest.raises(InvalidSessionId, match="starts with '-'"):
        validate_id("-abc")
