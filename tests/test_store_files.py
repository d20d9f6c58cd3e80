"""Session files as they are found on disk: permissions, torn and corrupt files, records written by
hand or cut short, files copied or renamed by hand."""
from __future__ import annotations

import json
import os
import stat

import pytest

import tether
from tether.errors import SessionCorrupt

from conftest import sessions_dir


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


def test_a_file_nested_too_deeply_is_skipped_and_named(client):
    """A header nested thousands deep made json raise RecursionError, which no reader caught:
    every listing (and `chat -c`) stopped, naming no file."""
    good = client.create_session(title="good")
    client.add_message(good, "user", "hello")
    path = sessions_dir(client) / "deep.jsonl"
    header = {"type": "header", "session": {"id": "deep", "created_at": "2024-01-01T00:00:00Z", "metadata": {}}}
    deep = "[" * 5000 + "]" * 5000
    line = json.dumps(header).replace('"metadata": {}', f'"metadata": {{"x": {deep}}}')
    for text in (line + "\n", line):  # a whole line, and one without its newline (read as a whole record)
        path.write_text(text)
        assert [r.id for r in client.list_sessions()] == [good]
        assert "nested too deeply" in client.store.problems["deep"] and str(path) in client.store.problems["deep"]
        assert [s.id for s, _ in client.search_sessions("hello")] == [good]
        with pytest.raises(SessionCorrupt, match="deep.jsonl.*line 1 is nested too deeply"):
            client.load_session("deep")


def test_unreadable_file_reported(client):
    ok = client.create_session()
    (sessions_dir(client) / "dir.jsonl").mkdir()  # a name that cannot be read as a file
    with pytest.raises(SessionCorrupt, match="dir.jsonl"):
        client.load_session("dir")
    assert [r.id for r in client.list_sessions()] == [ok]


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


def test_a_header_with_a_malformed_spend_is_named_by_every_reader(client, tmp_path):
    """The spend of removed answers lives in the header: a damaged one must read as a corrupt
    file everywhere (the chat's quick resume failed with an AttributeError naming nothing)."""
    import json as _json

    from tether.cli_util import quick_resume
    from tether.errors import SessionCorrupt

    sid = client.create_session(title="x")
    client.add_message(sid, "user", "hi")
    path = sessions_dir(client) / f"{sid}.jsonl"
    lines = path.read_text().splitlines()
    head = _json.loads(lines[0])
    head["session"]["discarded"] = "lots"
    path.write_text("\n".join([_json.dumps(head), *lines[1:]]) + "\n")
    with pytest.raises(SessionCorrupt, match="discarded"):
        client.load_session(sid)
    assert [s.id for s in client.list_sessions()] == [] and "discarded" in client.store.problems[sid]
    assert quick_resume(client.home, sid, cont=False) is None  # the full load then names the file
