"""The Redis store against a real redis-server (started here), and the store contract on both backends."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest

import tether
from tether.errors import InvalidSessionId, SessionCorrupt, SessionExists, SessionNotFound
from tether.sessions.jsonl import JsonlStore
from tether.sessions.redis_store import RedisStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    exe = shutil.which("redis-server")
    assert exe, "redis-server not found: `make test` installs it (apt-get install redis-server)"
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(params=["jsonl", "redis"])
def client(request, tether_home):
    if request.param == "jsonl":
        return tether.Tether(store=JsonlStore(tether_home / "sessions"))
    url = request.getfixturevalue("redis_url")
    return tether.Tether(store=RedisStore(url, prefix=f"t{uuid.uuid4().hex[:8]}"))


def test_contract_roundtrip_and_listing(client):
    a = client.create_session(title="a", user_id="u1", context={"k": 1}, system="s")
    b = client.create_session(title="b", user_id="u2")
    client.add_message(a, "user", "hello")
    client.add_message(a, "assistant", "hi", usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}, cost_usd=0.5)
    s = client.load_session(a)
    assert [m.content for m in s.messages] == ["hello", "hi"] and s.context == {"k": 1} and s.system == "s"
    assert s.totals.total_tokens == 4 and s.totals.cost_usd == 0.5
    rows = client.list_sessions()
    assert [r.id for r in rows] == [a, b]
    assert rows[0].message_count == 2 and rows[0].totals.cost_usd == 0.5
    assert [r.id for r in client.list_sessions(user_id="u2")] == [b]
    client.rename_session(b, "bee")
    assert [(r.id, r.title) for r in client.list_sessions(limit=1)] == [(b, "bee")]
    client.update_session(b, status="archived")
    assert [r.id for r in client.list_sessions(status="archived")] == [b]


def test_contract_edits_removals_clear_delete(client):
    sid = client.create_session()
    ids = [client.add_message(sid, "user", f"m{i}").id for i in range(3)]
    client.update_message(sid, ids[0], content="edited", status="unanswered")
    client.store.remove_message(sid, ids[1])
    assert [(m.content, m.status) for m in client.get_history(sid)] == [("edited", "unanswered"), ("m2", "ok")]
    assert client.list_sessions()[0].message_count == 2
    client.store.compact(sid)
    assert [m.content for m in client.get_history(sid)] == ["edited", "m2"]
    client.clear_history(sid)
    assert client.get_history(sid) == [] and client.list_sessions()[0].message_count == 0
    assert client.delete_session(sid) and not client.delete_session(sid)
    assert client.list_sessions() == []
    with pytest.raises(SessionNotFound):
        client.load_session(sid)
    with pytest.raises(SessionNotFound):
        client.add_message(sid, "user", "x")


def test_contract_answers_taken_out_stay_in_the_spend(client):
    """/retry, /undo and clear_history take answers out; what they cost was still paid."""
    def spend(sid):
        t = client.load_session(sid).totals
        row = [r for r in client.list_sessions() if r.id == sid][0].totals
        assert (row.total_tokens, round(row.cost_usd, 6)) == (t.total_tokens, round(t.cost_usd, 6))  # listing agrees
        return t.messages, t.total_tokens, round(t.cost_usd, 6)

    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    sid = client.create_session()
    client.add_message(sid, "user", "q1")
    first = client.add_message(sid, "assistant", "a1", usage=usage, cost_usd=0.5)
    client.add_message(sid, "user", "q2")
    client.add_message(sid, "assistant", "a2", usage=usage, cost_usd=0.25)
    assert spend(sid) == (4, 8, 0.75)
    client.remove_message(sid, first.id)
    assert spend(sid) == (3, 8, 0.75)
    client.store.compact(sid)  # the rewrite keeps it
    assert spend(sid) == (3, 8, 0.75)
    client.clear_history(sid)
    client.add_message(sid, "assistant", "a3", usage=usage, cost_usd=0.125)
    assert spend(sid) == (1, 12, 0.875)
    copy = json.loads(client.export_session(sid))
    copy["id"] = "spent-copy"
    assert spend(client.import_session(copy)) == (1, 12, 0.875)


def test_contract_a_record_nested_too_deeply_is_named_and_the_rest_still_list(client):
    good = client.create_session(title="good")
    bad = client.create_session(title="bad")
    client.list_sessions()  # the listing's cache holds both: the deep record arrives as an append
    line = '{"type":"event","event":{"type":"x","deep":' + "[" * 5000 + "]" * 5000 + "}}"
    st = client.store
    if isinstance(st, RedisStore):
        st.r.rpush(st._log(bad), line)
    else:
        with open(st.path(bad), "a") as f:
            f.write(line + "\n")
    assert [s.id for s in client.list_sessions()] == [good]
    assert "nested too deeply" in st.problems[bad]
    with pytest.raises(SessionCorrupt, match="nested too deeply"):
        client.load_session(bad)


def test_contract_ids_duplicates_export(client):
    client.create_session(session_id="same")
    with pytest.raises(SessionExists):
        client.create_session(session_id="same")
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(InvalidSessionId):
            client.load_session(bad)
    client.add_message("same", "user", "exported")
    doc = client.export_session("same")
    client.delete_session("same")
    assert client.import_session(doc) == "same"
    assert [m.content for m in client.get_history("same")] == ["exported"]
    assert [s.id for s, _ in client.search_sessions("EXPORTED")] == ["same"]


def test_redis_url_opens_redis_store(redis_url):
    c = tether.Tether(store=redis_url)
    assert isinstance(c.store, RedisStore)
    with pytest.raises(ValueError, match="store must be"):
        tether.Tether(store="ftp://nope")


def test_redis_corrupt_record_named_and_skipped(redis_url):
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    c = tether.Tether(store=store)
    good = c.create_session(title="good")
    bad = c.create_session(title="bad")
    store.r.rpush(store._log(bad), b"{not json")
    with pytest.raises(SessionCorrupt, match=bad):
        c.load_session(bad)
    assert [r.id for r in c.list_sessions()] == [good]
    assert bad in store.problems



@pytest.mark.parametrize("record", [{"type": "update", "fields": {"title": 7}}, {"type": "event", "event": "x"}])
def test_redis_a_record_of_the_wrong_shape_skips_its_session(redis_url, record):
    """Appended after a listing (the summary is extended) and on a fresh listing (folded)."""
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    c = tether.Tether(store=store)
    good = c.create_session(title="good")
    bad = c.create_session(title="bad")
    assert len(c.list_sessions()) == 2
    store.r.rpush(store._log(bad), json.dumps(record))
    assert [r.id for r in c.list_sessions()] == [good] and bad in store.problems
    store.r.delete(store.summaries)
    assert [r.id for r in c.list_sessions()] == [good] and bad in store.problems


WRITER = r"""
import sys, tether
from tether.sessions.redis_store import RedisStore
url, prefix, sid, tag = sys.argv[1:5]
c = tether.Tether(store=RedisStore(url, prefix=prefix))
for i in range(250):
    c.add_message(sid, "user", f"{tag}:{i}")
"""


def test_redis_eight_processes_append_without_loss(redis_url):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    c = tether.Tether(store=RedisStore(redis_url, prefix=prefix))
    sid = c.create_session()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, redis_url, prefix, sid, f"p{k}"]) for k in range(8)]
    assert all(p.wait(timeout=240) == 0 for p in procs)
    contents = [m.content for m in c.load_session(sid).messages]
    assert len(contents) == 2000 and len(set(contents)) == 2000
    for k in range(8):
        assert [int(x.split(":")[1]) for x in contents if x.startswith(f"p{k}:")] == list(range(250))
    assert c.list_sessions()[0].message_count == 2000


async def test_async_client_on_redis(redis_url):
    c = tether.AsyncTether(store=RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}"))
    sid = await c.create_session(title="async")
    await c.add_message(sid, "user", "q")
    assert [m.content for m in await c.get_history(sid)] == ["q"]
    assert [r.title for r in await c.list_sessions()] == ["async"]


def test_redis_a_message_with_an_older_timestamp_does_not_move_its_session_down(redis_url):
    """Last use only moves forward, as in the file store: `-c` and list(limit=1) pick by it."""
    from datetime import datetime, timezone

    c = tether.Tether(store=RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}"))
    older = c.create_session(title="older")
    newer = c.create_session(title="newer")
    c.add_message(newer, "user", "imported from 2020", timestamp=datetime(2020, 1, 1, tzinfo=timezone.utc))
    assert [r.id for r in c.list_sessions()] == [newer, older]
    c.add_message(older, "user", "now")
    assert [r.id for r in c.list_sessions()] == [older, newer]


def test_redis_a_bad_record_appended_after_a_listing_skips_only_its_session(redis_url):
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    c = tether.Tether(store=store)
    good = c.create_session(title="good")
    bad = c.create_session(title="bad")
    assert len(c.list_sessions()) == 2  # summaries cached: the next listing reads only new records
    store.r.rpush(store._log(bad), b"{not json")
    assert [r.id for r in c.list_sessions()] == [good]
    assert "is corrupt" in store.problems[bad] and "session redis key" in store.problems[bad]
    assert [s.id for s, _ in c.search_sessions("good")] == [good]


def test_redis_stores_a_lone_surrogate_as_the_file_store_does(redis_url):
    c = tether.Tether(store=RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}"))
    sid = c.create_session(title="odd \udc80")
    c.add_message(sid, "user", "bad \ud83d half")
    c.store.compact(sid)
    s = c.load_session(sid)
    assert s.title == "odd \udc80" and s.messages[0].content == "bad \ud83d half"


def test_redis_a_question_answered_again_is_claimed_across_clients(redis_url):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    a = tether.Tether(store=RedisStore(redis_url, prefix=prefix), config={"default_model": "tether/echo"})
    b = tether.Tether(store=RedisStore(redis_url, prefix=prefix), config={"default_model": "tether/echo"})
    sid = a.create_session(model="tether/echo")
    a.add_message(sid, "user", "the question", status="unanswered")
    ts = a.turns.start("the question", sid, None)  # A answers it again (another process)
    assert ts.reused
    with pytest.raises(ValueError, match="being answered already"):
        b.retry(sid)
    a.turns.run(ts, {})
    b.add_message(sid, "user", "next", status="unanswered")
    assert b.retry(sid).text.startswith("echo: next")  # A's claim was released
    assert [m.role for m in b.load_session(sid).messages] == ["user", "assistant", "user", "assistant"]


def test_closing_a_client_releases_the_connections_of_a_store_it_opened(redis_url, tether_home):
    import redis

    admin = redis.Redis.from_url(redis_url)
    before = len(admin.client_list())
    with tether.Tether(store=redis_url) as t:  # tether opened this store from the URL
        t.create_session()
        assert len(admin.client_list()) == before + 1
    assert len(admin.client_list()) == before
    mine = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    with tether.Tether(store=mine) as t:  # the app made this one: the app closes it
        t.create_session()
    assert len(admin.client_list()) == before + 1 and len(mine.list()) == 1
    mine.close()
