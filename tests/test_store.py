"""The session store through the client: round trips, listing, ids, search, what survives a round trip."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import tether
from tether.errors import InvalidSessionId, SessionExists, SessionNotFound
from tether.sessions import new_id
from tether.sessions.jsonl import JsonlStore

from conftest import sessions_dir


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


def test_editing_a_message_the_session_lacks_names_it_and_writes_nothing(client):
    sid = client.create_session()
    gone = client.add_message(sid, "user", "m0").id
    client.add_message(sid, "user", "m1")
    client.remove_message(sid, gone)
    size = client.store.path(sid).stat().st_size
    for edit in (lambda mid: client.update_message(sid, mid, content="x"), lambda mid: client.remove_message(sid, mid)):
        for mid in ("typo", gone):  # never there, and removed
            with pytest.raises(tether.MessageNotFound, match=f"{sid} has no message with id '{mid}'") as e:
                edit(mid)
            assert (e.value.session_id, e.value.message_id) == (sid, mid)
    assert client.store.path(sid).stat().st_size == size
    assert [m.content for m in client.get_history(sid)] == ["m1"]


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


def test_an_id_starting_with_a_dash_is_refused_saying_why():
    from tether.sessions.ids import validate_id

    with pytest.raises(InvalidSessionId, match="starts with '-'"):
        validate_id("-abc")
