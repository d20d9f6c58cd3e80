"""Export and import: JSON round trip (property-based), Markdown, Oblix files, tether .jsonl files."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tether
from tether.errors import ImportFormatError, SessionExists
from tether.sessions import Message, Session

OBLIX_FILE = {
    "id": "5f0c6d1e-8a2b-4c3d-9e4f-0a1b2c3d4e5f",
    "title": "Trip planning",
    "created_at": "2025-03-01T10:00:00.123456",
    "updated_at": "2025-03-01T10:05:00.654321",
    "messages": [
        {"id": "a1", "role": "user", "content": "Where should I go?", "timestamp": "2025-03-01T10:00:01.000001"},
        {"id": "a2", "role": "assistant", "content": "Lisbon.", "timestamp": "2025-03-01T10:00:03.000002"},
    ],
    "context": {"budget": "low"},
    "metadata": {"source": "oblix"},
}


def test_oblix_file_imports_unchanged(tmp_path):
    c = tether.Tether()
    path = tmp_path / "oblix.json"
    path.write_text(json.dumps(OBLIX_FILE))
    sid = c.import_session(str(path))
    assert sid == OBLIX_FILE["id"]
    s = c.load_session(sid)
    assert s.title == "Trip planning" and s.context == {"budget": "low"} and s.metadata == {"source": "oblix"}
    assert [(m.id, m.role, m.content) for m in s.messages] == [("a1", "user", "Where should I go?"), ("a2", "assistant", "Lisbon.")]
    assert c.list_sessions()[0].message_count == 2
    exported = json.loads(c.export_session(sid))
    for key in ("id", "title", "created_at", "updated_at", "messages", "context", "metadata"):
        assert key in exported
    assert list(exported)[:7] == ["id", "title", "created_at", "updated_at", "messages", "context", "metadata"]
    assert {"id", "role", "content", "timestamp"} <= set(exported["messages"][0])


def test_import_existing_id_refuses_unless_overwrite(tmp_path):
    c = tether.Tether()
    c.import_session(OBLIX_FILE)
    with pytest.raises(SessionExists, match=OBLIX_FILE["id"]):
        c.import_session(OBLIX_FILE)
    changed = {**OBLIX_FILE, "title": "New"}
    c.import_session(changed, overwrite=True)
    assert c.load_session(OBLIX_FILE["id"]).title == "New"


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"title": "no id"}, "'id'"),
        ({"id": 5}, "'messages'"),
        ({"id": "../evil", "messages": []}, "invalid session id"),
        ({"id": "x", "messages": [{"content": "no role"}]}, "message 0"),
        ({"id": "x", "messages": [{"role": "alien", "content": "c"}]}, "messages.0.role"),
        ("not json at all {", "not JSON|cannot read"),
        ([1, 2], "not a session"),
    ],
)
def test_bad_imports_name_the_problem(bad, match):
    c = tether.Tether()
    data = json.dumps(bad) if isinstance(bad, list) else bad
    with pytest.raises(ImportFormatError, match=match):
        c.import_session(data)
    assert c.list_sessions() == []


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("text, match", [
    ('{"id":"d","messages":[],"metadata":{"x":' + _nested(5000) + '}}', r"deep\.json: nested too deeply"),
    (_nested(100000), r"deep\.json: nested too deeply"),
    ('{"id":"d","messages":[],"metadata":{"x":' + _nested(300) + '}}', r"deep\.json: nested too deeply"),  # parses, too deep to store
    ('{"type":"header","session":{"id":"d"}}\n{"type":"message","message":{"id":"m","role":"user","content":"x","metadata":{"x":'
     + _nested(5000) + '}}}\n', r"deep\.json is not a readable tether session file: .*line 2 is nested too deeply"),
    ('{"id":"d","messages":[{"role":"user","content":"x","usage":{"prompt_tokens":' + "9" * 5000 + '}}]}',
     r"deep\.json is not JSON: a number has more than \d+ digits$"),
    ('{"id":"d","created_at":"0001-01-01T00:00:00","messages":[]}', r"deep\.json: invalid value at created_at: date out of range"),
    ('{"id":"d","messages":[{"role":"user","content":"x","timestamp":"0001-01-01T00:00:00"}]}',
     r"deep\.json: invalid value at messages\.0\.timestamp: date out of range"),
])
def test_hostile_files_are_an_import_error_naming_the_file_and_what_is_wrong(tmp_path, monkeypatch, text, match):
    """A RecursionError (naming no file) escaped the import and stopped a whole batch; a huge
    number said \"use sys.set_int_max_str_digits()\"; a year-1 local date said \"is not JSON\"."""
    import time

    monkeypatch.setenv("TZ", "America/New_York")  # a year-1 local time is before the calendar's start in UTC
    time.tzset()
    try:
        f = tmp_path / "deep.json"
        f.write_text(text)
        c = tether.Tether()
        with pytest.raises(ImportFormatError, match=match):
            c.import_session(f)
        assert c.list_sessions() == []
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_times_in_the_future_become_the_import_time_so_it_cannot_take_over_continue(tmp_path):
    """A file dated 9999 listed as the most recently used session for good: `chat -c` and
    `ask -c` sent the user's messages into it (with its system prompt and pinned model)."""
    c = tether.Tether()
    mine = c.create_session(title="mine")
    f = tmp_path / "future.json"
    f.write_text(json.dumps({"id": "future", "created_at": "9999-01-01T00:00:00Z", "updated_at": "9999-12-31T23:59:59Z",
                             "messages": [{"role": "user", "content": "hi", "timestamp": "9999-12-31T23:59:59Z"}]}))
    before = datetime.now(timezone.utc)
    c.import_session(f)
    after = datetime.now(timezone.utc)
    s = c.load_session("future")
    assert before <= s.created_at <= s.messages[0].timestamp == s.updated_at <= after
    c.add_message(mine, "user", "used after the import")
    assert [r.id for r in c.list_sessions()] == [mine, "future"]


def test_clamped_times_keep_the_messages_in_order_and_skew_is_left_alone(tmp_path):
    from datetime import timedelta

    soon = datetime.now(timezone.utc) + timedelta(hours=2)  # a clock a little ahead: kept
    c = tether.Tether()
    c.import_session({"id": "s", "messages": [
        {"role": "user", "content": "old", "timestamp": "2024-01-01T00:00:00Z"},
        {"role": "user", "content": "skew", "timestamp": soon.isoformat()},
        {"role": "assistant", "content": "far", "timestamp": "9999-12-31T23:59:59Z"},
        {"role": "user", "content": "far", "timestamp": "9999-12-31T23:59:59Z"}]})
    s = c.load_session("s")
    assert [m.timestamp for m in s.messages] == [datetime(2024, 1, 1, tzinfo=timezone.utc), soon, soon, soon]
    assert [m.content for m in s.messages] == ["old", "skew", "far", "far"]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_duplicate_message_ids_get_fresh_ids_so_undo_removes_the_last_exchange(tmp_path, fmt):
    """Ids A, B, A, B imported as they were: removing by id hits the first match, and
    `/undo` removed the earlier question and answer instead of the last ones."""
    msgs = [{"id": "A", "role": "user", "content": "first question"}, {"id": "B", "role": "assistant", "content": "first answer"},
            {"id": "A", "role": "user", "content": "last question"}, {"id": "B", "role": "assistant", "content": "last answer"}]
    f = tmp_path / f"dup.{fmt}"
    if fmt == "json":
        f.write_text(json.dumps({"id": "dup", "messages": msgs}))
    else:
        lines = [{"type": "header", "session": {"id": "dup", "created_at": "2024-01-01T00:00:00Z"}}]
        lines += [{"type": "message", "message": {**m, "timestamp": "2024-01-01T00:00:0%dZ" % i}} for i, m in enumerate(msgs)]
        f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    c = tether.Tether()
    c.import_session(f)
    history = c.get_history("dup")
    assert [m.content for m in history] == ["first question", "first answer", "last question", "last answer"]
    assert [m.id for m in history[:2]] == ["A", "B"] and len({m.id for m in history}) == 4
    for m in history[2:]:  # what /undo does
        c.remove_message("dup", m.id)
    assert [m.content for m in c.get_history("dup")] == ["first question", "first answer"]


def test_missing_import_file_named(tmp_path):
    with pytest.raises(ImportFormatError, match="nope.json"):
        tether.Tether().import_session(tmp_path / "nope.json")


def test_tether_jsonl_file_imports(tmp_path):
    c = tether.Tether()
    sid = c.create_session(title="orig")
    c.add_message(sid, "user", "hello")
    raw = (c.home / "sessions" / f"{sid}.jsonl").read_bytes()
    c.delete_session(sid)
    (tmp_path / "s.jsonl").write_bytes(raw)
    assert c.import_session(tmp_path / "s.jsonl") == sid
    assert [m.content for m in c.load_session(sid).messages] == ["hello"]


def test_a_session_file_with_only_its_header_imports(tmp_path):
    """A session created and never written to is one line: it parsed as a JSON document and
    was refused as "not a session"."""
    c = tether.Tether()
    sid = c.create_session(title="empty", context={"k": "v"})
    raw = (c.home / "sessions" / f"{sid}.jsonl").read_bytes()
    assert raw.count(b"\n") == 1
    c.delete_session(sid)
    (tmp_path / "s.jsonl").write_bytes(raw)
    assert c.import_session(tmp_path / "s.jsonl") == sid
    s = c.load_session(sid)
    assert (s.title, s.context, s.messages) == ("empty", {"k": "v"}, [])


def test_last_use_compares_times_not_strings():
    """JSON drops a zero microsecond part: "00:00:00Z" sorted after "00:00:00.000001Z" as text
    ("." < "Z"), so a message could fail to move updated_at and listings could misorder."""
    c = tether.Tether()
    whole = {"id": "whole", "messages": [], "updated_at": "2000-01-01T00:00:00Z"}
    later = {"id": "later", "messages": [], "updated_at": "2000-01-01T00:00:00.000001Z"}
    offset = {"id": "offset", "messages": [], "updated_at": "2000-01-01T01:00:00.000002+01:00"}
    for doc in (whole, later, offset):
        c.import_session(doc)
    assert [s.id for s in c.list_sessions()] == ["offset", "later", "whole"]
    msg = {"role": "user", "content": "x", "timestamp": "2000-01-01T00:00:00.000001Z"}
    c.import_session({"id": "moved", "messages": [msg], "updated_at": "2000-01-01T00:00:00Z"})
    assert c.load_session("moved").updated_at == datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc)


def test_markdown_export_has_every_turn():
    c = tether.Tether()
    sid = c.create_session(title="Notes", system="Be brief", model="gpt-x")
    c.add_message(sid, "user", "What is **2+2**?")
    c.add_message(sid, "assistant", "4", model="gpt-x", status="interrupted")
    md = c.export_session(sid, format="markdown")
    assert md.startswith("# Notes")
    assert "Be brief" in md and "What is **2+2**?" in md and "## assistant (gpt-x) [interrupted]" in md
    with pytest.raises(ValueError, match="yaml"):
        c.export_session(sid, format="yaml")  # type: ignore[arg-type]


text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
json_scalar = st.none() | st.booleans() | st.integers(-10**6, 10**6) | text
json_value = st.recursive(json_scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3), max_leaves=8)
# past times only: an import sets a future one to the time of the import (see clamp_future)
stamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2024, 12, 31), timezones=st.just(timezone.utc))
messages = st.builds(
    Message,
    role=st.sampled_from(["user", "assistant", "system", "tool"]),
    content=text,
    timestamp=stamps,
    name=st.none() | text,
    model=st.none() | text,
    cost_usd=st.none() | st.floats(0, 10, allow_nan=False),
    latency_ms=st.none() | st.floats(0, 1e6, allow_nan=False),
    status=st.sampled_from(["ok", "unanswered", "interrupted"]),
    pinned=st.booleans(),
    metadata=st.dictionaries(text, json_value, max_size=3),
)
sessions = st.builds(
    Session,
    id=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,20}", fullmatch=True),
    title=st.none() | text,
    created_at=stamps,
    updated_at=stamps,
    user_id=st.none() | text,
    metadata=st.dictionaries(text, json_value, max_size=3),
    context=st.dictionaries(text, json_value, max_size=3),
    system=st.none() | text,
    pinned_model=st.none() | text,
    status=st.sampled_from(["active", "archived", "closed"]),
    messages=st.lists(messages, max_size=6),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(session=sessions)
def test_json_export_import_roundtrip(session, tmp_path_factory):
    c = tether.Tether(home=tmp_path_factory.mktemp("h"))
    c.import_session(session.model_dump(mode="json"))
    doc = c.export_session(session.id)
    c.delete_session(session.id)
    c.import_session(doc)
    back = c.load_session(session.id)
    expected = session.model_dump(mode="json", exclude={"totals"})
    # updated_at means "last used": it is never earlier than the newest message
    expected["updated_at"] = max([session.updated_at] + [m.timestamp for m in session.messages]).isoformat().replace("+00:00", "Z")
    assert back.model_dump(mode="json", exclude={"totals"}) == expected
    assert back.totals.messages == len(session.messages)
    assert json.loads(c.export_session(session.id)) == json.loads(doc)


def test_a_jsonl_file_with_a_hostile_id_is_refused_naming_the_file(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"type":"header","session":{"id":"../x","created_at":"2024-01-01T00:00:00Z"}}\n')
    c = tether.Tether()
    with pytest.raises(ImportFormatError, match=r"bad\.jsonl: invalid session id"):
        c.import_session(f)
    assert c.list_sessions() == []


def test_oblix_local_times_without_offset_are_read_as_local_time(tmp_path, monkeypatch):
    """Read as UTC, a session written in Tokyo sat 9 hours in the future, and `chat -c`
    continued it instead of the session just used."""
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        path = tmp_path / "oblix.json"
        path.write_text(json.dumps(OBLIX_FILE))
        c = tether.Tether()
        s = c.load_session(c.import_session(str(path)))
        assert s.created_at == datetime(2025, 3, 1, 1, 0, 0, 123456, tzinfo=timezone.utc)  # 10:00 in Tokyo
        assert s.messages[0].timestamp == datetime(2025, 3, 1, 1, 0, 1, 1, tzinfo=timezone.utc)
        assert all(m.timestamp.tzinfo is not None for m in s.messages)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
