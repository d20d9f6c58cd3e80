"""Every `tether` command in-process through click's CliRunner (fast); see test_cli_subprocess.py
for the same commands as real processes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tether import Tether
from tether.cli import main


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def ok(*args: str, input: str | None = None):
    r = run(*args, input=input)
    assert r.exit_code == 0, (r.output, r.exception)
    return r


def fails(*args: str, input: str | None = None):
    """A clean failure: non-zero, one 'tether: error' line on stderr, no traceback."""
    r = run(*args, input=input)
    assert r.exit_code != 0
    assert "Traceback" not in r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tether: error: "), r.stderr
    return r


def make_session(title: str, *pairs: tuple[str, str], user_id: str | None = None) -> str:
    t = Tether()
    sid = t.create_session(title=title, user_id=user_id, model="tether/echo")
    for role, content in pairs:
        t.add_message(sid, role, content)
    return sid


# -- sessions --------------------------------------------------------------------------
def test_sessions_list_table_json_limit_and_user():
    assert "no sessions yet" in ok("sessions", "list").output
    a = make_session("Alpha trip", ("user", "hello"), ("assistant", "hi"), user_id="ann")
    b = make_session("Beta notes", ("user", "x"), user_id="bob")
    out = ok("sessions", "list").output
    header = out.splitlines()[0].split()
    assert header == ["ID", "TITLE", "MODEL", "MSGS", "TOKENS", "COST", "LAST", "USED"]
    assert out.index(b) < out.index(a)  # most recently used first
    assert "Alpha trip" in out and "tether/echo" in out
    rows = json.loads(ok("sessions", "list", "--json").output)
    assert [r["id"] for r in rows] == [b, a] and rows[1]["message_count"] == 2
    assert [r["id"] for r in json.loads(ok("sessions", "list", "--json", "--limit", "1").output)] == [b]
    assert [r["id"] for r in json.loads(ok("sessions", "list", "--json", "--user", "ann").output)] == [a]


def test_sessions_list_from_the_index_matches_the_store_and_never_misses_a_change(monkeypatch):
    from tether import cli_sessions

    a = make_session("First", ("user", "q"))
    b = make_session("Second", ("user", "q"), ("assistant", "a"))
    ok("sessions", "list")  # the store writes its index
    assert [r["id"] for r in cli_sessions.fast_summaries(None, None)] == [b, a]
    fast = ok("sessions", "list").output
    with monkeypatch.context() as m:
        m.setattr(cli_sessions, "fast_summaries", lambda *args: None)
        assert ok("sessions", "list").output == fast
    Tether().add_message(a, "user", "used again")  # the index is now behind the file
    assert cli_sessions.fast_summaries(None, None) is None
    out = ok("sessions", "list").output
    assert out.index(a) < out.index(b)
    assert [r["id"] for r in cli_sessions.fast_summaries(1, None)] == [a]


def test_a_corrupt_session_is_named_once_and_the_rest_still_list(tether_home):
    good = make_session("good", ("user", "hi"))
    bad = make_session("bad", ("user", "hi"))
    path = Path(tether_home) / "sessions" / f"{bad}.jsonl"
    with path.open("a") as f:
        f.write('{"type":"update","fields":"oops"}\n')
    for args in (("sessions", "list"), ("sessions", "search", "hi")):
        r = ok(*args)
        assert good in r.stdout and bad not in r.stdout
        assert r.stderr.count(str(path)) == 1, r.stderr
    assert ok("ask", "-c", "again").exit_code == 0  # -c finds the good one


def test_a_session_file_nested_too_deeply_is_named_and_the_rest_still_list(tether_home):
    good = make_session("good", ("user", "hi"))
    path = Path(tether_home) / "sessions" / "deep.jsonl"
    path.write_text('{"type":"header","session":{"id":"deep","metadata":{"x":' + "[" * 5000 + "]" * 5000 + "}}}\n")
    for args in (("sessions", "list"), ("sessions", "list", "--json"), ("sessions", "search", "hi")):
        r = ok(*args)
        assert good in r.stdout and "nested too deeply" in r.stderr and str(path) in r.stderr
    ok("ask", "-c", "again")
    assert Tether().get_history(good)[-2].content == "again"


def test_sessions_show_text_and_json_and_prefix_ids():
    sid = make_session("Shown", ("user", "what is tether?"), ("assistant", "a **router**"))
    out = ok("sessions", "show", sid[:-2]).output
    assert f"id:       {sid}" in out and "what is tether?" in out and "router" in out
    doc = json.loads(ok("sessions", "show", sid, "--json").output)
    assert doc["id"] == sid and [m["role"] for m in doc["messages"]] == ["user", "assistant"]


def test_unknown_session_ids_fail_with_one_line():
    for cmd in (["sessions", "show", "nope"], ["sessions", "rename", "nope", "x"], ["sessions", "delete", "nope", "-y"],
                ["sessions", "export", "nope"], ["ask", "--session", "nope", "hi"], ["sessions", "show", "../etc"]):
        assert "no session with id" in fails(*cmd).stderr


@pytest.mark.parametrize("tz", ["Asia/Tokyo", "America/Los_Angeles", "Pacific/Kiritimati"])
def test_dates_at_the_calendars_ends_show_in_any_time_zone(tether_home, monkeypatch, tz):
    """`sessions show` of a session dated 9999 ended in OverflowError east of UTC, and a
    year-1 date did so in the listing west of it."""
    import time

    folder = Path(tether_home) / "sessions"
    make_session("first")  # makes the folder
    for sid, when in (("far", "9999-12-31T23:59:59Z"), ("early", "0001-01-01T00:00:00Z")):
        (folder / f"{sid}.jsonl").write_text(json.dumps(
            {"type": "header", "session": {"id": sid, "created_at": when, "updated_at": when}}) + "\n")
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        assert "used:     9999-12-3" in ok("sessions", "show", "far").stdout
        assert "created:  0001-01-01" in ok("sessions", "show", "early").stdout
        listing = ok("sessions", "list").stdout
        assert "far" in listing and "early" in listing
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_rename_and_delete():
    sid = make_session("Old")
    ok("sessions", "rename", sid, "New", "title")
    assert Tether().load_session(sid).title == "New title"
    ok("sessions", "delete", sid)  # stdin is not a terminal: no question asked
    assert not Tether().session_exists(sid)


def test_rename_refuses_a_blank_title():
    """`rename ID ""` stored an empty title: the listing said "(untitled)", the command "renamed"."""
    sid = make_session("Keep")
    for blank in ("", "   "):
        r = run("sessions", "rename", sid, blank)
        assert r.exit_code == 2 and "a title cannot be blank" in r.output
    assert Tether().load_session(sid).title == "Keep"
    ok("sessions", "rename", sid, "  Spaced  ")
    assert Tether().load_session(sid).title == "Spaced"


def test_a_closed_session_names_the_shell_command_not_the_python_api():
    sid = make_session("Done", ("user", "q"))
    ok("sessions", "close", sid)
    err = fails("ask", "--session", sid, "more?").stderr
    assert f"tether sessions reopen {sid}" in err and "update_session" not in err


def test_delete_asks_in_a_terminal(monkeypatch):
    sid = make_session("Keep me")
    monkeypatch.setattr("tether.cli_sessions.interactive", lambda: True)
    r = CliRunner().invoke(main, ["sessions", "delete", sid], input="n\n")
    assert r.exit_code == 1 and "delete session" in r.output
    assert Tether().session_exists(sid)


def test_export_and_import_round_trip(tmp_path):
    sid = make_session("Round trip", ("user", "q"), ("assistant", "a"))
    md = ok("sessions", "export", sid, "--format", "md").output
    assert md.startswith("# Round trip") and "## user" in md
    target = tmp_path / "export.json"
    ok("sessions", "export", sid, "-o", str(target))
    assert target.stat().st_mode & 0o777 == 0o600  # it holds the chat, as the session file does
    assert ok("sessions", "export", sid, "-o", str(tmp_path / "e.md")).exit_code == 0
    assert (tmp_path / "e.md").read_text().startswith("# Round trip")  # the suffix picks Markdown
    r = fails("sessions", "import", str(target))
    assert "--overwrite" in r.stderr
    Tether().delete_session(sid)
    assert f"imported {sid}" in ok("sessions", "import", str(target)).output
    assert [m.content for m in Tether().get_history(sid)] == ["q", "a"]
    ok("sessions", "import", "--overwrite", str(target))


def test_import_oblix_files_and_report_bad_ones(tmp_path):
    oblix = {"id": "3f0c2a9e-1111-4222-8333-944455556666", "title": "From Oblix", "created_at": "2025-01-02T03:04:05",
             "updated_at": "2025-01-02T03:04:05", "messages": [
                 {"id": "m1", "role": "user", "content": "hi", "timestamp": "2025-01-02T03:04:05"},
                 {"id": "m2", "role": "assistant", "content": "hello", "timestamp": "2025-01-02T03:04:06"}],
             "context": {}, "metadata": {}}
    good = tmp_path / "oblix.json"
    good.write_text(json.dumps(oblix))
    bad = tmp_path / "bad.json"
    bad.write_text("not json at all")
    r = run("sessions", "import", str(good), str(bad))
    assert r.exit_code == 1 and f"imported {oblix['id']}" in r.stdout
    assert "bad.json" in r.stderr and "Traceback" not in r.output
    assert Tether().load_session(oblix["id"]).title == "From Oblix"


def test_a_hostile_file_in_an_import_batch_is_named_once_and_the_next_still_imported(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"id":"deep","messages":[],"metadata":{"x":' + "[" * 5000 + "]" * 5000 + "}}")
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"id":"wrong","messages":[{"role":"user","content":5}]}')
    good = tmp_path / "good.json"
    good.write_text('{"id":"good","messages":[{"role":"user","content":"hi"}]}')
    r = run("sessions", "import", str(deep), str(wrong), str(good))
    assert r.exit_code == 1 and "imported good" in r.stdout and "Traceback" not in r.output
    errors = r.stderr.splitlines()
    assert errors == [f"tether: error: {deep}: nested too deeply",
                      f"tether: error: {wrong}: invalid value at messages.0.content: Input should be a valid string"]
    assert [s.id for s in Tether().list_sessions()] == ["good"]


def test_undo_in_an_imported_session_with_duplicate_ids_removes_the_last_exchange(tmp_path):
    f = tmp_path / "dup.json"
    f.write_text(json.dumps({"id": "dup", "messages": [
        {"id": "A", "role": "user", "content": "first question"}, {"id": "B", "role": "assistant", "content": "first answer"},
        {"id": "A", "role": "user", "content": "last question"}, {"id": "B", "role": "assistant", "content": "last answer"}]}))
    ok("sessions", "import", str(f))
    assert "removed your last question and 1 message after it" in ok("chat", "--session", "dup", input="/undo\n/exit\n").output
    assert [m.content for m in Tether().get_history("dup")] == ["first question", "first answer"]


def test_search_titles_and_message_text():
    a = make_session("Kyoto itinerary", ("user", "temples"))
    b = make_session("Other", ("user", "a long message mentioning KYOTO somewhere"))
    make_session("Unrelated", ("user", "nothing"))
    out = ok("sessions", "search", "kyoto").output
    assert a in out and b in out and "mentioning KYOTO" in out and "Unrelated" not in out
    r = run("sessions", "search", "zanzibar")
    assert r.exit_code == 1 and "no session mentions" in r.output


# -- config and models ---------------------------------------------------------------------
def test_config_defaults_to_the_offline_model_with_a_hint(tether_home):
    out = ok("config").output
    assert "default model: tether/echo (offline)" in out and "valid:         yes" in out
    assert str(tether_home / "config.toml") in out and "OPENAI_API_KEY" in out
    data = json.loads(ok("config", "--json").output)
    assert data["valid"] is True and data["config"]["default_model"] == "tether/echo"


def test_bad_config_is_one_line_for_every_command_that_needs_it(tether_home):
    tether_home.mkdir(parents=True, exist_ok=True)
    (tether_home / "config.toml").write_text('default_model = "main"\n[models.main]\nmodel = 3\n')
    r = run("config")
    assert r.exit_code == 1 and "valid:         no" in r.stdout
    assert r.stderr.strip().startswith("tether: error:") and "models.main.model" in r.stderr
    assert "models.main.model" in fails("ask", "hi").stderr
    assert "models.main.model" in fails("models").stderr
    assert "models.main.model" in fails("chat").stderr
    ok("sessions", "list")  # managing sessions does not need a valid config


def test_models_lists_the_default_with_window_price_and_circuit():
    out = ok("models").output
    assert "tether/echo *" in out and "128,000" in out and "$0.00/M" in out and "closed" in out
    rows = json.loads(ok("models", "--json").output)
    assert rows[0]["name"] == "tether/echo" and rows[0]["circuit"]["state"] == "closed"


# -- ask -------------------------------------------------------------------------------------
def test_ask_streams_an_answer_and_saves_the_turn():
    r = ok("ask", "hello", "world")
    assert r.stdout == "echo: hello world [1 messages, 9 tokens]\n"
    (s,) = Tether().list_sessions()
    assert [m.content for m in Tether().get_history(s.id)] == ["hello world", r.stdout.strip()]


def test_ask_reads_piped_stdin_and_appends_it_to_the_prompt():
    r = ok("ask", "summarise:", input="line one\nline two\n")
    (s,) = Tether().list_sessions()
    assert Tether().get_history(s.id)[0].content == "summarise:\n\nline one\nline two"  # not the final newline
    assert ok("ask", input="only stdin").stdout.startswith("echo: only stdin")
    assert r.exit_code == 0


def test_ask_without_a_prompt_is_a_usage_error():
    r = run("ask", input="")
    assert r.exit_code == 2 and "no prompt" in r.output


def test_continue_means_the_most_recently_used_session_not_the_newest():
    t = Tether()
    first = ok("ask", "-c", "nothing to continue")  # says so, as `chat -c` does, and starts one
    assert "no active session to continue" in first.stderr and len(t.list_sessions()) == 1
    t.delete_session(t.list_sessions()[0].id)
    older = t.chat_once("older").session_id
    t.chat_once("newer")
    t.chat_once("older again", session_id=older)  # the older session is now the last used
    ok("ask", "-c", "which one?")
    assert Tether().get_history(older)[-2].content == "which one?"


def test_ask_json_no_stream_model_and_system():
    data = json.loads(ok("ask", "--json", "--system", "Be terse.", "--model", "tether/echo", "hi").stdout)
    assert data["text"].startswith("echo: hi") and data["model"] == "tether/echo"
    assert data["usage"]["total_tokens"] > 0 and data["attempts"][0]["kind"] == "ok"
    s = Tether().load_session(data["session_id"])
    assert s.system == "Be terse." and s.pinned_model == "tether/echo" and s.title == "hi"
    out = ok("ask", "--no-stream", "--session", data["session_id"], "again").stdout
    assert out.startswith("echo: again") and "4 messages" in out  # system, first turn, this prompt


def test_unknown_model_fails_before_anything_is_saved():
    assert "unknown model 'bogus'" in fails("ask", "--model", "bogus", "hi").stderr
    assert "unknown model 'bogus'" in fails("chat", "--model", "bogus").stderr
    assert Tether().list_sessions() == []


def test_debug_lets_the_traceback_through():
    r = run("--debug", "sessions", "show", "nope")
    assert r.exit_code != 0 and type(r.exception).__name__ == "SessionNotFound"


def test_help_lists_the_commands():
    out = ok("--help").output
    for cmd in ("chat", "ask", "sessions", "models", "config"):
        assert f"  {cmd}" in out
    out = ok("sessions", "--help").output
    for cmd in ("list", "show", "rename", "delete", "export", "import", "search"):
        assert f"  {cmd}" in out


# -- the local OpenAI-compatible server ----------------------------------------------------
@pytest.fixture(scope="module")
def server():
    from fakeserver import FakeServer

    srv = FakeServer(timeout_sleep=0.5).start()
    yield srv
    srv.stop()


def write_config(home: Path, srv) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f"""
default_model = "main"
fallbacks = ["backup"]
retries = 0
breaker_failures = 0
[models.main]
model = "openai/main"
api_base = "{srv.base}"
api_key = "sk-test"
input_cost_per_token = 0.000001
output_cost_per_token = 0.000002
[models.backup]
model = "openai/backup"
api_base = "{srv.base}"
api_key = "sk-test"
context_window = 16000
""")


def test_ask_on_a_configured_model_and_its_fallback(tether_home, server):
    server.reset()
    write_config(tether_home, server)
    assert ok("ask", "first").stdout == "main says: first (1 messages)\n"
    server.fail("main", "503")
    r = ok("ask", "-c", "second")
    assert r.stdout == "backup says: second (3 messages)\n"
    assert "main failed (server 503); backup answered instead" in r.stderr
    out = ok("models").output
    assert "main *" in out and "backup" in out and "16,000" in out and "$1.00/M" in out
    assert "default model: main (config)" in ok("config").output


def test_chat_fed_from_a_pipe_treats_each_line_as_a_message_or_command():
    r = ok("chat", "--title", "Scripted", input="hello\n/tokens\n/exit\nnever sent\n")
    assert "echo: hello" in r.stdout and "= 19 tokens" in r.stdout
    (s,) = Tether().list_sessions()
    assert s.title == "Scripted" and s.message_count == 2
    r = ok("chat", "-c", input="again\n")
    assert "echo: hello" in r.stdout  # the resumed session's last turns come first
    assert Tether().get_history(s.id)[-2].content == "again"


def test_export_over_an_existing_file_makes_it_private(tmp_path):
    import os
    import stat

    sid = make_session("secret chat", ("user", "my pin is 4321"))
    target = tmp_path / "out.json"
    target.write_text("old")
    target.chmod(0o644)
    ok("sessions", "export", sid, "-o", str(target))
    assert "4321" in target.read_text() and stat.S_IMODE(os.stat(target).st_mode) == 0o600


def test_show_and_export_a_message_holding_a_lone_surrogate():
    sid = make_session("odd", ("user", "bad \ud83d half an emoji"))
    assert "half an emoji" in ok("sessions", "show", sid).output
    assert "half an emoji" in ok("sessions", "export", sid).output
    assert "half an emoji" in ok("sessions", "export", sid, "--format", "md").output



def test_ask_into_a_pipe_prints_only_the_final_answer_after_a_restart(tether_home, server):
    """Streamed into a file, a model cut mid-answer left its text glued to the fallback's answer."""
    server.reset()
    write_config(tether_home, server)
    server.fail("main", "cut")
    r = ok("ask", "tell me")
    assert r.stdout == "backup says: tell me (1 messages)\n"  # CliRunner's stdout is not a terminal
    assert "main failed mid-answer (the connection dropped); backup answers from the start" in r.stderr
    server.fail("main", "short")
    assert "main failed mid-answer (the answer ended early)" in ok("ask", "again").stderr


def test_a_model_skipped_by_its_open_circuit_is_not_said_to_have_failed(tether_home, server):
    server.reset()
    write_config(tether_home, server)
    cfg = tether_home / "config.toml"
    cfg.write_text(cfg.read_text().replace("breaker_failures = 0", "breaker_failures = 1\nbreaker_cooldown = 600"))
    server.fail("main", "500")
    c = Tether()
    first = c.chat_once("one")
    assert first.model == "backup"
    from tether.render import fallback_note

    assert fallback_note(first) == "main failed (server 500); backup answered instead"
    second = c.chat_once("two", session_id=first.session_id)
    assert [a.kind for a in second.attempts][:1] == ["circuit_open"]
    assert fallback_note(second).startswith("main was skipped (it failed repeatedly")


def test_small_listing_and_transcript_details():
    sid = make_session("odd", ("user", "asked"), ("assistant", "answered"))
    Tether().add_message(sid, "user", "nobody answered", status="unanswered")
    zero = run("sessions", "list", "--limit", "0")  # said "no sessions yet" with sessions there
    assert zero.exit_code == 2 and "x>=1" in zero.output
    out = ok("sessions", "show", sid).output
    assert "> nobody answered\n(unanswered)" in out and "> asked\n[" in out
    assert "pinned by explicit" in out and "(explicit)" not in out


def test_export_into_a_fifo_leaves_its_mode_alone(tmp_path):
    """Only a regular file of ours is made 0600: never a device or pipe (-o /dev/null as root)."""
    import os
    import stat
    import threading

    sid = make_session("piped", ("user", "hello"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o644)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    ok("sessions", "export", sid, "-o", str(fifo))
    reader.join(10)
    assert b"hello" in got[0] and stat.S_IMODE(os.stat(fifo).st_mode) == 0o644


def test_session_table_columns_line_up_with_wide_titles():
    from tether.render import cells

    make_session("日本語のタイトル 🎉", ("user", "x"))
    make_session("plain title", ("user", "y"))
    lines = ok("sessions", "list").output.splitlines()
    header = lines[0]
    col = cells(header[: header.index("MODEL")])
    for line in lines[1:]:
        assert cells(line[: line.index("tether/echo")]) == col, lines  # MODEL starts in one column


def test_a_warning_from_another_thread_waits_for_the_chat_to_show_it(capsys):
    """A rolling summary's warning, logged from its thread while the line editor draws the
    prompt, was written into the prompt line."""
    import logging
    import threading

    from tether.cli import _StderrHandler, _setup_logging

    _setup_logging(False)
    later: list[str] = []
    _StderrHandler.defer_to(lambda text: later.append(text))  # any callable, a plain function too
    try:
        th = threading.Thread(target=logging.getLogger("tether").warning, args=("summary failed",))
        th.start()
        th.join()
        logging.getLogger("tether").warning("from the chat itself")
    finally:
        _StderrHandler.defer_to(None)
    assert later == ["tether: summary failed"]
    err = capsys.readouterr().err
    assert "from the chat itself" in err and "summary failed" not in err


def _in_a_terminal(home: Path, cols: int, *args: str) -> str:
    """`tether ARGS` with stdout a pseudo-terminal `cols` wide; what it printed."""
    import os
    import pty
    import subprocess
    import sys

    main_fd, child_fd = pty.openpty()
    env = {**os.environ, "TETHER_HOME": str(home), "COLUMNS": str(cols), "LINES": "30"}
    p = subprocess.Popen([sys.executable, "-m", "tether.cli", *args], stdout=child_fd, stderr=child_fd,
                         stdin=subprocess.DEVNULL, env=env)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    p.wait(60)
    os.close(main_fd)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_sessions_list_fits_the_terminal_and_keeps_whole_rows_for_a_pipe(tether_home):
    """Rows were 118 columns in any terminal, so each wrapped in 80 or 100."""
    title = "Plan a two-week kayaking trip along the Norwegian fjords in June, with a budget"
    sid = make_session(title, ("user", "hi"))
    Tether().pin_model(sid, "anthropic/claude-sonnet-4-5-20250929")
    for cols in (80, 100):
        lines = _in_a_terminal(tether_home, cols, "sessions", "list").splitlines()
        assert len(lines) == 2 and max(len(line) for line in lines) <= cols, lines
        assert sid in lines[1] and "Plan a two" in lines[1] and "anthropic/" in lines[1] and "…" in lines[1]
    piped = ok("sessions", "list").output.splitlines()
    assert title[:39] in piped[1] and "anthropic/claude-sonnet-4-5-20250929" in piped[1]  # as before
