"""A session's status: closed sessions take no turns, archived ones are skipped by `-c`,
and the CLI sets, shows and filters the status."""
from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from tether import AsyncTether, SessionClosed, Tether
from tether.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def session_bytes(t: Tether, sid: str) -> bytes:
    return (t.home / "sessions" / f"{sid}.jsonl").read_bytes()


def test_a_closed_session_refuses_every_kind_of_turn_and_writes_nothing(tether_home):
    t = Tether(home=tether_home)
    sid = t.chat_once("first").session_id
    t.update_session(sid, status="closed")
    before = session_bytes(t, sid)
    for turn in (lambda: t.chat_once("more", session_id=sid),
                 lambda: t.chat_once("more", session_id=sid, model="tether/echo"),
                 lambda: t.stream("more", session_id=sid),
                 lambda: t.retry(sid, replace=True),
                 lambda: t.retry_stream(sid, replace=True)):
        with pytest.raises(SessionClosed) as e:
            turn()
        assert sid in str(e.value) and "reopen" in str(e.value)
    t.current_session_id = sid
    with pytest.raises(SessionClosed):
        t.execute("more")
    assert session_bytes(t, sid) == before  # not even the question, nor a pin change
    # still readable and exportable; add_message is storage and still appends
    assert [m.content[:11] for m in t.get_history(sid)] == ["first", "echo: first"]
    assert "first" in t.export_session(sid, format="markdown")
    t.add_message(sid, "system", "note from the app")
    t.update_session(sid, status="active")
    r = t.chat_once("again", session_id=sid)
    assert r.session_id == sid and t.get_history(sid)[-1].content.startswith("echo: again")


def test_archived_sessions_still_chat(tether_home):
    t = Tether(home=tether_home)
    sid = t.chat_once("first").session_id
    t.update_session(sid, status="archived")
    assert t.chat_once("second", session_id=sid).text.startswith("echo: second")
    assert t.load_session(sid).status == "archived"  # a turn does not change the status


def test_async_turns_on_a_closed_session_raise_too(tether_home):
    async def go() -> None:
        at = AsyncTether(home=tether_home)
        sid = (await at.chat_once("first")).session_id
        await at.update_session(sid, status="closed")
        before = session_bytes(at.sync, sid)
        with pytest.raises(SessionClosed):
            await at.chat_once("more", session_id=sid)
        with pytest.raises(SessionClosed):
            await at.stream("more", session_id=sid)
        with pytest.raises(SessionClosed):
            await at.retry(sid, replace=True)
        assert session_bytes(at.sync, sid) == before

    asyncio.run(go())


def test_cli_archive_close_reopen_list_and_continue(tether_home):
    t = Tether(home=tether_home)
    older = t.chat_once("older").session_id
    newer = t.chat_once("newer").session_id
    r = run("sessions", "archive", newer)
    assert r.exit_code == 0 and f"archived {newer}" in r.output
    out = run("sessions", "list").output
    assert "[archived] newer" in out and "[archived] older" not in out
    rows = json.loads(run("sessions", "list", "--json", "--status", "archived").output)
    assert [x["id"] for x in rows] == [newer]
    assert "no closed sessions" in run("sessions", "list", "--status", "closed").output

    # -c skips the archived session, though it was used last
    r = run("ask", "-c", "--no-stream", "which one?")
    assert r.exit_code == 0
    assert t.get_history(older)[-2].content == "which one?"
    assert len(t.get_history(newer)) == 2

    r = run("sessions", "close", older[:8])  # a unique prefix, as for every sessions command
    assert r.exit_code == 0 and t.load_session(older).status == "closed"
    assert "[closed]" in run("sessions", "list").output
    assert "status:   closed" in run("sessions", "show", older).output
    before = session_bytes(t, older)
    r = run("ask", "--session", older, "--no-stream", "still there?")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.strip().startswith("tether: error: session") and "is closed" in r.stderr
    assert session_bytes(t, older) == before
    # nothing active is left: -c starts a new session and says so
    r = run("ask", "-c", "--no-stream", "anyone?")
    assert r.exit_code == 0 and "no active session to continue" in r.stderr
    assert len(t.list_sessions()) == 3

    r = run("sessions", "reopen", older)
    assert r.exit_code == 0 and f"reopened {older}" in r.output
    assert run("ask", "--session", older, "--no-stream", "back?").exit_code == 0
    assert t.get_history(older)[-1].content.startswith("echo: back?")


def test_quick_resume_of_continue_skips_archived_and_closed(tether_home):
    from tether.cli_util import quick_resume

    t = Tether(home=tether_home)
    a = t.chat_once("a").session_id
    b = t.chat_once("b").session_id
    t.update_session(b, status="closed")
    t.list_sessions()  # the index is current again
    assert quick_resume(tether_home, None, cont=True)[0] == a
    t.update_session(a, status="archived")
    t.list_sessions()
    assert quick_resume(tether_home, None, cont=True) is None


def test_the_chat_says_a_resumed_session_is_closed(tether_home):
    from replkit import chat

    t = Tether(home=tether_home)
    sid = t.chat_once("first").session_id
    t.update_session(sid, status="closed")
    with chat(tether_home) as c:
        c.repl.load(sid)
        assert f"session {sid} is closed" in c.out.getvalue()
        out = c.run("more?\r\x15")  # the refused text comes back in the prompt: Ctrl-U clears it
        assert "is closed" in out and "reopen" in out
    assert len(t.get_history(sid)) == 2


def test_bad_field_values_name_the_field_and_write_nothing(tether_home):
    from tether import InvalidField

    t = Tether(home=tether_home)
    sid = t.create_session(title="x")
    before = session_bytes(t, sid)
    for fields, says in ((dict(status="bogus"), "status: input should be 'active', 'archived' or 'closed'"),
                         (dict(metadata="str"), "metadata: input should be a valid dictionary"),
                         (dict(title=5), "title: input should be a valid string")):
        with pytest.raises(InvalidField) as e:
            t.update_session(sid, **fields)
        assert says in str(e.value) and "\n" not in str(e.value)
    for field in ("id", "messages", "pinned_model", "nosuch"):
        with pytest.raises(InvalidField, match=f"cannot change: {field}"):
            t.update_session(sid, **{field: "x"})
    with pytest.raises(InvalidField, match="cannot be stored as JSON"):
        t.update_session(sid, metadata={"k": object()})
    with pytest.raises(InvalidField, match="latency_ms"):
        t.update_message(sid, t.add_message(sid, "user", "hi").id, latency_ms="slow")
    with pytest.raises(InvalidField, match="invalid status 'bogus'"):
        t.list_sessions(status="bogus")
    assert t.load_session(sid).title == "x" and t.load_session(sid).status == "active"
    assert session_bytes(t, sid).startswith(before)


def test_a_piped_chat_on_a_closed_session_says_so_on_stderr(tether_home):
    import subprocess
    import sys
    from pathlib import Path

    t = Tether(home=tether_home)
    sid = t.chat_once("first").session_id
    t.update_session(sid, status="closed")
    tether = str(Path(sys.executable).parent / "tether")
    r = subprocess.run([tether, "chat", "--session", sid], input="more?\n", capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert "is closed" not in r.stdout and f"session {sid} is closed: it can be read" in r.stderr
    assert "echo: first" in r.stdout  # the resumed turns start the transcript


def test_sessions_list_in_pages(tether_home):
    import asyncio

    t = Tether(home=tether_home)
    ids = [t.create_session(title=f"s{i}", user_id="u" if i % 2 else None) for i in range(7)]
    newest_first = ids[::-1]
    assert [r.id for r in t.list_sessions(limit=3)] == newest_first[:3]
    assert [r.id for r in t.list_sessions(limit=3, offset=3)] == newest_first[3:6]
    assert [r.id for r in t.list_sessions(limit=3, offset=6)] == newest_first[6:]
    assert [r.id for r in t.list_sessions(offset=5)] == newest_first[5:]
    assert [r.id for r in t.list_sessions(user_id="u", limit=2, offset=1)] == [i for i in newest_first if i in ids[1::2]][1:3]
    with pytest.raises(ValueError, match="offset must be a whole number"):
        t.list_sessions(offset=-1)
    assert [r.id for r in asyncio.run(AsyncTether(home=tether_home).list_sessions(limit=2, offset=2))] == newest_first[2:4]
